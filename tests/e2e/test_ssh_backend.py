"""The `ssh` backend end to end: `bmc-emulator serve` fronting a file-backed fake server
(tests/fake_server.py) driven over a real sshd on loopback, and the same with `host: local`;
ipmitool power, bootdev and sol activate, Redfish Reset and its errors."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
from conftest import Launcher
from e2e_helpers import ipmi_timed, system_request, wait_power

from tests.sshd_env import Sshd, skip_unless_root

FAKE = f"{shlex.quote(sys.executable)} " \
       f"{shlex.quote(str(Path(__file__).resolve().parents[1] / 'fake_server.py'))}"
TIMEOUT = 30
QUICK = 3.0


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    skip_unless_root()
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


def ssh_node(where: dict[str, Any], state: Path, **settings: Any) -> dict[str, Any]:
    fake = f"{FAKE} {shlex.quote(str(state))}"
    (state / "console").parent.mkdir(parents=True, exist_ok=True)
    (state / "console").touch()
    return {"name": "ssh-0", "backend": {
        "type": "ssh", **where,
        "power_on": f"{fake} on", "power_off": f"{fake} off", "soft_off": f"{fake} soft",
        "power_status": f"{fake} status",
        "set_boot_device": f"{fake} boot {{device}} {{mode}}",
        "console_command": f"{FAKE} console {shlex.quote(str(state / 'console'))} "
                           "'serial console of '{node}",
        "poll_interval": 1.0, "command_timeout": 2.0, **settings}}


@pytest.fixture(params=["ssh", "local"])
def where(request: pytest.FixtureRequest, sshd: Sshd) -> dict[str, Any]:
    if request.param == "local":
        return {"host": "local"}
    return sshd.backend_settings()


def test_power_bootdev_and_sol(where: dict[str, Any], tmp_path: Path,
                               emulator_factory: Launcher) -> None:
    bmc = emulator_factory(nodes=[ssh_node(where, tmp_path)])
    done, _ = ipmi_timed(bmc, "power", "status")
    assert done.stdout.strip() == "Chassis Power is off", done.stderr
    done, _ = ipmi_timed(bmc, "chassis", "bootdev", "pxe")
    assert done.returncode == 0, done.stderr
    sol = pexpect.spawn("ipmitool", bmc.ipmitool(bmc.nodes[0], "sol", "activate")[1:],
                        timeout=TIMEOUT)
    try:
        sol.expect(b"SOL Session operational")
        sol.expect(b"serial console of ssh-0")
        done, took = ipmi_timed(bmc, "power", "on")
        assert done.returncode == 0 and took < QUICK, done.stderr
        sol.expect(b"fake-server: booting from Pxe \\(legacy\\)")
        sol.send(b"over sol\r")
        sol.expect(b"echo: over sol")
        sol.send(b"\r~.")
        sol.expect(pexpect.EOF)
    finally:
        sol.close(force=True)
    wait_power(bmc, "on")
    assert (tmp_path / "power").read_text() == "on"
    done, _ = ipmi_timed(bmc, "power", "soft")
    assert done.returncode == 0, done.stderr
    wait_power(bmc, "off")
    # the one-time PXE override was used: the next boot passes None
    reply = system_request(bmc, "/Actions/ComputerSystem.Reset", ResetType="On")
    assert reply.status_code in (202, 204), reply.text
    wait_power(bmc, "on")
    assert (tmp_path / "actions").read_text().count("boot ") == 2
    assert (tmp_path / "boot").read_text() == "None legacy"
    done, _ = ipmi_timed(bmc, "power", "off")
    assert done.returncode == 0
    wait_power(bmc, "off")


def test_a_change_on_the_host_is_seen(where: dict[str, Any], tmp_path: Path,
                                      emulator_factory: Launcher) -> None:
    bmc = emulator_factory(nodes=[ssh_node(where, tmp_path)])
    wait_power(bmc, "off")
    (tmp_path / "power").write_text("on")  # someone ran `virsh start` by hand
    wait_power(bmc, "on", timeout=6)


def test_a_failing_command_is_a_clear_quick_error(where: dict[str, Any], tmp_path: Path,
                                                 emulator_factory: Launcher) -> None:
    bmc = emulator_factory(nodes=[ssh_node(where, tmp_path)])
    wait_power(bmc, "off")
    (tmp_path / "fail-on").write_text("exit")
    began = time.monotonic()
    reply = system_request(bmc, "/Actions/ComputerSystem.Reset", ResetType="On")
    assert time.monotonic() - began < QUICK
    assert reply.status_code == 503, reply.text
    message = reply.json()["error"]["message"]
    assert "power_on command failed (exit 3): fake-server: on is broken" in message
    # a hung status command: reported within command_timeout (2 s), never a hang
    (tmp_path / "fail-on").unlink()
    (tmp_path / "fail-status").write_text("hang")
    deadline = time.monotonic() + 10
    while system_request(bmc).json()["Status"]["Health"] != "Critical" or \
            "did not finish" not in system_request(bmc, "/Actions/ComputerSystem.Reset",
                                            ResetType="On").text:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done, took = ipmi_timed(bmc, "power", "on")
    assert done.returncode != 0 and took < QUICK
    assert "not supported in present state" in done.stderr.lower(), done.stderr
    (tmp_path / "fail-status").unlink()
    deadline = time.monotonic() + 10
    while system_request(bmc).json()["Status"]["Health"] != "OK":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_an_unreachable_host_is_a_quick_error(tmp_path: Path, emulator_factory: Launcher
                                              ) -> None:
    port = emulator_factory.free_port("tcp")  # nobody listens there
    bmc = emulator_factory(nodes=[ssh_node({"host": "127.0.0.1", "port": port}, tmp_path)])
    began = time.monotonic()
    reply = system_request(bmc, "/Actions/ComputerSystem.Reset", ResetType="On")
    assert time.monotonic() - began < QUICK
    assert reply.status_code == 503 and "cannot connect" in reply.text
