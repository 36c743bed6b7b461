"""RedfishServer lifecycle: binding, port errors, stop; and that importing it stays cheap."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import requests

from backends.memory import MemoryBackend
from bmc.node import Node
from redfish.server import PER_CLIENT_CONNECTIONS, RedfishServer


def make_node(name: str = "node-1") -> Node:
    node = Node(name, MemoryBackend())
    node.users.add("admin", "password")
    return node


def test_import_does_not_load_flask_or_waitress() -> None:
    code = ("import sys, redfish.server; "
            "print(sorted(m for m in ('flask', 'waitress', 'werkzeug') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_port_in_use_is_an_oserror_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = RedfishServer([("127.0.0.1", 0, make_node("a")),
                                ("127.0.0.1", port, make_node("b"))])
        with pytest.raises(OSError, match=f"127.0.0.1:{port} is in use"):
            server.start()
        assert server.ports == []
        server.stop()  # harmless when never started


def test_same_port_twice_fails_at_start() -> None:
    first = RedfishServer([("127.0.0.1", 0, make_node("a"))])
    first.start()
    try:
        port = first.ports[0]
        second = RedfishServer([("127.0.0.1", port, make_node("b"))])
        with pytest.raises(OSError, match=str(port)):
            second.start()
    finally:
        first.stop()


def test_unknown_address_is_an_oserror_naming_it() -> None:
    server = RedfishServer([("192.0.2.123", 0, make_node())])  # TEST-NET: not ours
    with pytest.raises(OSError, match="192.0.2.123"):
        server.start()


def test_start_serves_and_stop_closes() -> None:
    server = RedfishServer([("127.0.0.1", 0, make_node())], threads=2)
    with pytest.raises(ValueError):
        RedfishServer([])
    server.start()
    with pytest.raises(RuntimeError):
        server.start()
    (port,) = server.ports
    assert port != 0
    url = f"http://127.0.0.1:{port}/redfish/v1"
    assert requests.get(url, timeout=5).status_code == 200
    server.stop()
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
    # the port is free again at once (SO_REUSEADDR) and the server can start anew
    again = RedfishServer([("127.0.0.1", port, make_node())])
    with again:
        assert requests.get(url, timeout=5).status_code == 200


def test_stop_is_prompt() -> None:
    server = RedfishServer([("127.0.0.1", 0, make_node(f"n{i}")) for i in range(3)])
    server.start()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 0.8  # woken at once, not at the 1 s poll timeout


def test_many_bmcs_under_a_low_open_file_limit() -> None:
    # 300 BMCs need more descriptors than a soft limit of 256: start() raises it itself
    code = """
import resource, requests
from backends.memory import MemoryBackend
from bmc.node import Node
from redfish.server import PER_CLIENT_CONNECTIONS, RedfishServer
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
nodes = [Node(f"n{i}", MemoryBackend()) for i in range(300)]
for node in nodes:
    node.users.add("admin", "password")
server = RedfishServer([("127.0.0.1", 0, node) for node in nodes])
server.start()
for i in (0, 150, 299):
    url = f"http://127.0.0.1:{server.ports[i]}/redfish/v1/Systems"
    members = requests.get(url, auth=("admin", "password"), timeout=5).json()["Members"]
    assert members == [{"@odata.id": f"/redfish/v1/Systems/n{i}"}], members
server.stop()
print("ok", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2048:
        pytest.skip("hard open-file limit too low to raise")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")
    assert int(result.stdout.split()[1]) > 256


def test_a_client_opening_a_connection_per_request_loses_none() -> None:
    """As many threads as the per-client share, each a new connection per request: the
    share's room is made from connections the client has closed (the server has not read
    their end yet), never from one whose request waits unread."""
    import http.client
    import threading
    from collections import Counter

    server = RedfishServer([("127.0.0.1", 0, make_node())])
    server.start()
    port = server.ports[0]
    errors: Counter[str] = Counter()
    answered = [0]
    deadline = time.monotonic() + 2

    def client() -> None:
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request("GET", "/redfish/v1")
                connection.getresponse().read()
                answered[0] += 1
            except (OSError, http.client.HTTPException) as exc:
                errors[type(exc).__name__] += 1
            finally:
                connection.close()

    try:
        threads = [threading.Thread(target=client) for _ in range(PER_CLIENT_CONNECTIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        server.stop()
    assert answered[0] > 500
    assert not errors, errors
