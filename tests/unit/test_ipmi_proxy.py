"""The `ipmi` backend against a real BMC: OpenIPMI's ipmi_sim on loopback (tests/ipmi_sim_env)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import BackendError, create_backend
from backends.base import BootDevice, PowerState
from backends.ipmi_proxy import IpmiProxyBackend
from backends.ipmitool import escape_sol_input
from bench.util import free_ports
from tests.ipmi_sim_env import IpmiSim

ENV = "BMC_TEST_IPMI_PROXY_PASSWORD"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpmiSim]:
    with IpmiSim(tmp_path_factory.mktemp("ipmi_sim")) as sim:
        yield sim


@pytest.fixture
def password_env(monkeypatch: pytest.MonkeyPatch, sim: IpmiSim) -> str:
    monkeypatch.setenv(ENV, sim.password)
    return ENV


def make(sim: IpmiSim, **settings: object) -> IpmiProxyBackend:
    settings = {"address": "127.0.0.1", "port": sim.port, "username": sim.username,
                "password_env": ENV, **settings}
    backend = create_backend("ipmi", settings, "front-1")
    assert isinstance(backend, IpmiProxyBackend)
    return backend


def test_power_on_status_off_reach_the_bmc(sim: IpmiSim, password_env: str) -> None:
    backend = make(sim)
    sim.power = False
    assert backend.power_state() is PowerState.OFF
    backend.power_on(BootDevice.NONE)
    assert sim.power and backend.power_state() is PowerState.ON
    backend.power_off()
    assert not sim.power and backend.power_state() is PowerState.OFF


def test_a_change_made_at_the_bmc_directly_is_what_power_state_reads(
        sim: IpmiSim, password_env: str) -> None:
    backend = make(sim)
    sim.power = True
    assert backend.power_state() is PowerState.ON
    sim.power = False
    assert backend.power_state() is PowerState.OFF
    assert backend.poll_interval == 10.0  # so the node polls and notices such changes


def test_the_boot_device_is_set_once_right_before_the_power_on(
        sim: IpmiSim, password_env: str) -> None:
    backend = make(sim)
    sim.power = False
    before = len(sim.calls)
    backend.boot_uefi = True  # `options=efiboot`: ipmi_sim accepts it (its script sees pxe)
    backend.power_on(BootDevice.PXE)
    calls = sim.calls[before:]
    assert sim.boot == "pxe" and sim.power
    assert calls.index("0x20 set boot pxe") < calls.index("0x20 set power 1")
    assert backend.last_boot_device is BootDevice.PXE
    backend.boot_uefi = False
    backend.reset(BootDevice.CDROM)
    assert sim.boot == "cdrom" and sim.calls[-1] == "0x20 set reset 1"


def test_soft_off_and_cycle(sim: IpmiSim, password_env: str) -> None:
    backend = make(sim)
    sim.power = True
    backend.soft_off()
    assert sim.calls[-1] == "0x20 set shutdown 1" and not sim.power
    backend.power_on(BootDevice.NONE)
    backend.power_cycle(BootDevice.DISK)
    assert sim.boot == "default"  # ipmi_sim's name for "force boot from the default disk"
    assert "0x20 set power 0" in sim.calls[-3:]  # ipmi_sim powers up again after a delay


def test_ipmi_1_5_lan_interface(sim: IpmiSim, password_env: str) -> None:
    backend = make(sim, interface="lan")
    sim.power = True
    assert backend.power_state() is PowerState.ON


def test_a_refused_command_is_a_clear_error(sim: IpmiSim, password_env: str) -> None:
    backend = make(sim)
    sim.power = True
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"power diag failed: .*Invalid data field"):
        backend.nmi()  # ipmi_sim has no diagnostic interrupt: a completion code
    assert time.monotonic() - started < 1.0


def test_wrong_password_and_unknown_user_are_named_fast(
        sim: IpmiSim, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
        ) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(ENV, "not-the-password")
    started = time.monotonic()
    with pytest.raises(BackendError, match="cannot open an IPMI session \\(wrong password\\)"
                       ) as wrong:
        make(sim).power_state()
    assert time.monotonic() - started < 1.0
    monkeypatch.setenv(ENV, sim.password)
    with pytest.raises(BackendError, match="unknown user name"):
        make(sim, username="nobody").power_state()
    assert sim.password not in str(wrong.value) and "not-the-password" not in str(wrong.value)
    assert sim.password not in caplog.text and "not-the-password" not in caplog.text


def test_a_dead_bmc_fails_within_the_timeout(password_env: str) -> None:
    port = free_ports("udp")  # nothing listens there
    backend = create_backend("ipmi", {"address": "127.0.0.1", "port": port, "username": "a",
                                      "password_env": ENV, "timeout": 1.5}, "n")
    started = time.monotonic()
    with pytest.raises(BackendError, match=f"{port}: power on .*: no answer within 1.5 s"):
        backend.power_on(BootDevice.PXE)  # two calls (bootdev, power): one deadline
    assert time.monotonic() - started < 1.5 + 0.5


def test_password_file_is_read_at_each_call(sim: IpmiSim, tmp_path: Path) -> None:
    secret = tmp_path / "bmc-password"
    secret.write_text("stale-password\n")
    backend = make(sim, password_env=None, password_file=str(secret))
    with pytest.raises(BackendError, match="wrong password"):
        backend.power_state()
    secret.write_text(sim.password + "\n")  # rotated: no restart needed
    assert backend.power_state() in (PowerState.ON, PowerState.OFF)
    secret.unlink()
    with pytest.raises(BackendError, match=f"cannot read password_file {secret}"):
        backend.power_state()


def test_the_password_is_never_on_the_command_line_or_in_the_repr(
        sim: IpmiSim, password_env: str) -> None:
    backend = make(sim)
    argv = backend.target.argv("power", "status")
    assert sim.password not in " ".join(argv) and "-E" in argv
    assert sim.password not in repr(backend) and sim.password not in repr(backend.target)
    assert backend.target.env()["IPMI_PASSWORD"] == sim.password  # ipmitool -E reads it


def test_no_serial_console_unless_asked(sim: IpmiSim, password_env: str) -> None:
    backend = make(sim)
    assert not backend.capabilities.serial_console
    assert backend.attach_console(lambda data: None) is False


@pytest.mark.parametrize(("settings", "message"), [
    ({}, "exactly one of password_env"),
    ({"password_env": ENV, "password_file": "/etc/hostname"}, "exactly one of password_env"),
    ({"password_env": "NO_SUCH_VARIABLE_FOR_BMC"}, "NO_SUCH_VARIABLE_FOR_BMC is not set"),
    ({"password_env": "bad name"}, "not an environment variable name"),
    ({"password_file": "/nonexistent/secret"}, "/nonexistent/secret is not a file"),
    ({"password_env": ENV, "port": 0}, "port: must be 1..65535"),
    ({"password_env": ENV, "interface": "serial"}, "interface: must be lanplus"),
    ({"password_env": ENV, "cipher_suite": 99}, "cipher_suite: must be 0..17"),
    ({"password_env": ENV, "timeout": 0}, "timeout: must be"),
    ({"password_env": ENV, "address": "-oProxyCommand"}, "address: must be"),
    ({"password_env": ENV, "username": "x" * 17}, "username: must be"),
])
def test_bad_settings_are_refused_clearly(monkeypatch: pytest.MonkeyPatch,
                                          settings: dict[str, object], message: str) -> None:
    monkeypatch.setenv(ENV, "x")
    with pytest.raises((ValueError, TypeError), match=message):
        create_backend("ipmi", {"address": "127.0.0.1", **settings}, "n")


def test_the_readme_worked_example_is_a_config_serve_accepts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bmc.config import load_config

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### `ipmi`: an IPMI BMC behind", 1)[1]
    path = tmp_path / "nodes.yaml"
    path.write_text(section.split("```yaml", 1)[1].split("```", 1)[0])
    monkeypatch.setenv("OLD_BMC_PASSWORD", "calvin")
    node = load_config(path).nodes[0]
    backend = create_backend(node.backend, dict(node.backend_settings), node.name)
    assert isinstance(backend, IpmiProxyBackend)
    assert (backend.target.address, backend.target.port) == ("127.0.0.1", 9623)
    assert backend.target.cipher_suite == 3 and backend.target.password.env == "OLD_BMC_PASSWORD"


def test_the_sol_escape_character_typed_by_a_user_reaches_the_server() -> None:
    # ipmitool (the link's, escape ^\\) treats it as a command only at a line's start, and
    # sends it once when doubled there
    assert escape_sol_input(b"\x1c.", True) == (b"\x1c\x1c.", False)
    assert escape_sol_input(b"ls\r\x1c.", False) == (b"ls\r\x1c\x1c.", False)
    assert escape_sol_input(b"a\x1cb", True) == (b"a\x1cb", False)  # mid-line: as it is
    assert escape_sol_input(b"ls\r", False) == (b"ls\r", True)
    assert escape_sol_input(b"", False) == (b"", False)
