"""Idle connections cannot take Redfish down (issue: hardening, finding 2): each node has its
own share of connections, one client a share of a node's, and idle ones are closed soon."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack

import requests

FLOOD = 150  # idle connections to one node, from one address: past the old shared limit


def _idle(address: str, port: int) -> socket.socket:
    sock = socket.create_connection((address, port), timeout=5)
    sock.settimeout(0.5)
    return sock


def test_an_idle_flood_against_one_node_reaches_no_other(emulator_factory) -> None:
    bmc = emulator_factory(nodes=[{"name": "a", "backend": {"type": "memory"}},
                                  {"name": "b", "backend": {"type": "memory"}}])
    a, b = bmc.nodes
    port_a = int(a.redfish_url.rsplit(":", 1)[1])
    with ExitStack() as stack:
        flood = [stack.enter_context(_idle("127.0.0.1", port_a)) for _ in range(FLOOD)]
        time.sleep(0.5)  # accepted (or refused) by now
        # the other node answers at once
        began = time.monotonic()
        assert requests.get(f"{b.redfish_url}/redfish/v1", timeout=5).status_code == 200
        assert time.monotonic() - began < 2
        # the flooded node still serves another client address
        other = requests.Session()
        other.mount("http://", _SourceAdapter("127.0.0.3"))
        assert other.get(f"{a.redfish_url}/redfish/v1", timeout=5).status_code == 200
        # the flood's connections past its share were closed at once
        closed = sum(1 for sock in flood if _closed(sock))
        assert closed >= FLOOD - 16, closed
        # and the rest go when they have been idle too long (15 s, swept every 3 s)
        deadline = time.monotonic() + 30
        while sum(1 for sock in flood if _closed(sock)) < FLOOD:
            assert time.monotonic() < deadline, "idle connections were kept"
            time.sleep(1)


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


class _SourceAdapter(requests.adapters.HTTPAdapter):
    """Connections from another loopback address: another client, as the BMC sees it."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["source_address"] = (self.source, 0)
        return super().init_poolmanager(*args, **kwargs)
