"""`bmc-emulator serve`: build the nodes, start both front ends, run until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from backends import BackendError, create_backend
from bmc.backend_settings import constructor_problem
from bmc.config import Config, ConfigError, NodeConfig, Problem
from bmc.console import ConsoleHub
from bmc.node import Identity, Node
from bmc.state import StateError, StateStore
from bmc.users import UserStore

if TYPE_CHECKING:
    from pathlib import Path

    from bmc.fleet import Fleet
    from bmc.sensors import SensorSpec
    from redfish.tls import TlsContexts, TlsSettings

log = logging.getLogger(__name__)

def ready_line(count: int) -> str:
    """What scripts wait for: every node answers on both protocols."""
    return f"bmc-emulator ready: {nodes_text(count)}"


def nodes_text(count: int) -> str:
    return f"{count} node{'' if count == 1 else 's'}"


class Server(Protocol):
    """What `ipmi.server.IpmiServer` and `redfish.server.RedfishServer` both offer."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class StartupError(Exception):
    """Something outside the config stopped the emulator from starting (a port in use, ...)."""


def run(config: Config, stop: threading.Event | None = None, out: TextIO | None = None,
        manage_socket: str | None = None) -> int:
    """Serve `config` until SIGINT/SIGTERM (or `stop` is set); returns the exit status.

    With `manage_socket`, the management API (`bmc.manage`) listens there: nodes can be
    listed, added and removed while serving. Raises ConfigError if a backend refuses its
    settings and StartupError if a server cannot start; in both cases nothing is left running.
    """
    stop = stop or threading.Event()
    out = out or sys.stdout
    restore = _handle_signals(stop)  # first, so a signal during startup still stops cleanly
    nodes: list[Node] = []
    servers: list[Server] = []
    fleet: Fleet | None = None
    store: StateStore | None = None
    try:
        from bmc.limits import check_descriptors

        too_many = check_descriptors(config)
        if too_many:
            raise StartupError(too_many)
        store = open_state(config)
        nodes = build_nodes(config, store)
        # IPMI first: clients such as ironic poll IPMI right after launch, and the Redfish
        # front end (Flask) is the slower one to import and start
        servers.append(_start("IPMI", _ipmi_server, config, nodes))
        _load_aes()  # a first RMCP+ session needs it: better here than in the IPMI thread
        servers.append(_start("Redfish", _redfish_server, config, nodes))
        if any(spec.console.websocket for spec in config.nodes):
            contexts = getattr(servers[1], "tls_contexts", None)
            servers.append(_start("console WebSocket", partial(_console_server,
                                                               contexts=contexts),
                                  config, nodes))
        if manage_socket:
            from bmc.fleet import Fleet
            from bmc.manage import ManagementServer

            fleet = Fleet(config, nodes, servers[0], servers[1], store)
            servers.append(_start("management API", lambda *_: ManagementServer(
                manage_socket, fleet), config, []))
        print_table(config, out)
        ca = getattr(servers[1], "ca_path", None)
        if ca is not None:
            print(f"Redfish HTTPS certificates are signed by {ca}: trust it (curl --cacert, "
                  "sushy verify=)", file=out)
        print(ready_line(len(nodes)), file=out, flush=True)
        log.info("serving %s; SIGINT or SIGTERM stops", nodes_text(len(nodes)))
        _warm_up(nodes)
        stop.wait()
        log.info("stopping")
    finally:
        # the nodes served now: with the management API, some may have come or gone
        _shutdown(servers, fleet.nodes() if fleet is not None else nodes)
        if store is not None:
            store.close()
        restore()
    return 0


def open_state(config: Config) -> StateStore | None:
    """The state store of `defaults.state_dir` (None: none); StartupError if unreadable."""
    directory = config.defaults.state_dir if config.defaults is not None else None
    if directory is None:
        return None
    from bmc.state import StateError, open_store

    try:
        store = open_store(directory, config.defaults.state_sync)
    except StateError as exc:
        raise StartupError(f"{exc} (not reset: move it away to start afresh)") from exc
    log.info("state kept in %s", store.path)
    return store


def build_nodes(config: Config, store: StateStore | None = None) -> list[Node]:
    """One Node per configured node; all or nothing (backends already made are closed).

    Every node is tried before a ConfigError is raised, so that it names every backend that
    refused its settings, not only the first.
    """
    nodes: list[Node] = []
    problems: list[Problem] = []
    try:
        for spec in config.nodes:
            try:
                nodes.append(build_node(spec, store))
            except ConfigError as exc:
                problems += exc.problems
        if problems:
            raise ConfigError(problems)
    except BaseException:
        _shutdown([], nodes)
        raise
    return nodes


def build_node(spec: NodeConfig, store: StateStore | None = None) -> Node:
    try:
        backend = create_backend(spec.backend, dict(spec.backend_settings), spec.name)
    except (TypeError, ValueError) as exc:  # settings the backend does not take
        where, message = constructor_problem(spec.backend, exc)
        raise ConfigError([spec.problem(".".join(("backend", *map(str, where))), message)]) \
            from exc
    except BackendError as exc:
        raise StartupError(f"node '{spec.name}': backend: {exc}") from exc
    users = UserStore()
    try:
        for user in spec.users:
            users.add(user.name, user.password, user.privilege)
    except ValueError as exc:
        backend.close()
        raise ConfigError([spec.problem("users", str(exc))]) from exc
    state = store.node(spec.name) if store is not None else None
    if state is not None:
        try:
            users.attach(state)  # the saved users replace the configured ones
        except (ValueError, StateError) as exc:
            backend.close()
            raise StartupError(f"node '{spec.name}': {store.path}: {exc}") from exc
    console = ConsoleHub(backend, name=spec.name, buffer_size=spec.console.buffer_size,
                         log_path=spec.console.log, novnc_url=spec.console.novnc_url)
    try:
        node = Node(spec.name, backend, users, console=console, identity=_identity(spec),
                    sensors=profile_from_config(spec.sensors) if spec.sensors else None,
                    state=state)
    except StateError as exc:  # the node's saved state cannot be read: never reset it
        console.close()
        backend.close()
        raise StartupError(f"node '{spec.name}': {exc}") from exc
    if spec.faults is not None:
        from bmc.faults import set_faults

        set_faults(node, spec.faults, "config")
    return node


def _identity(spec: NodeConfig) -> Identity | None:
    """The node's identity from its config (None: the default, built by Node)."""
    if not spec.identity:
        return None
    from bmc.vendors import identity_for

    fields = dict(spec.identity)
    vendor = fields.pop("vendor", "generic")
    return identity_for(vendor, Node.default_serial(spec.name), **fields)


def profile_from_config(items: list[dict[str, Any]]) -> list[SensorSpec]:
    """`bmc.sensors.profile_from_config`, importing bmc.sensors only for a config with sensors
    (the default profile is built after IPMI answers, see Node.build_features)."""
    from bmc.sensors import profile_from_config as parse

    return parse(items)


def _load_aes() -> None:
    from ipmi.crypto import load_aes

    load_aes()


def _warm_up(nodes: list[Node]) -> None:
    """Load now what both front ends would otherwise load on first use.

    Neither needs it to answer (so it comes after the ready line: ~0.5 s for 1,000 nodes),
    but a client's first SEL read or Redfish GET should be about as fast as its second.
    """
    from ipmi.commands import load_all

    load_all()
    for node in nodes:
        node.build_features()


def _bindings(nodes: list[Node], endpoints: list[Any]) -> list[tuple[str, int, Node]]:
    return [(e.address, e.port, node) for e, node in zip(endpoints, nodes, strict=True)]


def _ipmi_server(config: Config, nodes: list[Node]) -> Server:
    from ipmi.server import IpmiServer  # lazily: only `serve` needs the protocol stacks

    bindings = [(spec.ipmi.address, spec.ipmi.port, node, ipmi_options(spec))
                for spec, node in zip(config.nodes, nodes, strict=True)]
    return IpmiServer(bindings)


def ipmi_options(spec: NodeConfig) -> dict[str, Any]:
    """The node's IPMI endpoint settings as the IPMI server takes them (at start or added)."""
    return {"session_limit": spec.ipmi_session_limit, "sol_port": spec.ipmi_sol_port,
            "password_auth": spec.ipmi_password_auth, "idle_timeout": spec.ipmi_idle_timeout}


def _redfish_server(config: Config, nodes: list[Node]) -> Server:
    try:
        from redfish.server import RedfishServer
    except ImportError as exc:
        # DMTF's python-redfish-library (which its validators install) has a top-level
        # package `redfish` too; in one environment it can shadow ours
        raise StartupError(f"cannot load bmc-emulator's Redfish server ({exc}); is another "
                           "'redfish' package (DMTF's python-redfish-library) installed in this "
                           "environment? Install bmc-emulator in a venv of its own") from exc

    tls = {node: tls_settings(spec) for spec, node in zip(config.nodes, nodes, strict=True)
           if spec.redfish_tls is not None}
    return RedfishServer(_bindings(nodes, [n.redfish for n in config.nodes]), tls=tls,
                         tls_directory=str(tls_directory(config)),
                         app_options=redfish_app_options(config))


def tls_settings(spec: NodeConfig) -> TlsSettings:
    """The node's `redfish.tls` as the Redfish server takes it."""
    from redfish.tls import TlsSettings

    tls = spec.redfish_tls
    assert tls is not None
    return TlsSettings(cert=tls.cert, key=tls.key, names=tls.names,
                       redirect_http=tls.redirect_http, address=spec.redfish.address)


def tls_directory(config: Config) -> Path:
    """Where made certificates and the lab CA are kept: STATE_DIR/tls, else the user's."""
    from redfish.tls import default_directory

    return default_directory(config.defaults.state_dir if config.defaults else None)


def redfish_app_options(config: Config) -> dict[str, Any]:
    """`redfish.app.create_app` options from `defaults:` (only those the config sets)."""
    defaults = config.defaults
    options: dict[str, Any] = {}
    if defaults is not None and defaults.redfish_event_destinations is not None:
        options["event_destinations"] = list(defaults.redfish_event_destinations)
    if defaults is not None and defaults.redfish_session_user_limit is not None:
        options["session_user_limit"] = defaults.redfish_session_user_limit
    return options


def _console_server(config: Config, nodes: list[Node], contexts: TlsContexts | None = None
                    ) -> Server:
    """The WebSocket consoles; a node on HTTPS gets wss:// with the same kind of certificate."""
    from dataclasses import replace

    from redfish.console_ws import ConsoleWebSocketServer

    bindings = []
    tls = {}
    for spec, node in zip(config.nodes, nodes, strict=True):
        websocket = spec.console.websocket
        if websocket is None:
            continue
        bindings.append((websocket.address, websocket.port, node))
        if spec.redfish_tls is not None and contexts is not None:
            # made now: a certificate that cannot be had stops the start, not a viewer
            tls[node] = contexts.context(replace(tls_settings(spec), address=websocket.address))
    return ConsoleWebSocketServer(bindings, tls)


def _start(label: str, factory: Callable[[Config, list[Node]], Server], config: Config,
           nodes: list[Node]) -> Server:
    server = factory(config, nodes)
    try:
        server.start()
    except OSError as exc:  # the servers name the address and port in the message
        # it may have bound some of its sockets; a failure to stop it is expected here
        _stop_quietly(label, server, level=logging.DEBUG)
        reason = exc.strerror or str(exc)  # without the "[Errno 98]" prefix
        raise StartupError(f"cannot start the {label} server: {reason}") from exc
    except StateError as exc:  # Redfish: a saved event subscription cannot be read
        _stop_quietly(label, server, level=logging.DEBUG)
        raise StartupError(f"{exc} (not reset: move it away to start afresh)") from exc
    log.info("%s server started", label)
    return server


def _shutdown(servers: list[Server], nodes: list[Node]) -> None:
    """Stop the servers (newest first), then close the nodes; log but survive failures."""
    for server in reversed(servers):
        _stop_quietly(type(server).__name__, server)
    for node in nodes:
        try:
            node.close()
        except Exception:
            log.exception("closing node %s failed", node.name)


def _stop_quietly(label: str, server: Server, level: int = logging.ERROR) -> None:
    try:
        server.stop()
    except Exception:
        log.log(level, "stopping the %s server failed", label, exc_info=True)


def _handle_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM set `stop`; a second one exits at once (a stuck shutdown).

    Returns a function that puts the previous handlers back.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # only the main thread may handle signals (embedded use)

    def handle(signum: int, _frame: Any) -> None:
        # no logging here: the interrupted code may hold the logging lock
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def print_table(config: Config, out: TextIO) -> None:
    """The endpoint table: one row per node (passwords are never shown)."""
    consoles = any(node.console.websocket for node in config.nodes)
    rows = [("NODE", "IPMI (UDP)", "REDFISH", "USER") + (("CONSOLE",) if consoles else ())]
    for node in config.nodes:
        users = node.users[0].name + (f" (+{len(node.users) - 1})" if len(node.users) > 1 else "")
        row = (node.name, node.ipmi.host_port, node.redfish_url, users)
        if consoles:
            ws = node.console.websocket
            scheme = "wss" if node.redfish_tls is not None else "ws"
            row += (f"{scheme}://{ws.host_port}" if ws else "-",)
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip(), file=out)
