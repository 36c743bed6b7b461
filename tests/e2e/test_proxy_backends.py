"""The proxy backends end to end: a front bmc-emulator whose servers are behind real BMCs.

    ipmitool / requests -> front emulator -> `ipmi` backend    -> ipmi_sim (OpenIPMI, suite 3)
                                          -> `ipmi` backend    -> a second bmc-emulator (+SOL)
                                          -> `redfish` backend -> a second bmc-emulator
                                          -> `redfish` backend -> sushy-emulator (fake driver)

The servers behind the second emulator are `process` nodes running a shell that writes the
boot device it was started with (BMC_BOOT_DEVICE) to a file, so a test sees what reached them,
and one runs the simulated firmware for the serial console.

The front answers power actions at once and carries them out on the node's worker (as a real
BMC does): a test waits for their effect behind, and for `power status` to show it.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
import requests
from conftest import Emulator, Launcher

from tests.ipmi_sim_env import IpmiSim
from tests.sushy_env import PASSWORD as SUSHY_PASSWORD
from tests.sushy_env import USERNAME as SUSHY_USERNAME
from tests.sushy_env import SushyEmulator

TIMEOUT = 30.0  # generous: a loaded 2-core machine
SIM_ENV = "BMC_TEST_PROXY_SIM_PASSWORD"
SUSHY_ENV = "BMC_TEST_PROXY_SUSHY_PASSWORD"
BACK_PASSWORD = "back-secret-1"
#: what a failed call may take end to end: the backend's 2 s deadline plus the front's work
FAILURE_BUDGET = 3.5


def boot_logger(path: Path) -> dict[str, Any]:
    """A `process` backend whose 'server' records each boot's device and then idles."""
    script = f'echo "$BMC_BOOT_DEVICE" >> {path}; exec sleep 600'
    return {"type": "process", "command": ["/bin/sh", "-c", script], "stop_timeout": 1}


# -- the BMCs behind, and the front ------------------------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpmiSim]:
    with IpmiSim(tmp_path_factory.mktemp("ipmi_sim")) as sim:
        yield sim


@pytest.fixture(scope="module")
def sushy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SushyEmulator]:
    with SushyEmulator(tmp_path_factory.mktemp("sushy")) as bmc:
        yield bmc


@pytest.fixture(scope="module")
def back(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    launcher = Launcher(tmp_path_factory.mktemp("back"))
    work = launcher.workdir
    bmc = launcher([
        {"name": "sol-box", "backend": {"type": "process", "env": {"BMC_SIM_SPEED": "0"}}},
        {"name": "ipmi-box", "backend": boot_logger(work / "ipmi-box.boots")},
        {"name": "rf-box", "backend": boot_logger(work / "rf-box.boots")},
    ], password=BACK_PASSWORD, log_level="info")
    yield bmc
    launcher.close()


def boots(back: Emulator, name: str) -> list[str]:
    path = back.workdir.parent / f"{name}.boots"
    return path.read_text().split() if path.exists() else []


def wait_boot(back: Emulator, name: str, count: int) -> str:
    """The device of boot number `count` of `name` (its shell writes it when it starts)."""
    wait_for(lambda: len(boots(back, name)) >= count, f"boot {count} of {name}")
    return boots(back, name)[count - 1]


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, sim: IpmiSim, sushy: SushyEmulator,
          back: Emulator) -> Iterator[Emulator]:
    launcher = Launcher(tmp_path_factory.mktemp("front"))
    secret = launcher.workdir / "back-password"
    secret.write_text(BACK_PASSWORD + "\n")
    secret.chmod(0o600)
    host = launcher.host

    def behind_back(name: str, **more: Any) -> dict[str, Any]:
        return {"type": "ipmi", "address": host, "port": back.node(name).ipmi_port,
                "username": back.username, "password_file": str(secret), "cipher_suite": 17,
                **more}

    nodes = [
        {"name": "via-sim", "backend": {"type": "ipmi", "address": host, "port": sim.port,
                                        "username": sim.username, "password_env": SIM_ENV,
                                        "poll_interval": 1}},
        {"name": "via-ipmi", "backend": behind_back("ipmi-box")},
        {"name": "via-sol", "backend": behind_back("sol-box", console=True)},
        {"name": "via-rf", "backend": {"type": "redfish", "url": back.node("rf-box").redfish_url,
                                       "username": back.username,
                                       "password_file": str(secret)}},
        {"name": "via-sushy", "backend": {"type": "redfish", "url": sushy.url,
                                          "username": SUSHY_USERNAME,
                                          "password_env": SUSHY_ENV, "poll_interval": 1}},
    ]
    with pytest.MonkeyPatch.context() as env:  # the front's environment has the passwords
        env.setenv(SIM_ENV, sim.password)
        env.setenv(SUSHY_ENV, SUSHY_PASSWORD)
        bmc = launcher(nodes, log_level="info")
    yield bmc
    launcher.close()
    # the passwords of the BMCs behind are never printed or logged by the front
    for secret_text in (sim.password, SUSHY_PASSWORD, BACK_PASSWORD):
        assert secret_text not in bmc.stdout + bmc.stderr


# -- helpers -----------------------------------------------------------------------------------
def ipmitool(bmc: Emulator, node: str, *command: str, wait: int = 1
             ) -> subprocess.CompletedProcess[str]:
    """ipmitool -I lanplus (suite 17, ipmitool's default here) against a front node.

    `wait`: seconds ipmitool waits for an answer before it retries (-N).
    """
    argv = bmc.ipmitool(bmc.node(node), *command)
    argv[argv.index("-N") + 1] = str(wait)
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def ok(bmc: Emulator, node: str, *command: str) -> str:
    result = ipmitool(bmc, node, *command)
    assert result.returncode == 0, result.stderr
    return result.stdout


def wait_for(check: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def wait_status(bmc: Emulator, node: str, state: str, timeout: float = TIMEOUT) -> None:
    """Until `power status` in front says `state` ("on"/"off")."""
    wait_for(lambda: f"Chassis Power is {state}" in ok(bmc, node, "power", "status"),
             f"{node}: power status {state}", timeout)


def redfish(bmc: Emulator, node: str, path: str, method: str = "GET", **body: Any
            ) -> requests.Response:
    url = f"{bmc.node(node).redfish_url}/redfish/v1/Systems/{node}{path}"
    return requests.request(method, url, json=body or None, timeout=TIMEOUT,
                            auth=(bmc.username, bmc.password))


# -- `ipmi` backend -> ipmi_sim ------------------------------------------------------------------
def test_ipmitool_power_through_the_ipmi_backend_reaches_ipmi_sim(
        front: Emulator, sim: IpmiSim) -> None:
    # the client speaks suite 17 to us; ipmi_sim behind has only suite 3
    ok(front, "via-sim", "power", "off")
    wait_for(lambda: not sim.power, "ipmi_sim off")
    wait_status(front, "via-sim", "off")
    assert "Up/On" in ok(front, "via-sim", "power", "on")
    wait_for(lambda: sim.power, "ipmi_sim on")
    wait_status(front, "via-sim", "on")
    sim.power = False  # switched off at the BMC itself, behind the front's back: polled
    wait_status(front, "via-sim", "off", timeout=5)


def test_chassis_bootdev_pxe_reaches_ipmi_sim_with_the_power_on(
        front: Emulator, sim: IpmiSim) -> None:
    ok(front, "via-sim", "power", "off")
    wait_status(front, "via-sim", "off")
    assert "Set Boot Device to pxe" in ok(front, "via-sim", "chassis", "bootdev", "pxe")
    before = len(sim.calls)
    ok(front, "via-sim", "power", "on")
    wait_for(lambda: "0x20 set power 1" in sim.calls[before:], "ipmi_sim powered on")
    calls = sim.calls[before:]
    assert "0x20 set boot pxe" in calls
    assert calls.index("0x20 set boot pxe") < calls.index("0x20 set power 1")


def test_redfish_in_front_of_ipmi_sim(front: Emulator, sim: IpmiSim) -> None:
    sim.power = True
    wait_for(lambda: redfish(front, "via-sim", "").json()["PowerState"] == "On", "On")
    system = redfish(front, "via-sim", "")
    assert system.status_code == 200 and system.headers.get("ETag")  # new to the old BMC
    off = redfish(front, "via-sim", "/Actions/ComputerSystem.Reset", "POST",
                  ResetType="ForceOff")
    assert off.status_code in (202, 204), off.text  # 202: still under way after 1 s
    wait_for(lambda: not sim.power, "ipmi_sim off")
    wait_for(lambda: redfish(front, "via-sim", "").json()["PowerState"] == "Off", "Off")


def test_no_serial_console_where_the_backend_has_none(front: Emulator) -> None:
    result = ipmitool(front, "via-sim", "sol", "activate")
    assert result.returncode != 0  # refused (payload disabled), not a hang


# -- `ipmi` backend -> a second bmc-emulator ----------------------------------------------------
def test_ipmi_backend_to_a_second_emulator(front: Emulator, back: Emulator) -> None:
    ok(front, "via-ipmi", "power", "off")
    wait_status(front, "via-ipmi", "off")
    count = len(boots(back, "ipmi-box"))
    ok(front, "via-ipmi", "chassis", "bootdev", "pxe")
    ok(front, "via-ipmi", "power", "on")
    assert wait_boot(back, "ipmi-box", count + 1) == "Pxe"
    wait_status(front, "via-ipmi", "on")
    behind = requests.get(f"{back.node('ipmi-box').redfish_url}/redfish/v1/Systems/ipmi-box",
                          auth=(back.username, back.password), timeout=TIMEOUT).json()
    assert behind["PowerState"] == "On"
    ok(front, "via-ipmi", "power", "off")
    wait_status(front, "via-ipmi", "off")


def test_sol_through_the_ipmi_backend(front: Emulator, back: Emulator) -> None:
    ok(front, "via-sol", "power", "on")
    wait_status(front, "via-sol", "on")
    child = pexpect.spawn("ipmitool", front.ipmitool(front.node("via-sol"), "sol",
                                                     "activate")[1:], timeout=TIMEOUT)
    child.delaybeforesend = None
    try:
        child.expect(b"SOL Session operational")
        child.expect(b"sol-box login: ")  # the boot, relayed: SOL behind -> SOL in front
        child.send(b"root\r")
        child.expect(b"root@sol-box:~# ")
        child.send(b"echo through two BMCs\r")
        child.expect(b"\r\nthrough two BMCs\r\n")
        # someone ends our SOL session at the BMC behind: the link opens a new one (1 s later)
        kicked = subprocess.run(back.ipmitool(back.node("sol-box"), "sol", "deactivate"),
                                capture_output=True, text=True, timeout=TIMEOUT)
        assert kicked.returncode == 0, kicked.stderr

        def answered() -> bool:
            child.send(b"echo back again\r")
            return child.expect([b"\r\nback again\r\n", pexpect.TIMEOUT], timeout=0.5) == 0

        wait_for(answered, "the SOL link to come back", timeout=10)
        child.send(b"\r~.")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    ok(front, "via-sol", "power", "off")


# -- `redfish` backend -> a second bmc-emulator -------------------------------------------------
def test_redfish_backend_to_a_second_emulator(front: Emulator, back: Emulator) -> None:
    ok(front, "via-rf", "power", "off")
    wait_status(front, "via-rf", "off")
    count = len(boots(back, "rf-box"))
    ok(front, "via-rf", "chassis", "bootdev", "pxe")
    assert "Up/On" in ok(front, "via-rf", "power", "on")
    assert wait_boot(back, "rf-box", count + 1) == "Pxe"
    wait_status(front, "via-rf", "on")
    ok(front, "via-rf", "chassis", "bootdev", "cdrom")
    ok(front, "via-rf", "power", "cycle")
    assert wait_boot(back, "rf-box", count + 2) == "Cd"
    ok(front, "via-rf", "power", "off")
    wait_status(front, "via-rf", "off")
    behind = requests.get(f"{back.node('rf-box').redfish_url}/redfish/v1/Systems/rf-box",
                          auth=(back.username, back.password), timeout=TIMEOUT).json()
    assert behind["PowerState"] == "Off"


# -- `redfish` backend -> sushy-emulator --------------------------------------------------------
def test_redfish_backend_to_sushy_emulator(front: Emulator, sushy: SushyEmulator) -> None:
    ok(front, "via-sushy", "power", "off")
    sushy.wait_power("Off")  # its fake driver applies a power change 1-11 s later
    wait_status(front, "via-sushy", "off", timeout=5)  # the front polls it every second
    ok(front, "via-sushy", "chassis", "bootdev", "pxe")
    ok(front, "via-sushy", "power", "on")
    wait_for(lambda: sushy.system()["Boot"]["BootSourceOverrideTarget"] == "Pxe",  # type: ignore[index]
             "the boot override at sushy-emulator")
    sushy.wait_power("On")
    wait_status(front, "via-sushy", "on", timeout=5)
    # the front offers what the BMC behind offers: no BiosSetup there, so none here
    boot = redfish(front, "via-sushy", "").json()["Boot"]
    assert "BiosSetup" not in boot["BootSourceOverrideTarget@Redfish.AllowableValues"]
    assert "Pxe" in boot["BootSourceOverrideTarget@Redfish.AllowableValues"]
    refused = ipmitool(front, "via-sushy", "chassis", "bootdev", "bios")  # exits 0 regardless
    assert "Boot Parameter 5 failed: Invalid data field" in refused.stderr


# -- failures: clear errors, fast ---------------------------------------------------------------
@pytest.fixture(scope="module")
def dead_front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """Front nodes whose BMCs behind do not answer (nothing listens at their ports)."""
    launcher = Launcher(tmp_path_factory.mktemp("dead-front"))
    udp, tcp = launcher.free_port("udp"), launcher.free_port("tcp")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SIM_ENV, "whatever")
        bmc = launcher([
            {"name": "gone-ipmi", "backend": {"type": "ipmi", "address": "127.0.0.1",
                                              "port": udp, "username": "admin",
                                              "password_env": SIM_ENV}},
            {"name": "gone-rf", "backend": {"type": "redfish", "url": f"http://127.0.0.1:{tcp}",
                                            "password_env": SIM_ENV}},
        ], log_level="info")
    yield bmc
    launcher.close()


REASON = r"BMC 127\.0\.0\.1:\d+: power status: no answer within 2\.0 s|" \
         r"http://127\.0\.0\.1:\d+: power state: cannot connect: Connection refused"


@pytest.mark.parametrize("node", ["gone-ipmi", "gone-rf"])
def test_a_dead_bmc_behind_is_a_clear_error_at_once(dead_front: Emulator, node: str) -> None:
    # the first read (at start) failed within the 2 s deadline: the node knows it is failing
    wait_for(lambda: redfish(dead_front, node, "").json()["Status"]["Health"] == "Critical",
             "the node to see its backend failing", timeout=5)
    started = time.monotonic()
    result = ipmitool(dead_front, node, "power", "on", wait=5)  # no client retry meanwhile
    assert result.returncode != 0 and "Up/On failed" in result.stderr, result
    reset = redfish(dead_front, node, "/Actions/ComputerSystem.Reset", "POST", ResetType="On")
    assert time.monotonic() - started < 1.5
    assert reset.status_code == 503 and reset.headers.get("Retry-After")
    assert re.search(REASON, reset.json()["error"]["message"]), reset.text


def test_a_bmc_that_dies_is_a_clear_error_within_the_deadline(
        emulator_factory: Launcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with IpmiSim(tmp_path / "sim") as sim:
        monkeypatch.setenv(SIM_ENV, sim.password)
        bmc = emulator_factory([{"name": "n", "backend": {
            "type": "ipmi", "address": "127.0.0.1", "port": sim.port,
            "username": sim.username, "password_env": SIM_ENV}}])
        ok(bmc, "n", "power", "on")
        wait_for(lambda: sim.power, "ipmi_sim on")
    # ipmi_sim is gone: the next action is accepted, fails at the backend's 2 s deadline,
    # and the node then refuses actions with a reason until the BMC answers again
    started = time.monotonic()
    ok(bmc, "n", "power", "off")
    wait_for(lambda: redfish(bmc, "n", "").json()["Status"]["Health"] == "Critical",
             "the failure", timeout=5)
    assert time.monotonic() - started < FAILURE_BUDGET
    reset = redfish(bmc, "n", "/Actions/ComputerSystem.Reset", "POST", ResetType="ForceOff")
    assert reset.status_code == 503
    assert re.search(r"BMC 127\.0\.0\.1:\d+: power (off|status): no answer within 2\.0 s",
                     reset.json()["error"]["message"]), reset.text
    refused = ipmitool(bmc, "n", "power", "off")
    assert refused.returncode != 0 and "Down/Off failed" in refused.stderr, refused.stderr
