"""The simulated server's console as a real one behaves: a cut power says nothing (only the
soft path announces itself), and the login prompt wants a user name."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from test_process_backend import FAST, TIMEOUT, wait_until

from backends import create_backend
from backends.base import BootDevice, PowerState
from backends.process import ProcessBackend
from tests.console_output import ConsoleOutput


@pytest.fixture
def booted() -> Iterator[tuple[ProcessBackend, ConsoleOutput]]:
    backend = create_backend("process", {"env": FAST}, "node-9")
    assert isinstance(backend, ProcessBackend)
    console = ConsoleOutput(TIMEOUT)
    assert backend.attach_console(console)
    backend.power_on(BootDevice.NONE)
    console.wait_for(b"node-9 login: ")
    yield backend, console
    backend.close()


def settled(console: ConsoleOutput, quiet: float = 0.3) -> bytes:
    """The console's output once nothing more arrives for `quiet` seconds (at most 5 s)."""
    deadline = time.monotonic() + 5
    size = -1
    while len(console.data) != size and time.monotonic() < deadline:
        size = len(console.data)
        time.sleep(quiet)
    return bytes(console.data)


def test_a_hard_power_off_prints_nothing(booted: tuple[ProcessBackend, ConsoleOutput]) -> None:
    backend, console = booted
    start = len(settled(console))
    backend.power_off()
    assert backend.power_state() is PowerState.OFF
    assert settled(console)[start:] == b""


def test_a_hard_power_off_while_in_post_prints_nothing() -> None:
    backend = create_backend("process", {"env": {"BMC_SIM_SPEED": "20"}}, "slow")
    assert isinstance(backend, ProcessBackend)
    console = ConsoleOutput(TIMEOUT)
    backend.attach_console(console)
    try:
        backend.power_on(BootDevice.NONE)
        console.wait_for(b"Copyright")  # in POST: the firmware's own button handler is armed
        start = len(console.data)
        backend.power_off()
        assert b"Power button" not in settled(console)[start:]
    finally:
        backend.close()


def test_the_soft_path_announces_itself(booted: tuple[ProcessBackend, ConsoleOutput]) -> None:
    backend, console = booted
    start = len(settled(console))
    backend.soft_off()
    wait_until(lambda: backend.power_state() is PowerState.OFF)
    shown = settled(console)[start:]
    assert b"ACPI: Power Button [PWRF] pressed, powering off" in shown
    assert b"reboot: Power down" in shown


def test_output_comes_back_at_the_next_power_on(booted: tuple[ProcessBackend, ConsoleOutput]
                                                ) -> None:
    backend, console = booted
    backend.power_off()
    start = len(console.data)
    backend.power_on(BootDevice.NONE)
    console.wait_for(b"node-9 login: ", start)


def test_login_wants_a_user_name(booted: tuple[ProcessBackend, ConsoleOutput]) -> None:
    backend, console = booted
    end = len(console.data)
    backend.write_console(b"\r")  # an empty Enter asks again, as a getty does
    end = console.wait_for(b"node-9 login: ", end)
    assert b"Linux node-9" not in console.data[end - 40:end]
    backend.write_console(b"operator\r")
    end = console.wait_for(b"operator@node-9:~$ ", end)
    backend.write_console(b"exit\r")
    end = console.wait_for(b"logout", end)
    backend.write_console(b"root\r")
    end = console.wait_for(b"root@node-9:~# ", end)
    backend.write_console(b"root\r")  # now it is a command: not found
    console.wait_for(b"-bash: root: command not found", end)
