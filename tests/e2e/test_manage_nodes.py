"""Nodes added and removed while the emulator runs (`bmc-emulator nodes ...`), driven with
the CLI and checked with ipmitool and HTTP, as `vbmc add/delete/list` users would."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import requests
from conftest import REPO
from e2e_helpers import run

from bench.util import free_ports


def nodes_cli(socket: Path, *args: str, stdin: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bmc.cli", "nodes", *args, "--socket",
                           str(socket)], cwd=REPO, input=stdin, capture_output=True,
                          text=True, timeout=60)


def ipmitool(port: int, *command: str) -> subprocess.CompletedProcess[str]:
    return run(["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(port), "-U", "admin",
                "-P", "password", "-N", "1", "-R", "2", *command])


def test_add_list_show_remove_while_serving(emulator_factory, tmp_path: Path) -> None:
    socket = tmp_path / "manage" / "bmc.sock"
    bmc = emulator_factory(nodes=[{"name": "first", "backend": {"type": "memory"}}],
                           args=["--manage-socket", str(socket)])
    # only its owner may connect
    assert stat.S_IMODE(socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(socket.parent.stat().st_mode) == 0o700
    listed = nodes_cli(socket, "list")
    assert listed.returncode == 0 and "first" in listed.stdout, listed.stderr

    ipmi, redfish = free_ports("udp"), free_ports("tcp")
    spec = (f"name: added\nbackend: {{type: memory, power_on: true}}\n"
            f"ipmi: {{port: {ipmi}}}\nredfish: {{port: {redfish}}}\n")
    added = nodes_cli(socket, "add", "-", stdin=spec)
    assert added.returncode == 0, added.stderr
    assert f"127.0.0.1:{ipmi}" in added.stdout
    assert "Chassis Power is on" in ipmitool(ipmi, "chassis", "power", "status").stdout
    system = requests.get(f"http://127.0.0.1:{redfish}/redfish/v1/Systems/added",
                          auth=("admin", "password"), timeout=5)
    assert system.status_code == 200 and system.json()["PowerState"] == "On"
    shown = json.loads(nodes_cli(socket, "show", "added").stdout)
    assert shown["power"] == "On" and "password" not in json.dumps(shown)

    # refused like a config: every problem, with its line and field; nothing changes
    bad = nodes_cli(socket, "add", "-",
                    stdin=f"name: first\nipmi: {{port: {ipmi}}}\ncolour: blue\n")
    assert bad.returncode == 2
    assert "line 3: node 'first': colour: unknown key" in bad.stderr, bad.stderr
    assert "duplicate node name" in bad.stderr
    assert f"127.0.0.1:{ipmi} is already used by node 'added'" in bad.stderr
    assert len(json.loads(nodes_cli(socket, "list", "--json").stdout)) == 2

    # an open IPMI session and a Redfish connection to the node end when it goes
    keep = requests.Session()
    assert keep.get(f"http://127.0.0.1:{redfish}/redfish/v1", timeout=5).ok
    removed = nodes_cli(socket, "remove", "added")
    assert removed.returncode == 0, removed.stderr
    assert ipmitool(ipmi, "chassis", "power", "status").returncode != 0
    try:
        keep.get(f"http://127.0.0.1:{redfish}/redfish/v1", timeout=5)
        raise AssertionError("the removed node's Redfish service still answers")
    except requests.ConnectionError:
        pass
    assert nodes_cli(socket, "remove", "added").returncode != 0  # gone already
    # the first node never noticed
    assert ipmitool(bmc.nodes[0].ipmi_port, "chassis", "power", "status").returncode == 0
    bmc.stop()
    assert not socket.exists()  # cleaned up at exit


def test_no_emulator_on_the_socket_is_a_clear_error(tmp_path: Path) -> None:
    done = nodes_cli(tmp_path / "none.sock", "list")
    assert done.returncode == 1 and "no emulator answers on" in done.stderr
    assert "--manage-socket" in done.stderr
    assert os.path.basename(str(tmp_path / "none.sock")) in done.stderr


def test_removed_node_keeps_its_state_unless_forgotten(emulator_factory, tmp_path: Path) -> None:
    """With --state-dir, `nodes remove NAME` keeps the node's saved state (adding it again
    brings it back); `nodes remove --forget NAME` deletes it."""
    socket = tmp_path / "manage" / "bmc.sock"
    emulator_factory(nodes=[{"name": "first", "backend": {"type": "memory"}}],
                     args=["--manage-socket", str(socket), "--state-dir",
                           str(tmp_path / "state")])
    ipmi, redfish = free_ports("udp"), free_ports("tcp")
    spec = (f"name: added\nbackend: {{type: memory}}\n"
            f"ipmi: {{port: {ipmi}}}\nredfish: {{port: {redfish}}}\n")

    def bootdev() -> str:
        return ipmitool(ipmi, "chassis", "bootparam", "get", "5").stdout

    assert nodes_cli(socket, "add", "-", stdin=spec).returncode == 0
    assert ipmitool(ipmi, "chassis", "bootdev", "pxe", "options=persistent").returncode == 0
    assert nodes_cli(socket, "remove", "added").returncode == 0
    assert nodes_cli(socket, "add", "-", stdin=spec).returncode == 0
    assert "Force PXE" in bootdev()  # kept while it was away

    forgot = nodes_cli(socket, "remove", "--forget", "added")
    assert forgot.returncode == 0 and "saved state" in forgot.stdout, forgot.stderr
    assert nodes_cli(socket, "add", "-", stdin=spec).returncode == 0
    assert "No override" in bootdev()  # a fresh start
