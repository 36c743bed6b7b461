"""Session robustness against the real emulator: limits, idle timeout, Close Session.

Sessions are held open either by raw RMCP+ Open Session requests over a UDP socket (to read the
exact status codes) or by long-lived `ipmitool shell` processes (real, fully set-up sessions).
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from conftest import Emulator, EmulatorNode, Launcher
from e2e_helpers import run

RMCP_NO_RESOURCES = 0x01


def open_session_request(console_id: int) -> bytes:
    """An RMCP+ Open Session Request for cipher suite 17 (SHA-256, AES)."""
    payload = struct.pack("<BBxxI", 0, 4, console_id) + bytes(
        (0, 0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0))
    header = struct.pack("<BBIIH", 0x06, 0x10, 0, 0, len(payload))
    return bytes((0x06, 0x00, 0xFF, 0x07)) + header + payload


def open_session_status(node: EmulatorNode, console_id: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(open_session_request(console_id), (node.ipmi_address, node.ipmi_port))
        reply = sock.recv(1024)
    assert reply[5] & 0x3F == 0x11, reply.hex()  # Open Session Response
    assert struct.unpack_from("<I", reply, 20)[0] == console_id
    return reply[17]  # status: after RMCP (4), session header (12) and the message tag


@contextmanager
def shells(bmc: Emulator, count: int) -> Iterator[list[subprocess.Popen[str]]]:
    """`count` ipmitool shells, each with an established session (a command answered)."""
    started: list[subprocess.Popen[str]] = []
    try:
        for _ in range(count):
            shell = subprocess.Popen([*bmc.ipmitool(), "shell"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            started.append(shell)
            ask(shell, "power status")
        yield started
    finally:
        for shell in started:
            if shell.poll() is None:
                shell.kill()
            shell.wait(10)


def ask(shell: subprocess.Popen[str], command: str) -> str:
    """Run `command` in an ipmitool shell and return its answer line."""
    assert shell.stdin is not None and shell.stdout is not None
    shell.stdin.write(command + "\n")
    shell.stdin.flush()
    while True:
        line = shell.stdout.readline()
        assert line, "ipmitool shell exited"
        if "Chassis Power is" in line or "Unable" in line or "Error" in line:
            return line


def leave(shell: subprocess.Popen[str]) -> None:
    """Quit the shell the normal way: ipmitool sends Close Session."""
    assert shell.stdin is not None
    shell.stdin.write("exit\n")
    shell.stdin.close()
    assert shell.wait(15) == 0


def test_open_sessions_that_never_authenticate_take_no_slot(
        emulator_factory: Launcher) -> None:
    """Half-open sessions prove nothing: they must not fill the 4 slots (the limit itself,
    with authenticated sessions, is the next test's)."""
    bmc = emulator_factory(nodes=1)
    node = bmc.nodes[0]
    statuses = [open_session_status(node, console_id) for console_id in range(1, 7)]
    assert statuses == [0] * 6
    assert run([*bmc.ipmitool(), "power", "status"]).returncode == 0


def test_session_limit_with_real_sessions_and_close_session_frees_a_slot(
        emulator_factory: Launcher) -> None:
    bmc = emulator_factory(nodes=1)
    with shells(bmc, 4) as held:
        fifth = run([*bmc.ipmitool(), "power", "status"])
        assert fifth.returncode != 0
        assert "insufficient resources for session" in fifth.stderr
        v15 = run([*bmc.ipmitool(interface="lan"), "power", "status"])
        assert v15.returncode != 0 and "No session slot available" in v15.stderr
        leave(held.pop())
        assert run([*bmc.ipmitool(), "power", "status"]).returncode == 0
        assert ask(held[0], "power status").startswith("Chassis Power is")


def test_configured_limit_and_idle_timeout_free_the_slot_of_a_silent_client(
        emulator_factory: Launcher) -> None:
    idle = 4.0
    bmc = emulator_factory([{"name": "n0", "ipmi": {"session_limit": 1, "idle_timeout": idle}}])
    with shells(bmc, 1) as (silent,):
        ask(silent, "power status")  # fresh activity: the slot is surely taken now
        assert run([*bmc.ipmitool(), "power", "status"]).returncode != 0
        # the shell stays alive but says nothing: its session expires and frees the slot
        deadline = time.monotonic() + idle + 20
        while run([*bmc.ipmitool(), "power", "status"]).returncode != 0:
            assert time.monotonic() < deadline, "the idle session was never dropped"
            time.sleep(0.5)
        assert "Chassis Power is" not in ask(silent, "power status")  # its session is gone


def test_session_settings_out_of_range_are_refused(emulator_factory: Launcher) -> None:
    path = emulator_factory.write_config(
        "nodes:\n  - name: n0\n    ipmi: {session_limit: 0, idle_timeout: -1}\n")
    result = emulator_factory.run_to_exit(["--config", str(path)])
    assert result.returncode == 2
    assert "ipmi.session_limit: 0 is out of range 1..63" in result.stderr
    assert "ipmi.idle_timeout" in result.stderr
