"""Nodes added to and removed from running servers (the management API's servers' side)."""

from __future__ import annotations

import socket

import pytest
import requests

from backends.memory import MemoryBackend
from bench.util import free_ports
from bmc.node import Node
from ipmi.server import IpmiServer
from redfish.server import RedfishServer

# Get Channel Authentication Capabilities, sessionless (what ipmitool sends first)
PROBE = bytes.fromhex("0600ff07000000000000000000092018c88100388e04b5")


def make_node(name: str) -> Node:
    node = Node(name, MemoryBackend())
    node.users.add("admin", "password")
    return node


def probe(address: str, port: int, timeout: float = 1.0) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(PROBE, (address, port))
        try:
            data, source = sock.recvfrom(2048)
        except TimeoutError:
            return False
        assert source == (address, port)  # answered from the BMC's own address
        return bool(data)


@pytest.mark.parametrize("layout", ["ports", "addresses"])
def test_ipmi_add_and_remove_while_serving(layout: str) -> None:
    port = free_ports("udp", 4)
    if layout == "ports":
        where = [("127.0.0.1", port + i) for i in range(3)]
    else:  # one port, an address each: one shared socket
        where = [(f"127.5.0.{i + 1}", port) for i in range(3)]
    first, second, added = (make_node(f"n{i}") for i in range(3))
    server = IpmiServer([(*where[0], first), (*where[1], second)])
    server.start()
    try:
        assert probe(*where[0]) and probe(*where[1]) and not probe(*where[2], timeout=0.3)
        assert server.add(*where[2], added) == where[2][1]
        assert probe(*where[2])
        with pytest.raises(OSError, match="already in use"):
            server.add(*where[2], make_node("again"))
        assert server.remove(second)
        assert not probe(*where[1], timeout=0.3)
        assert probe(*where[0]) and probe(*where[2])
        assert not server.remove(second)  # gone already
    finally:
        server.stop()
        for node in (first, second, added):
            node.close()


@pytest.mark.parametrize("layout", ["ports", "addresses"])
def test_redfish_add_and_remove_while_serving(layout: str) -> None:
    port = free_ports("tcp", 4)
    if layout == "ports":
        where = [("127.0.0.1", port + i) for i in range(3)]
    else:
        where = [(f"127.5.0.{i + 1}", port) for i in range(3)]
    first, second, added = (make_node(f"n{i}") for i in range(3))
    server = RedfishServer([(*where[0], first), (*where[1], second)])
    server.start()
    auth = ("admin", "password")

    def system(address: str, port: int) -> str | None:
        try:
            reply = requests.get(f"http://{address}:{port}/redfish/v1/Systems", auth=auth,
                                 timeout=2)
        except requests.ConnectionError:
            return None
        if reply.status_code != 200:
            return None
        return reply.json()["Members"][0]["@odata.id"].rsplit("/", 1)[1]

    try:
        assert system(*where[0]) == "n0" and system(*where[1]) == "n1"
        assert system(*where[2]) is None
        assert server.add(*where[2], added) == where[2][1]
        assert system(*where[2]) == "n2"
        with pytest.raises(OSError, match="in use"):
            server.add(*where[2], make_node("again"))
        kept = requests.Session()  # an open connection to the node that goes
        assert kept.get(f"http://{where[1][0]}:{where[1][1]}/redfish/v1", timeout=2).ok
        assert server.remove(second)
        assert system(*where[1]) is None
        # its open connection was closed: the next request is not served by the old node
        # (refused where it had a port of its own, 404 where the port is shared)
        try:
            again = kept.get(f"http://{where[1][0]}:{where[1][1]}/redfish/v1/Systems",
                             auth=auth, timeout=2)
            assert layout == "addresses" and again.status_code == 404
        except requests.ConnectionError:
            assert layout == "ports"
        assert system(*where[0]) == "n0" and system(*where[2]) == "n2"
    finally:
        server.stop()
        for node in (first, second, added):
            node.close()
