"""The `redfish` backend against a real Redfish BMC: sushy-tools' sushy-emulator (fake driver)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import BackendError, create_backend
from backends.base import BootDevice, PowerState
from backends.redfish_proxy import RedfishProxyBackend
from bench.util import free_ports
from tests.sushy_env import PASSWORD, SYSTEM_ID, USERNAME, SushyEmulator

ENV = "BMC_TEST_REDFISH_PROXY_PASSWORD"


@pytest.fixture(scope="module")
def bmc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SushyEmulator]:
    with SushyEmulator(tmp_path_factory.mktemp("sushy")) as bmc:
        yield bmc


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RedfishProxyBackend]]:
    monkeypatch.setenv(ENV, PASSWORD)
    backends: list[RedfishProxyBackend] = []
    yield backends
    for backend in backends:
        backend.close()


def make(made: list[RedfishProxyBackend], url: str, **settings: object) -> RedfishProxyBackend:
    backend = create_backend("redfish", {"url": url, "username": USERNAME,
                                         "password_env": ENV, **settings}, "front-1")
    assert isinstance(backend, RedfishProxyBackend)
    made.append(backend)
    return backend


def test_power_and_a_one_time_boot_device_reach_the_bmc(
        bmc: SushyEmulator, made: list[RedfishProxyBackend]) -> None:
    backend = make(made, bmc.url)
    backend.power_off()
    bmc.wait_power("Off")  # the fake driver applies power changes 1-11 s late
    assert backend.power_state() is PowerState.OFF
    backend.power_on(BootDevice.PXE)
    boot = bmc.system()["Boot"]
    assert isinstance(boot, dict) and boot["BootSourceOverrideTarget"] == "Pxe"
    bmc.wait_power("On")
    assert backend.power_state() is PowerState.ON
    assert backend.last_boot_device is BootDevice.PXE
    # no PowerCycle at this BMC: a restart stands in for it (the fake: off now, on later)
    backend.power_cycle(BootDevice.CDROM)
    boot = bmc.system()["Boot"]
    assert isinstance(boot, dict) and boot["BootSourceOverrideTarget"] == "Cd"
    bmc.wait_power("On")


def test_the_system_can_be_named(bmc: SushyEmulator, made: list[RedfishProxyBackend]) -> None:
    for system in (SYSTEM_ID, f"/redfish/v1/Systems/{SYSTEM_ID}"):
        assert make(made, bmc.url, system=system).power_state() in (PowerState.ON,
                                                                     PowerState.OFF)
    with pytest.raises(BackendError, match="HTTP 404"):
        make(made, bmc.url, system="no-such-system").power_state()


def test_a_boot_target_the_bmc_lacks_is_a_clear_error(
        bmc: SushyEmulator, made: list[RedfishProxyBackend]) -> None:
    backend = make(made, bmc.url)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"cannot boot the system from BiosSetup "
                                           r"\(it offers Cd, Hdd, Pxe"):
        backend.power_on(BootDevice.BIOS)
    assert time.monotonic() - started < 2.0


def test_wrong_password_is_access_denied_and_a_fixed_one_works_without_restart(
        bmc: SushyEmulator, made: list[RedfishProxyBackend], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(ENV, "not-the-password")
    backend = make(made, bmc.url)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"access denied \(HTTP 401") as denied:
        backend.power_state()
    assert time.monotonic() - started < 2.0
    monkeypatch.setenv(ENV, PASSWORD)
    assert backend.power_state() in (PowerState.ON, PowerState.OFF)
    for secret in (PASSWORD, "not-the-password"):
        assert secret not in str(denied.value) and secret not in caplog.text
        assert secret not in repr(backend)


def test_a_refused_connection_fails_fast(made: list[RedfishProxyBackend]) -> None:
    port = free_ports("tcp")  # nobody listens
    backend = make(made, f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(BackendError, match="cannot connect: Connection refused"):
        backend.power_on(BootDevice.NONE)
    assert time.monotonic() - started < 1.0


def test_a_bmc_that_never_answers_fails_at_the_deadline(made: list[RedfishProxyBackend]) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        backend = make(made, url, timeout=1.0)
        for _ in range(2):  # the second call waits behind the first: still bounded
            started = time.monotonic()
            with pytest.raises(BackendError, match=f"{url}: power state: no answer within 1 s"):
                backend.power_state()
            assert time.monotonic() - started < 1.7  # the deadline, plus a loaded machine


def test_closed_backend_refuses(bmc: SushyEmulator, made: list[RedfishProxyBackend]) -> None:
    backend = make(made, bmc.url)
    assert backend.power_state() in (PowerState.ON, PowerState.OFF)
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.power_state()


@pytest.mark.parametrize(("settings", "message"), [
    ({"url": "127.0.0.1:8000"}, "url: must be the BMC's http:// or https:// base URL"),
    ({"url": "http://admin:pw@127.0.0.1"}, "url: must not contain credentials"),
    ({"url": "http://127.0.0.1/redfish/v1"}, "url: the base URL only"),
    ({"password_env": None}, "exactly one of password_env"),
    ({"password_env": None, "password_file": "/nonexistent/x"}, "is not a file"),
    ({"auth": "digest"}, "auth: must be auto, session or basic"),
    ({"timeout": 100}, "timeout: must be 0.2..60 seconds"),
    ({"poll_interval": 0}, "poll_interval: must be 1..3600 seconds"),
    ({"system": "/"}, "system: must be"),
    ({"verify_tls": "yes"}, "verify_tls: must be true or false"),
])
def test_bad_settings_are_refused_clearly(monkeypatch: pytest.MonkeyPatch,
                                          settings: dict[str, object], message: str) -> None:
    monkeypatch.setenv(ENV, "x")
    with pytest.raises((ValueError, TypeError), match=message):
        create_backend("redfish", {"url": "http://127.0.0.1:8000", "password_env": ENV,
                                   **settings}, "n")


def test_password_file(bmc: SushyEmulator, made: list[RedfishProxyBackend],
                       tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    backend = make(made, bmc.url, password_env=None, password_file=str(secret))
    assert backend.power_state() in (PowerState.ON, PowerState.OFF)
    assert not backend.capabilities.serial_console


def test_capabilities_become_what_the_bmc_offers(bmc: SushyEmulator,
                                                 made: list[RedfishProxyBackend]) -> None:
    from backends.base import ALL_BOOT_DEVICES, ALL_POWER_OPS, PowerOp

    backend = make(made, bmc.url)
    assert backend.capabilities.boot_devices == ALL_BOOT_DEVICES  # not connected yet
    backend.power_state()
    # sushy-emulator's fake system: no BiosSetup or Floppy; no PowerCycle, but ForceRestart
    assert backend.capabilities.boot_devices == {BootDevice.PXE, BootDevice.DISK,
                                                 BootDevice.CDROM}
    assert backend.capabilities.power == ALL_POWER_OPS
    assert PowerOp.CYCLE in backend.capabilities.power and not backend.capabilities.virtual_media
