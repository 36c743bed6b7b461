"""BMCs on their own addresses, one port for all (as on a real network): one socket per
protocol serves them all, and the destination address decides the BMC."""

from __future__ import annotations

import os
import subprocess

import requests

from bench.util import free_ports
from bmc.node import node_uuid

NODES = 40
BASE = "127.4.0."  # 127.4.0.1 .. : loopback, distinct from other tests' addresses


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_each_address_is_its_own_bmc_on_shared_sockets(emulator_factory) -> None:
    ipmi_port, redfish_port = free_ports("udp"), free_ports("tcp")
    nodes = [{"name": f"bmc-{i}", "backend": {"type": "memory"},
              "ipmi": {"address": f"{BASE}{i + 1}", "port": ipmi_port},
              "redfish": {"address": f"{BASE}{i + 1}", "port": redfish_port}}
             for i in range(NODES)]
    bmc = emulator_factory(nodes=nodes)
    auth = (bmc.username, bmc.password)
    # a constant number of descriptors: not two per BMC
    assert _fds(bmc.process.pid) < NODES, sorted(os.listdir(f"/proc/{bmc.process.pid}/fd"))
    for index in (0, 17, NODES - 1):
        node = bmc.nodes[index]
        guid = subprocess.run(bmc.ipmitool(node, "mc", "guid"), capture_output=True,
                              text=True, timeout=30)
        assert node_uuid(node.name) in guid.stdout, guid.stdout + guid.stderr
        systems = requests.get(f"{node.redfish_url}/redfish/v1/Systems", auth=auth, timeout=5)
        assert systems.json()["Members"] == [{"@odata.id": f"/redfish/v1/Systems/{node.name}"}]
    # power on one BMC: only that one is on
    on = subprocess.run(bmc.ipmitool(bmc.nodes[17], "chassis", "power", "on"),
                        capture_output=True, text=True, timeout=30)
    assert on.returncode == 0, on.stderr
    states = [subprocess.run(bmc.ipmitool(bmc.nodes[i], "chassis", "power", "status"),
                             capture_output=True, text=True, timeout=30).stdout
              for i in (16, 17, 18)]
    assert ["is on" in state for state in states] == [False, True, False], states
    # an address of this host that is no BMC's: no Redfish service there, no IPMI answer
    stray = f"{BASE}{NODES + 10}"
    reply = requests.get(f"http://{stray}:{redfish_port}/redfish/v1", timeout=5)
    assert reply.status_code == 404
    silent = subprocess.run(["ipmitool", "-I", "lanplus", "-H", stray, "-p", str(ipmi_port),
                             "-U", "admin", "-P", "password", "-N", "1", "-R", "1",
                             "power", "status"], capture_output=True, text=True, timeout=30)
    assert silent.returncode != 0
