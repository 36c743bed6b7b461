"""The `process` backend with real child processes on a real pty (the simulated firmware, sh)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from backends import create_backend
from backends.base import BootDevice, PowerState
from backends.process import ProcessBackend
from bmc.node import Node, NodeEvent, PowerAction
from tests.console_output import ConsoleOutput

FAST = {"BMC_SIM_SPEED": "0"}  # the simulated boot without its pauses
TIMEOUT = 15.0


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it is not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def backends() -> Iterator[list[ProcessBackend]]:
    """Backends a test made; all closed at the end, whatever happened."""
    made: list[ProcessBackend] = []
    yield made
    for backend in made:
        backend.close()


def make(backends: list[ProcessBackend], **settings: object
         ) -> tuple[ProcessBackend, ConsoleOutput]:
    backend = create_backend("process", {"env": FAST, **settings}, "node-7")
    assert isinstance(backend, ProcessBackend)
    backends.append(backend)
    console = ConsoleOutput(TIMEOUT)
    assert backend.attach_console(console)
    return backend, console


def test_power_on_boots_the_firmware_from_the_chosen_device(
        backends: list[ProcessBackend]) -> None:
    backend, console = make(backends)
    assert backend.power_state() is PowerState.OFF
    backend.boot_uefi = True
    backend.power_on(BootDevice.PXE)
    assert backend.power_state() is PowerState.ON
    end = console.wait_for(b"Boot mode: UEFI; boot override: Network (PXE)")
    end = console.wait_for(b"iPXE", end)
    console.wait_for(b"node-7 login: ", end)
    start = len(console.data)
    backend.reset(BootDevice.DISK)
    end = console.wait_for(b"Booting from Hard Disk", start)
    assert b"PXE" not in console.data[start:end]
    console.wait_for(b"login: ", end)


def test_typed_input_reaches_the_program_and_nmi_is_seen(backends: list[ProcessBackend]) -> None:
    backend, console = make(backends)
    backend.power_on(BootDevice.NONE)
    end = console.wait_for(b"login: ")
    backend.write_console(b"root\r")
    end = console.wait_for(b"root@node-7:~# ", end)
    backend.write_console(b"echo typed-through-the-pty\r")
    end = console.wait_for(b"typed-through-the-pty\r\n", end)
    backend.nmi()
    console.wait_for(b"NMI received for unknown reason", end)
    assert backend.power_state() is PowerState.ON


def test_power_state_follows_the_process_and_its_exit_is_an_event(
        backends: list[ProcessBackend]) -> None:
    backend, console = make(backends)
    node = Node("node-7", backend)  # its console hub takes the backend's output from now on
    node.console.attach(console)
    events: list[NodeEvent] = []
    node.subscribe(lambda _node, event: events.append(event))
    node.power(PowerAction.ON)
    console.wait_for(b"login: ")
    proc = backend._proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)  # the server dies under the BMC's feet
    wait_until(lambda: node.power_state is PowerState.OFF)
    wait_until(lambda: any(e.detail.get("action") == "ServerExited" for e in events))
    lost = next(e for e in events if e.detail.get("action") == "ServerExited")
    assert lost.kind == "power" and lost.detail["before"] == "On" and lost.detail["after"] == "Off"
    assert lost.detail["reason"] == "killed by SIGKILL"
    # a graceful shutdown ends the same way: the program exits by itself
    start = len(console.data)
    node.power(PowerAction.ON)
    end = console.wait_for(b"login: ", start)
    node.power(PowerAction.GRACEFUL_SHUTDOWN)
    console.wait_for(b"reboot: Power down", end)
    wait_until(lambda: node.power_state is PowerState.OFF)
    wait_until(lambda: sum(e.detail.get("action") == "ServerExited" for e in events) == 2)
    # a forced power off is the BMC's own doing: no "exited" event for it
    node.power(PowerAction.ON)
    node.power(PowerAction.FORCE_OFF)
    assert node.power_state is PowerState.OFF
    time.sleep(0.3)
    assert sum(e.detail.get("action") == "ServerExited" for e in events) == 2
    node.close()


def test_close_stops_the_program_and_everything_it_started(
        backends: list[ProcessBackend]) -> None:
    sh = shutil.which("sh")
    assert sh is not None
    backend, console = make(backends, command=[sh])
    backend.power_on(BootDevice.NONE)
    backend.write_console(b"sleep 300 & echo bg=$!\r")
    console.wait_for(b"bg=$!\r\n")  # the terminal's echo of the line
    console.wait_for(b"bg=", console.data.find(b"bg=$!\r\n") + 5)
    wait_until(lambda: re.search(rb"bg=(\d+)\r\n", console.data) is not None)
    found = re.search(rb"bg=(\d+)\r\n", console.data)
    assert found is not None
    background = int(found.group(1))
    proc = backend._proc
    assert proc is not None and alive(background)
    backend.close()
    assert not alive(proc.pid)
    wait_until(lambda: not alive(background))  # SIGKILL is delivered, not waited for
    assert backend.power_state() is PowerState.OFF


def test_a_program_that_ignores_the_graceful_signal_is_killed(
        backends: list[ProcessBackend]) -> None:
    sh = shutil.which("sh")
    assert sh is not None
    backend, console = make(backends, command=[sh, "-c", "trap '' TERM; echo up; sleep 300"],
                            stop_timeout=0.3)
    backend.power_on(BootDevice.NONE)
    console.wait_for(b"up")
    started = time.monotonic()
    backend.power_off()
    assert backend.power_state() is PowerState.OFF
    assert time.monotonic() - started < 5


def test_power_on_at_start_keeps_the_early_output(backends: list[ProcessBackend]) -> None:
    backend = ProcessBackend(env=FAST, power_on=True, node_name="early")
    backends.append(backend)
    wait_until(lambda: b"early login: " in backend._early)
    console = ConsoleOutput(TIMEOUT)
    backend.attach_console(console)
    console.wait_for(b"Memory Test")


@pytest.mark.parametrize(("settings", "message"), [
    ({"command": "sh"}, "command: must be a non-empty list of strings"),
    ({"command": ["/no/such/program"]}, "is not an executable program"),
    ({"nmi_signal": "SIGWHAT"}, "nmi_signal: unknown signal"),
    ({"stop_timeout": -1}, "stop_timeout: must be 0..300 seconds"),
    ({"env": {"A": 1}}, "env: must be a mapping of names to strings"),
    ({"colour": "red"}, "unexpected keyword argument 'colour'"),
])
def test_bad_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        create_backend("process", settings)
