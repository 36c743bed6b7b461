"""`bmc-emulator serve` as a user runs it: starting, stopping, and refusing to start."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import textwrap
import urllib.request
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Launcher

HOST = "127.0.0.1"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_starts_and_stops_cleanly(emulator_factory: Launcher, sig: int) -> None:
    bmc = emulator_factory(nodes=2)
    rows = bmc.stdout.splitlines()
    for node in bmc.nodes:
        assert any(row.split()[:3] == [node.name, f"{HOST}:{node.ipmi_port}", node.redfish_url]
                   for row in rows), rows
        assert not emulator_factory.port_is_free(node.ipmi_port, "udp")
        with socket.create_connection((HOST, int(node.redfish_url.rsplit(":", 1)[1])), 5):
            pass
    assert rows[-1] == "bmc-emulator ready: 2 nodes"

    assert bmc.stop(sig) == 0, bmc.stderr
    assert "Traceback" not in bmc.stderr
    assert bmc.password not in bmc.stdout + bmc.stderr
    for node in bmc.nodes:
        assert emulator_factory.port_is_free(node.ipmi_port, "udp")


def test_both_protocols_answer_for_each_node(emulator_factory: Launcher) -> None:
    bmc = emulator_factory(nodes=2)
    node = bmc.nodes[1]
    out = subprocess.run(bmc.ipmitool(node, "chassis", "power", "status"), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "Chassis Power is off" in out.stdout, out.stderr
    with urllib.request.urlopen(f"{node.redfish_url}/redfish/v1/", timeout=10) as response:
        assert response.status == 200
        assert "Systems" in json.load(response)


def test_serve_with_flags_only(emulator_factory: Launcher) -> None:
    ipmi_base = emulator_factory.free_port("udp", count=3)
    redfish_base = emulator_factory.free_port("tcp", count=3)
    bmc = emulator_factory.launch_flags(3, ipmi_base, redfish_base, "root", "calvin")
    assert [n.ipmi_port for n in bmc.nodes] == [ipmi_base, ipmi_base + 1, ipmi_base + 2]
    assert bmc.stdout.splitlines()[-1] == "bmc-emulator ready: 3 nodes"
    out = subprocess.run(bmc.ipmitool(2, "chassis", "power", "status"), capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert bmc.stop() == 0


def test_an_ipmi_port_in_use_is_a_clear_error(emulator_factory: Launcher) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((HOST, 0))
        port = holder.getsockname()[1]
        specs = emulator_factory.node_specs([{"ipmi": {"port": port}}, {}])
        path = emulator_factory.write_config({"nodes": specs})
        result = emulator_factory.run_to_exit(["--config", str(path)])
    assert result.returncode != 0
    assert str(port) in result.stderr.splitlines()[-1], result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: ")
    assert "ready" not in result.stdout


def test_a_redfish_port_in_use_is_a_clear_error_and_frees_ipmi(
        emulator_factory: Launcher) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        specs = emulator_factory.node_specs([{}, {"redfish": {"port": port}}])
        path = emulator_factory.write_config({"nodes": specs})
        result = emulator_factory.run_to_exit(["--config", str(path)])
    assert result.returncode != 0
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: ") and str(port) in last, result.stderr
    assert "ready" not in result.stdout
    assert all(emulator_factory.port_is_free(spec["ipmi"]["port"], "udp") for spec in specs)


def test_a_bad_config_names_file_line_node_and_field(emulator_factory: Launcher) -> None:
    path = emulator_factory.write_config(textwrap.dedent("""\
        defaults:
          username: admin
        nodes:
          - name: node-0
            backend: {type: memory}
          - name: node-1
            backend: {type: memory}
            ipmi: {address: 127.0.0.1, port: 70000}
        """))
    result = emulator_factory.run_to_exit(["--config", str(path)])
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {path}:8: node 'node-1': ipmi.port: port 70000 is out of range 1..65535\n")
    assert result.stdout == ""


def test_a_yaml_syntax_error_names_file_and_line(emulator_factory: Launcher) -> None:
    path = emulator_factory.write_config("nodes:\n  - name: a\n    ipmi: {port: 1\n  - name: b\n")
    result = emulator_factory.run_to_exit(["--config", str(path)])
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}:4: YAML syntax: ")


def test_a_free_port_is_never_a_fixed_one(emulator_factory: Launcher) -> None:
    taken: set[int] = set()
    ports = {emulator_factory.free_port("udp", taken) for _ in range(20)}
    assert len(ports) == 20 and ports == taken and not ports & {6230, 8000}
