"""The `metal` backend end to end: `bmc-emulator serve` fronting a device of the local Metal API
server (tests/metal_api_server.py, validated against the published spec) whose SOS console is a
real sshd on loopback; driven with ipmitool (power, bootdev, sol activate) and Redfish."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
from conftest import Launcher
from e2e_helpers import ipmi_timed, system_request, wait_power

from tests.metal_api_server import MetalApiServer
from tests.sshd_env import Sshd, skip_unless_root

FAKE_SERVER = str(Path(__file__).resolve().parents[1] / "fake_server.py")
TOKEN = "e2e-metal-token-5b1d9"
ENV = "BMC_E2E_METAL_TOKEN"
TIMEOUT = 30
#: "within ~2 s": the API's patience, plus ipmitool's and a loaded machine's share
QUICK = 3.0


@pytest.fixture
def metal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The Metal API with one device (inactive) and its SOS console on sshd."""
    skip_unless_root()
    monkeypatch.setenv(ENV, TOKEN)  # the emulator inherits it (its config names only ENV)
    serial = tmp_path / "serial"
    serial.write_text("")
    api = MetalApiServer(TOKEN, transition_delay=0.5, console_path=serial).start()
    device = api.add_device(state="inactive", hostname="metal-box")
    sos = f"{sys.executable} {FAKE_SERVER} console {serial} 'SOS console of metal-box'"
    sshd = Sshd(tmp_path / "sshd", users=[device], force_command=sos).start()
    yield {"api": api, "device": device, "sshd": sshd}
    sshd.stop()
    api.stop()
    assert api.violations == []


def node(metal: dict[str, Any], **settings: Any) -> dict[str, Any]:
    sshd: Sshd = metal["sshd"]
    return {"name": "metal-0", "backend": {
        "type": "metal", "device_id": metal["device"], "token_env": ENV,
        "base_url": metal["api"].url, "sos_host": "127.0.0.1", "sos_port": sshd.port,
        "sos_key": str(sshd.client_key), "sos_known_hosts": str(sshd.known_hosts),
        "ipxe_script_url": "http://boot.example/deploy.ipxe",
        "poll_interval": 1.0, "transition_poll": 0.2, "state_cache": 0.1, **settings}}


def wait_device(api: MetalApiServer, device: str, state: str, timeout: float = 10) -> None:
    """Until the API says `state` (the BMC reports a transition's end state at once)."""
    deadline = time.monotonic() + timeout
    while api.device(device).state != state:
        assert time.monotonic() < deadline, api.device(device).state
        time.sleep(0.05)


def test_power_bootdev_and_sol_through_metal(metal: dict[str, Any],
                                             emulator_factory: Launcher) -> None:
    api: MetalApiServer = metal["api"]
    device: str = metal["device"]
    bmc = emulator_factory(nodes=[node(metal)])
    done, _ = ipmi_timed(bmc, "power", "status")
    assert done.stdout.strip() == "Chassis Power is off", done.stderr
    done, _ = ipmi_timed(bmc, "chassis", "bootdev", "pxe")
    assert done.returncode == 0, done.stderr

    sol = pexpect.spawn("ipmitool", bmc.ipmitool(bmc.nodes[0], "sol", "activate")[1:],
                        timeout=TIMEOUT)
    try:
        sol.expect(b"SOL Session operational")
        sol.expect(b"SOS console of metal-box")  # the device's serial console, over SOS
        done, took = ipmi_timed(bmc, "power", "on")
        assert done.returncode == 0 and took < QUICK, done.stderr
        # the server boots from the network: its serial output comes through SOS and SOL
        sol.expect(b"metal-box: iPXE: booting from the network: chain "
                   b"http://boot.example/deploy.ipxe")
        sol.send(b"typed over SOL\r")
        sol.expect(b"echo: typed over SOL")
        sol.send(b"\r~.")
        sol.expect(pexpect.EOF)
    finally:
        sol.close(force=True)
    wait_power(bmc, "on")
    wait_device(api, device, "active")
    assert api.device(device).always_pxe is True
    assert api.device(device).boots == ["pxe http://boot.example/deploy.ipxe"]

    # the one-time override is used up: the next boot (a Redfish restart) is from the disk
    system = system_request(bmc).json()
    assert system["PowerState"] == "On" and system["Status"]["Health"] == "OK"
    assert set(system["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"]) == {
        "None", "Pxe", "Hdd"}
    reset = system_request(bmc, "/Actions/ComputerSystem.Reset", ResetType="ForceRestart")
    assert reset.status_code in (202, 204), reset.text
    deadline = time.monotonic() + 15
    while len(api.device(device).boots) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert api.device(device).boots[-1] == "disk"
    assert api.device(device).always_pxe is False

    done, took = ipmi_timed(bmc, "power", "off")
    assert done.returncode == 0 and took < QUICK
    wait_power(bmc, "off")
    wait_device(api, device, "inactive")
    assert api.device(device).actions == ["power_on", "reboot", "power_off"]
    # the token was in the emulator's environment, and nowhere else
    assert TOKEN not in bmc.stderr and TOKEN not in bmc.stdout
    assert TOKEN not in system_request(bmc).text


def test_power_changes_from_outside_are_seen(metal: dict[str, Any],
                                             emulator_factory: Launcher) -> None:
    api: MetalApiServer = metal["api"]
    bmc = emulator_factory(nodes=[node(metal)])
    wait_power(bmc, "off")
    api.set_state(metal["device"], "active")  # powered on in the Metal console
    wait_power(bmc, "on", timeout=5)  # poll_interval 1 s
    sel = subprocess.run(bmc.ipmitool(bmc.nodes[0], "sel", "elist"), capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert "S0/G0: working" in sel.stdout, sel.stdout


def test_a_device_being_provisioned_is_reported_by_name(metal: dict[str, Any],
                                                        emulator_factory: Launcher) -> None:
    api: MetalApiServer = metal["api"]
    api.set_state(metal["device"], "provisioning")
    bmc = emulator_factory(nodes=[node(metal)])
    system = system_request(bmc).json()
    assert system["Status"]["Health"] == "Critical"
    began = time.monotonic()
    reset = system_request(bmc, "/Actions/ComputerSystem.Reset", ResetType="On")
    assert time.monotonic() - began < QUICK
    assert reset.status_code == 503, reset.text
    assert "'provisioning'" in reset.text and reset.headers["Retry-After"]
    done, took = ipmi_timed(bmc, "power", "on")
    assert done.returncode != 0 and took < QUICK
    assert "not supported in present state" in done.stderr.lower(), done.stderr  # 0xD5
    # provisioning ends: the node recovers by itself and takes actions again
    api.set_state(metal["device"], "inactive")
    deadline = time.monotonic() + 10
    while system_request(bmc).json()["Status"]["Health"] != "OK":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done, _ = ipmi_timed(bmc, "power", "on")
    assert done.returncode == 0, done.stderr
    wait_power(bmc, "on")


def test_a_failing_api_is_a_quick_clear_error_and_recovers(metal: dict[str, Any],
                                                           emulator_factory: Launcher) -> None:
    api: MetalApiServer = metal["api"]
    bmc = emulator_factory(nodes=[node(metal)])
    wait_power(bmc, "off")
    api.fail(503, count=10**6)  # the API is down for a while
    deadline = time.monotonic() + 10  # the next poll finds out (poll_interval 1 s + 2 s)
    while system_request(bmc).json()["Status"]["Health"] != "Critical":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    began = time.monotonic()
    reset = system_request(bmc, "/Actions/ComputerSystem.Reset", ResetType="On")
    assert reset.status_code == 503 and time.monotonic() - began < QUICK
    message = reset.json()["error"]["message"]
    assert "503 Service Unavailable" in message and "gave up after" in message, message
    done, took = ipmi_timed(bmc, "power", "on")
    assert done.returncode != 0 and took < QUICK, done.stdout
    done, took = ipmi_timed(bmc, "power", "status")  # reads answer at once, from the last state
    assert done.returncode == 0 and took < QUICK
    api.clear_faults()
    deadline = time.monotonic() + 10
    while system_request(bmc).json()["Status"]["Health"] != "OK":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    done, _ = ipmi_timed(bmc, "power", "on")
    assert done.returncode == 0
    wait_power(bmc, "on")


def test_a_wrong_token_is_reported_without_showing_it(metal: dict[str, Any],
                                                      emulator_factory: Launcher,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "wrong-token-0000")
    bmc = emulator_factory(nodes=[node(metal)])
    reset = system_request(bmc, "/Actions/ComputerSystem.Reset", ResetType="On")
    assert reset.status_code == 503
    assert "401" in reset.text and f"${ENV}" in reset.text
    assert "wrong-token-0000" not in reset.text + bmc.stderr + bmc.stdout


def test_a_missing_token_is_a_config_error(metal: dict[str, Any], emulator_factory: Launcher,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV)
    config = emulator_factory.write_config({"nodes": [node(metal)]})
    done = emulator_factory.run_to_exit(["--config", str(config)])
    assert done.returncode == 2
    assert f"{ENV}" in done.stderr and "is not set" in done.stderr
