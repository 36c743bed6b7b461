"""The `ssh` backend's serial console: `console_command` on a pty, over SSH or local."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.base import BootDevice
from backends.ssh import SshBackend
from tests.console_output import ConsoleOutput
from tests.fake_server import __file__ as FAKE_SERVER
from tests.sshd_env import Sshd, skip_unless_root

FAKE = f"{shlex.quote(sys.executable)} {shlex.quote(FAKE_SERVER)}"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    skip_unless_root()
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(params=["ssh", "local"])
def where(request: pytest.FixtureRequest, sshd: Sshd) -> dict[str, object]:
    if request.param == "local":
        return {"host": "local"}
    return sshd.backend_settings()


def make(where: dict[str, object], state: Path, console: str) -> SshBackend:
    fake = f"{FAKE} {shlex.quote(str(state))}"
    return SshBackend(**where, power_on=f"{fake} on", power_off=f"{fake} off",  # type: ignore
                      power_status=f"{fake} status", console_command=console, node_name="s1")


def test_the_console_commands_pty_is_the_serial_console(where: dict[str, object],
                                                         tmp_path: Path) -> None:
    serial = tmp_path / "console"
    serial.write_text("")
    backend = make(where, tmp_path,
                   f"{FAKE} console {shlex.quote(str(serial))} 'serial of '{{node}}")
    assert backend.capabilities.serial_console
    out = ConsoleOutput(10)
    try:
        assert backend.attach_console(out) is True
        out.wait_for(b"serial of s1")
        backend.power_on(BootDevice.NONE)
        out.wait_for(b"fake-server: booting from None")
        backend.write_console(b"typed\r")
        out.wait_for(b"echo: typed")
        out.wait_for(b"typed\r\n")  # the pty's own echo, as on a terminal
    finally:
        backend.close()


def test_a_console_command_that_ends_is_started_again(where: dict[str, object],
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("backends.sshconsole.RETRY_MIN", 0.1)
    backend = make(where, tmp_path, "echo console-up; tty; sleep 0.2")
    out = ConsoleOutput(10)
    try:
        backend.attach_console(out)
        out.wait_for(b"console-up", times=3)
        out.wait_for(b"/dev/pts/", times=3)  # each run on a pty
    finally:
        backend.close()


def test_close_ends_the_local_console_process(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    backend = make({"host": "local"}, tmp_path, f"echo $$ > {marker}; exec sleep 600")
    out = ConsoleOutput(10)
    backend.attach_console(out)
    deadline = time.monotonic() + 10
    while not marker.exists() or not marker.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid = int(marker.read_text())
    os.kill(pid, 0)  # running
    backend.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_no_console_command_no_console(tmp_path: Path) -> None:
    backend = SshBackend(host="local", power_on="true", power_off="true", power_status="echo on")
    assert not backend.capabilities.serial_console
    assert backend.attach_console(ConsoleOutput(10)) is False
