"""Talking to a real BMC with `ipmitool`: one command per process, and a kept SOL session.

Why ipmitool and not pyghmi's client (measured against ipmi_sim on loopback, see the README):
pyghmi's `Command` answers `get_power` in ~4 ms, but 8% of calls stall 0.5-1 s (a lost
wake-up in its I/O thread) and a second `Command` to the same BMC in one process hangs (its
session cache), so a session that dies (the BMC rebooted, a timeout) cannot be replaced
without restarting the emulator. An ipmitool process per call costs ~45 ms (session setup
included) but holds no state to go stale, and a hung call is ended by killing it: every call
here has a hard deadline.

The password reaches ipmitool in its environment (`-E`, IPMI_PASSWORD), never on the command
line where `ps` would show it; nothing here logs the environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backends.base import BackendError
from backends.credentials import PasswordSource

log = logging.getLogger(__name__)

#: what ipmitool needs from our environment (and nothing else: not our own secrets)
_INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "HOME")
#: what ipmitool's stderr says, and what that means to someone reading our error
_DIAGNOSES = (
    ("RAKP 2 HMAC is invalid", "wrong password"),
    ("unauthorized name", "unknown user name"),
    ("invalid authentication algorithm", "the BMC does not offer this cipher suite"),
    ("invalid integrity algorithm", "the BMC does not offer this cipher suite"),
    ("insufficient resources for session", "the BMC has no free session"),
    ("Get Auth Capabilities error", "no answer from the BMC"),
    ("Authentication type NONE not supported", "the BMC refuses this interface"),
    ("Activate Session error", "the BMC refused the session (user name or password)"),
)
_SESSION_FAILED = ("Unable to establish IPMI v2 / RMCP+ session",
                   "Unable to establish LAN session", "Unable to establish IPMI v1.5")
#: the line ipmitool prints when a SOL session starts (not console output)
_SOL_BANNER = b"[SOL Session operational."
#: SOL: ipmitool's escape character; one typed by a user is doubled, so it reaches the server
SOL_ESCAPE = b"\x1c"


@dataclass(frozen=True)
class Target:
    """A BMC and how to reach it with ipmitool."""

    address: str
    port: int
    username: str
    password: PasswordSource
    interface: str = "lanplus"  # or "lan" (IPMI 1.5)
    cipher_suite: int = 3
    program: str = "ipmitool"

    def __str__(self) -> str:
        return f"BMC {self.address}:{self.port}"

    def argv(self, *command: str, retries: int = 1, verbose: bool = False) -> list[str]:
        argv = [self.program, "-I", self.interface, "-H", self.address, "-p", str(self.port),
                "-U", self.username, "-E", "-N", "1", "-R", str(retries)]
        if self.interface == "lanplus":
            # -C always: without it ipmitool asks for the cipher suites first, and a BMC that
            # does not know that command (ipmi_sim) costs 10 s of retries
            argv += ["-C", str(self.cipher_suite)]
        if verbose:
            argv.append("-v")
        return [*argv, *command]

    def env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
        env["IPMI_PASSWORD"] = self.password.read()
        return env


class Ipmitool:
    """Runs one ipmitool command at a time against `target`, each within a deadline."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def run(self, command: Sequence[str], deadline: float, what: str) -> str:
        """ipmitool's stdout for `command`; BackendError with a clear reason otherwise.

        `deadline` is a time.monotonic() value shared by the calls of one operation.
        """
        started = time.monotonic()
        result = self._run(command, deadline, what)
        if result.returncode == 0:
            return result.stdout
        stderr = result.stderr.strip()
        if any(marker in stderr for marker in _SESSION_FAILED):
            reason = _diagnose(stderr)
            # ipmitool says why only with -v; a refused session answers fast, so ask once
            if reason is None and deadline - time.monotonic() > 0.3:
                verbose = self._run(command, deadline, what, verbose=True)
                reason = _diagnose(verbose.stderr)
            if reason is None and time.monotonic() - started > 1.0:
                reason = "no answer from the BMC"
            raise BackendError(f"{self.target}: {what}: cannot open an IPMI session "
                               f"({reason or 'see the BMC log'})")
        detail = _last_line(stderr) or _last_line(result.stdout) or f"exit {result.returncode}"
        raise BackendError(f"{self.target}: {what} failed: {detail}")

    def _run(self, command: Sequence[str], deadline: float, what: str, verbose: bool = False
             ) -> subprocess.CompletedProcess[str]:
        remaining = deadline - time.monotonic()
        if remaining <= 0.05:
            raise BackendError(f"{self.target}: {what}: no time left (timeout)")
        # one retry per second of budget: a lost UDP packet is retried, a dead BMC is not
        # waited for beyond the deadline (the kill below ends ipmitool)
        argv = self.target.argv(*command, retries=max(1, int(remaining)), verbose=verbose)
        try:
            return subprocess.run(argv, capture_output=True, text=True, errors="replace",
                                  timeout=remaining, env=self.target.env(),
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BackendError(f"{self.target}: {what}: no answer within {remaining:.1f} s"
                               ) from None
        except OSError as exc:
            raise BackendError(f"cannot run {self.target.program}: {exc.strerror}") from None


def _diagnose(stderr: str) -> str | None:
    return next((meaning for marker, meaning in _DIAGNOSES if marker in stderr), None)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


class SolLink:
    """The BMC's serial console kept open: `ipmitool sol activate` on a pseudo-terminal.

    ipmitool gets a pty (it wants a terminal: raw mode, no echo), its output goes to `sink`
    and typed bytes are written to it. When the session ends (the BMC closed it, reset, or
    was unreachable) it is started again after a pause that grows to `max_backoff` seconds;
    a stale SOL session of ours on the BMC is deactivated first.
    """

    def __init__(self, target: Target, sink: Callable[[bytes], None], name: str = "",
                 max_backoff: float = 30.0) -> None:
        self.target = target
        self.sink = sink
        self.name = name or str(target)
        self.max_backoff = max_backoff
        self._lock = threading.Lock()
        self._master = -1
        self._line_start = True
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"sol-proxy-{self.name}")
        #: sessions started so far (tests, logs)
        self.sessions = 0

    def start(self) -> None:
        self._thread.start()

    def write(self, data: bytes) -> None:
        """Type `data` on the console; dropped while no session is up. Never blocks."""
        with self._lock:
            if self._master < 0:
                return
            data, self._line_start = escape_sol_input(data, self._line_start)
            with contextlib.suppress(OSError):  # full (the BMC is slow) or just closed
                os.write(self._master, data)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            proc, master = self._proc, self._master
            if master >= 0:  # ipmitool's own exit: it ends the SOL payload and the session
                with contextlib.suppress(OSError):
                    os.write(master, b"\r" + SOL_ESCAPE + b".")
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(1)
            _end(proc)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._session()
            except BackendError as exc:  # the password cannot be read, ipmitool is missing
                log.warning("%s: serial console: %s", self.name, exc)
            except Exception:
                log.exception("%s: serial console session failed", self.name)
            if time.monotonic() - started > 10:
                backoff = 1.0  # it was up for a while: this is a new failure
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, self.max_backoff)

    def _session(self) -> None:
        env = self.target.env()
        # a session of ours left from before (we were killed) would block activation
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run(self.target.argv("sol", "deactivate"), env=env, timeout=3,
                           capture_output=True, stdin=subprocess.DEVNULL)
        master, slave = os.openpty()
        try:
            argv = self.target.argv("-e", SOL_ESCAPE.decode(), "sol", "activate", retries=3)
            proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                    start_new_session=True)
        except OSError as exc:
            os.close(master)
            raise BackendError(f"cannot run {self.target.program}: {exc.strerror}") from None
        finally:
            os.close(slave)
        with self._lock:
            self._master, self._proc = master, proc
            self._line_start = True  # as ipmitool starts: an escape is recognised at once
        self.sessions += 1
        log.info("%s: serial console: SOL session to %s started", self.name, self.target)
        try:
            self._pump(master, proc)
        finally:
            with self._lock:
                self._master, self._proc = -1, None
            _end(proc)
            os.close(master)
        log.info("%s: serial console: SOL session to %s ended", self.name, self.target)

    def _pump(self, master: int, proc: subprocess.Popen[bytes]) -> None:
        pending = b""  # output held until we know it is not ipmitool's banner
        banner_done = False
        while not self._stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    return
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: ipmitool exited and closed the pty
                return
            if not data:
                return
            if not banner_done:
                pending += data
                if b"\n" not in pending and len(pending) < 256:
                    continue
                banner_done = True
                data, pending = _strip_banner(pending), b""
            if data:
                self.sink(data)


def escape_sol_input(data: bytes, line_start: bool) -> tuple[bytes, bool]:
    """`data` as typed to ipmitool so that it reaches the server unchanged.

    ipmitool takes its escape character as a command only at the start of a line (after CR
    or LF, or first of all), and sends it once when it is typed twice there; elsewhere it
    sends it as it is. Returns the bytes and whether the next byte starts a line.
    """
    if SOL_ESCAPE not in data:
        return data, data[-1:] in (b"\r", b"\n") if data else line_start
    out = bytearray()
    for byte in data:
        if byte == SOL_ESCAPE[0] and line_start:
            out.append(byte)
        out.append(byte)
        line_start = byte in b"\r\n"
    return bytes(out), line_start


def _strip_banner(data: bytes) -> bytes:
    if data.startswith(_SOL_BANNER):
        return data.split(b"\n", 1)[1] if b"\n" in data else b""
    return data


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Stop an ipmitool we started (its own session: its process group)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(2)
