"""The `ssh` backend's commands: over a real sshd on loopback, and with `host: local`.

The commands drive tests/fake_server.py, a server whose power state is a file."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import create_backend
from backends.base import BackendError, BootDevice, PowerOp, PowerState
from backends.ssh import SshBackend, fill
from tests.fake_server import __file__ as FAKE_SERVER
from tests.sshd_env import Sshd, skip_unless_root


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    skip_unless_root()
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(params=["ssh", "local"])
def where(request: pytest.FixtureRequest, sshd: Sshd) -> dict[str, object]:
    """Connection settings: over SSH to the test sshd, or `host: local`."""
    if request.param == "local":
        return {"host": "local"}
    return sshd.backend_settings()


def commands(state: Path) -> dict[str, str]:
    fake = f"{shlex.quote(sys.executable)} {shlex.quote(FAKE_SERVER)} {shlex.quote(str(state))}"
    return {"power_on": f"{fake} on", "power_off": f"{fake} off",
            "power_status": f"{fake} status", "soft_off": f"{fake} soft",
            "nmi": f"{fake} nmi", "set_boot_device": f"{fake} boot {{device}} {{mode}}",
            "insert_media": f"{fake} media {{url}}"}


def make(where: dict[str, object], state: Path, **settings: object) -> SshBackend:
    backend = create_backend("ssh", {**where, **commands(state), "status_cache": 0, **settings},
                             "s1")
    assert isinstance(backend, SshBackend)
    return backend


def running(text: str) -> list[str]:
    """Command lines of the processes that mention `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in line:
            found.append(line)
    return found


def actions(state: Path) -> list[str]:
    path = state / "actions"
    return path.read_text().splitlines() if path.exists() else []


def test_power_and_boot_device(where: dict[str, object], tmp_path: Path) -> None:
    backend = make(where, tmp_path)
    try:
        assert backend.power_state() is PowerState.OFF
        backend.boot_uefi = True
        backend.power_on(BootDevice.PXE)
        assert backend.power_state() is PowerState.ON
        assert (tmp_path / "boot").read_text() == "Pxe uefi"
        assert "booting from Pxe (uefi)" in (tmp_path / "console").read_text()
        backend.soft_off()
        assert backend.power_state() is PowerState.OFF
        backend.power_on(BootDevice.NONE)
        backend.nmi()
        backend.power_off()
        assert actions(tmp_path) == [
            "status", "boot Pxe uefi", "on", "status", "soft", "status", "boot None uefi",
            "on", "nmi", "off"]
    finally:
        backend.close()


def test_reset_without_a_command_is_off_then_on(where: dict[str, object], tmp_path: Path
                                                ) -> None:
    backend = make(where, tmp_path, set_boot_device=None, soft_off=None, nmi=None)
    try:
        assert PowerOp.SOFT_OFF not in backend.capabilities.power
        assert PowerOp.NMI not in backend.capabilities.power
        assert backend.capabilities.boot_devices == frozenset()
        backend.power_on(BootDevice.NONE)
        backend.reset(BootDevice.NONE)
        assert actions(tmp_path) == ["on", "off", "on"]
        assert backend.power_state() is PowerState.ON
    finally:
        backend.close()


def test_boot_device_names_map_to_the_commands_words(where: dict[str, object],
                                                     tmp_path: Path) -> None:
    backend = make(where, tmp_path, boot_devices={"Pxe": "network", "Hdd": "hd"})
    try:
        assert backend.capabilities.boot_devices == {BootDevice.PXE, BootDevice.DISK}
        backend.power_on(BootDevice.PXE)
        backend.reset(BootDevice.DISK)  # no reset command: off, then on
        backend.power_cycle(BootDevice.NONE)  # not mapped: the server's own order is kept
        assert [a for a in actions(tmp_path) if a.startswith("boot")] == [
            "boot network legacy", "boot hd legacy"]
    finally:
        backend.close()


def test_media_urls_are_shell_quoted(where: dict[str, object], tmp_path: Path) -> None:
    backend = make(where, tmp_path)
    hostile = "http://x/a b.iso?$(touch pwned)&c='d';e"
    try:
        backend.media_changed("Cd", hostile)
        assert (tmp_path / "media").read_text() == hostile
        assert not Path("pwned").exists() and not (Path.home() / "pwned").exists()
    finally:
        backend.close()


def test_a_failing_command_says_what_it_printed(where: dict[str, object], tmp_path: Path
                                                ) -> None:
    backend = make(where, tmp_path)
    try:
        (tmp_path / "fail-on").write_text("exit")
        with pytest.raises(BackendError, match=r"power_on command failed \(exit 3\): "
                                               "fake-server: on is broken"):
            backend.power_on(BootDevice.NONE)
    finally:
        backend.close()


def test_a_hung_command_times_out(where: dict[str, object], tmp_path: Path) -> None:
    backend = make(where, tmp_path, command_timeout=1.0)
    try:
        (tmp_path / "fail-status").write_text("hang")
        start = time.monotonic()
        with pytest.raises(BackendError, match="did not finish within 1 s"):
            backend.power_state()
        assert time.monotonic() - start < 2.5
        (tmp_path / "fail-status").unlink()
        assert backend.power_state() is PowerState.OFF  # the next command works
        # and the hung one does not linger (on the host: killed by `timeout` 1 s later)
        deadline = time.monotonic() + 5
        while running(str(tmp_path)):
            assert time.monotonic() < deadline, running(str(tmp_path))
            time.sleep(0.1)
    finally:
        backend.close()


def test_unreadable_status_output_is_an_error(where: dict[str, object], tmp_path: Path
                                              ) -> None:
    backend = make(where, tmp_path, power_status="echo maybe")
    try:
        with pytest.raises(BackendError, match="printed 'maybe': neither"):
            backend.power_state()
    finally:
        backend.close()


def test_status_patterns_are_settings(where: dict[str, object], tmp_path: Path) -> None:
    backend = make(where, tmp_path, power_status="echo 'state: 1'",
                   status_on=r"state: 1", status_off=r"state: 0")
    try:
        assert backend.power_state() is PowerState.ON
    finally:
        backend.close()


def test_status_is_cached(where: dict[str, object], tmp_path: Path) -> None:
    backend = make(where, tmp_path, status_cache=5)
    try:
        for _ in range(50):
            assert backend.power_state() is PowerState.OFF
        backend.power_on(BootDevice.NONE)  # an action makes the next read ask again
        assert backend.power_state() is PowerState.ON
        assert actions(tmp_path) == ["status", "boot None legacy", "on", "status"]
    finally:
        backend.close()


# -- SSH only ---------------------------------------------------------------------------------
def test_one_connection_per_host(sshd: Sshd, tmp_path: Path) -> None:
    settings = sshd.backend_settings()
    before = sshd.log().count("Accepted publickey")
    first = make(settings, tmp_path / "a")
    second = make(settings, tmp_path / "b")
    try:
        for backend in (first, second, first, second):
            backend.power_on(BootDevice.NONE)
            backend.power_state()
        assert sshd.log().count("Accepted publickey") - before == 1
    finally:
        first.close()
        second.close()


def test_a_host_that_refuses_is_reported_quickly(tmp_path: Path) -> None:
    from bench.util import free_ports

    backend = make({"host": "127.0.0.1", "port": free_ports("tcp", 1)}, tmp_path)
    start = time.monotonic()
    with pytest.raises(BackendError, match="cannot connect"):
        backend.power_state()
    assert time.monotonic() - start < 2
    backend.close()


def test_an_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIHbzcnR1HM2LbJsL3Y1Ga4cV1rQ6D7dG9ZX5p3Tw4P8v\n")
    backend = make({"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
                    "key": str(sshd.client_key), "known_hosts": str(known)}, tmp_path)
    with pytest.raises(BackendError, match="host key"):
        backend.power_state()
    backend.close()


def test_a_dropped_connection_is_opened_again(sshd: Sshd, tmp_path: Path) -> None:
    settings = sshd.backend_settings()
    backend = make(settings, tmp_path)
    try:
        assert backend.power_state() is PowerState.OFF
        accepted = sshd.log().count("Accepted publickey")
        assert sshd.kill_sessions() >= 1
        time.sleep(0.2)  # the connection's end is noticed: the next command reconnects
        backend.power_on(BootDevice.NONE)
        assert backend.power_state() is PowerState.ON
        assert sshd.log().count("Accepted publickey") == accepted + 1
    finally:
        backend.close()


# -- settings ---------------------------------------------------------------------------------
def test_settings_are_checked(tmp_path: Path) -> None:
    base = commands(tmp_path)
    with pytest.raises(ValueError, match="status_on: not a regular expression"):
        SshBackend(host="local", **base, status_on="(")
    with pytest.raises(ValueError, match="unknown boot device 'Network'"):
        SshBackend(host="local", **base, boot_devices={"Network": "net"})
    with pytest.raises(ValueError, match="key: .* is not a file"):
        SshBackend(host="h", **base, key=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="command_timeout"):
        SshBackend(host="local", **base, command_timeout=0)
    with pytest.raises(ValueError, match="power_off: must be a shell command"):
        SshBackend(host="local", **{**base, "power_off": " "})
    with pytest.raises(TypeError, match="user: must be str or null, not 3"):
        SshBackend(host="h", **base, user=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="check_host_key: must be bool"):
        SshBackend(host="h", **base, check_host_key="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # the commands every server needs
        SshBackend(host="local")  # type: ignore[call-arg]


def test_fill_quotes_every_value() -> None:
    assert fill("virsh x {device} {url} {unknown}", device="hd", url="a b") == \
        "virsh x hd 'a b' {unknown}"


def test_command_text_is_never_shown(where: dict[str, object], tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """A command line may hold a password: errors (which reach Redfish) and logs name the
    action, not the text."""
    import logging

    caplog.set_level(logging.DEBUG)
    backend = make(where, tmp_path, command_timeout=1.0,
                   power_status="sleep 5; echo on # --password hunter2",
                   power_on="false --password hunter2")
    try:
        with pytest.raises(BackendError) as hung:
            backend.power_state()
        with pytest.raises(BackendError) as failed:
            backend.power_on(BootDevice.NONE)
        assert "power_status command did not finish" in str(hung.value)
        assert "power_on command failed (exit 1)" in str(failed.value)
        assert "hunter2" not in str(hung.value) + str(failed.value) + caplog.text
    finally:
        backend.close()


def test_local_commands_do_not_see_the_emulators_settings(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("BMC_EMULATOR_PASSWORD", "s3cret-pw")
    backend = make({"host": "local"}, tmp_path,
                   power_status="env | grep -c BMC_EMULATOR_ || echo off")
    assert backend.power_state() is PowerState.OFF  # grep found nothing: "0", then "off"
