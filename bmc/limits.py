"""Open-file budget: say at once, before anything starts, when a fleet cannot fit.

Every BMC on a port of its own costs a socket per protocol; BMCs sharing a port on their own
addresses (`--address-base`) share one socket per protocol. A running `process` server holds a
terminal and a pidfd; Redfish clients' connections each hold one. When the soft limit is too
low it is raised (up to the hard limit); when even the hard limit is too low, the emulator
refuses to start and says what to raise or which layout to use, rather than failing minutes
later with "Too many open files".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from backends import backend_class
from bmc.config import Config

log = logging.getLogger(__name__)

#: the emulator's own files (logs, pipes, the interpreter's) and room for a few clients
RESERVE = 128
#: Redfish connections to keep room for, at least
MIN_CONNECTIONS = 100


@dataclass(frozen=True)
class Budget:
    sockets: int  # listening and IPMI sockets
    servers: int  # held by the servers that start powered on
    worst_case: int  # ... if every server ran at once

    @property
    def needed(self) -> int:
        return self.sockets + self.servers + RESERVE + MIN_CONNECTIONS


def _sockets(endpoints: list[tuple[str, int]]) -> int:
    """Sockets for these (address, port) endpoints: one per port shared on IPv4 addresses."""
    shared: dict[int, int] = {}
    own = 0
    for address, port in endpoints:
        if port and ":" not in address and address not in ("0.0.0.0", ""):
            shared[port] = shared.get(port, 0) + 1
        else:
            own += 1
    return own + sum(1 if count > 1 else count for count in shared.values())


def budget(config: Config) -> Budget:
    nodes = config.nodes
    sockets = (_sockets([(n.ipmi.address, n.ipmi.port) for n in nodes])
               + _sockets([(n.redfish.address, n.redfish.port) for n in nodes])
               + sum(1 for n in nodes if n.console.websocket is not None))
    servers = worst = 0
    for node in nodes:
        try:
            cost = backend_class(node.backend).descriptors
        except Exception:  # an unknown backend is reported elsewhere, with its line
            cost = 0
        worst += cost
        if node.backend_settings.get("power_on"):
            servers += cost
    return Budget(sockets, servers, worst)


def check_descriptors(config: Config) -> str | None:
    """None if the fleet fits the open-file limit (raising the soft limit if need be), else
    what is wrong and what to do. Logs a warning when only the worst case does not fit."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    need = budget(config)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and need.needed > hard:
        return (f"{len(config.nodes)} nodes need about {need.needed} open files "
                f"({need.sockets} sockets, {need.servers} for the servers that start powered "
                f"on, {RESERVE + MIN_CONNECTIONS} for the emulator and Redfish clients), but "
                f"the hard limit is {hard} (ulimit -Hn): raise it (as root: ulimit -Hn, "
                "systemd LimitNOFILE=, docker --ulimit nofile=), or give the nodes their own "
                "addresses on shared ports (--address-base: one socket per protocol for all "
                "nodes)")
    if soft != resource.RLIM_INFINITY and need.needed > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need.needed if hard ==
                                                    resource.RLIM_INFINITY else hard, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    worst = need.sockets + need.worst_case + RESERVE + MIN_CONNECTIONS
    if soft != resource.RLIM_INFINITY and worst > soft:
        log.warning("if every server runs at once, %d nodes need about %d open files; the "
                    "limit is %d: some power-ons would then fail", len(config.nodes), worst,
                    soft)
    return None
