"""The `process` backend: a server is a local child process on a pseudo-terminal (its serial port).

Power on starts the program, off stops it (the graceful signal, then SIGKILL after a grace
period), soft-off only sends the graceful signal, reset and power cycle restart it, NMI sends a
signal the program can catch. The power state is the process's real state: when the program
exits by itself the server is Off and `report_power` says so (the SEL records it).

The default program is `backends/simfirmware.py` (POST, boot loader, kernel, login prompt), told
about the boot override in BMC_BOOT_DEVICE / BMC_BOOT_MODE; any command can be configured
instead. One pty per node lives as long as the backend, like a real serial port: the program of
each boot gets it as stdin/stdout/stderr and controlling terminal (see ptyexec.py), and one
thread per node reads it (the console) and watches the child (a pidfd) for its exit.

Children never outlive the emulator: close() stops them, and if the emulator dies without
closing, the pty's master side goes away and the kernel hangs up their session (SIGHUP).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends.base import Backend, BackendError, BootDevice, Capabilities, PowerState

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SIMFIRMWARE = str(HERE / "simfirmware.py")
PTYEXEC = str(HERE / "ptyexec.py")
#: console output read before anything is attached is kept up to this many bytes
EARLY_OUTPUT_LIMIT = 64 * 1024
#: the variables a child inherits from the emulator (never e.g. BMC_EMULATOR_PASSWORD)
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME")
WINDOW_SIZE = (24, 80)  # rows, columns: what a serial console client usually is


def _signal(name: Any, setting: str) -> signal.Signals:
    if not isinstance(name, str):
        raise TypeError(f"{setting}: must be a signal name such as SIGTERM, got {name!r}")
    key = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    try:
        return signal.Signals[key]
    except KeyError:
        raise ValueError(f"{setting}: unknown signal {name!r}") from None


def _command(command: Any) -> list[str]:
    if command is None:
        return [sys.executable, "-I", "-S", SIMFIRMWARE]
    if (not isinstance(command, list) or not command
            or not all(isinstance(part, str) and part for part in command)):
        raise TypeError("command: must be a non-empty list of strings, e.g. [/bin/sh]")
    if shutil.which(command[0]) is None:
        raise ValueError(f"command: {command[0]!r} is not an executable program")
    return list(command)


class ProcessBackend(Backend):
    kind = "process"
    capabilities = Capabilities(serial_console=True, power_events=True)
    descriptors = 5  # the pty's two ends, the child's pidfd, its output pipe's two ends

    def __init__(self, command: list[str] | None = None, *, power_on: bool = False,
                 soft_off_signal: str = "SIGTERM", nmi_signal: str = "SIGUSR1",
                 stop_timeout: float = 3.0, env: dict[str, str] | None = None,
                 cwd: str | None = None, node_name: str = "") -> None:
        self.command = _command(command)
        self.soft_off_signal = _signal(soft_off_signal, "soft_off_signal")
        self.nmi_signal = _signal(nmi_signal, "nmi_signal")
        if not isinstance(stop_timeout, int | float) or not 0 <= stop_timeout <= 300:
            raise ValueError("stop_timeout: must be 0..300 seconds")
        self.stop_timeout = float(stop_timeout)
        if env is not None and (not isinstance(env, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise TypeError("env: must be a mapping of names to strings")
        self.env = dict(env or {})
        if cwd is not None and not Path(cwd).is_dir():
            raise ValueError(f"cwd: {cwd!r} is not a directory")
        self.cwd = cwd
        self.node_name = node_name
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        #: children we stopped ourselves: their exit is no news (the reader forgets them)
        self._expected: set[subprocess.Popen[bytes]] = set()
        self._new_children: list[subprocess.Popen[bytes]] = []
        self._sink: Callable[[bytes], None] | None = None
        self._early = bytearray()
        self._master = self._slave = -1
        self._tty_attrs: list[Any] | None = None
        self._wake_r, self._wake_w = -1, -1
        self._reader: threading.Thread | None = None
        self._closing = False
        #: the device the last boot used (tests and logs)
        self.last_boot_device: BootDevice | None = None
        if power_on:  # output before a console is attached is kept (EARLY_OUTPUT_LIMIT)
            self.power_on(BootDevice.NONE)

    # -- power ----------------------------------------------------------------------------------
    def power_state(self) -> PowerState:
        with self._lock:
            alive = self._proc is not None and self._proc.poll() is None
        return PowerState.ON if alive else PowerState.OFF

    def power_on(self, boot_device: BootDevice) -> None:
        with self._lock:
            if self._closing:
                raise BackendError("the backend is closed")
            if self._proc is not None and self._proc.poll() is None:
                return
            self._open_pty()
            self._reset_tty()
            argv = [sys.executable, "-I", "-S", PTYEXEC, *self.command]
            try:
                proc = subprocess.Popen(argv, stdin=self._slave, stdout=self._slave,
                                        stderr=self._slave, start_new_session=True,
                                        env=self._child_env(boot_device), cwd=self.cwd)
            except OSError as exc:
                raise BackendError(f"cannot start {self.command[0]}: {exc.strerror}") from exc
            self._proc = proc
            self.last_boot_device = boot_device
            self._new_children.append(proc)
            self._wake()
        log.info("%s: started %s (pid %d), boot device %s", self.node_name or "process",
                 Path(self.command[-1]).name, proc.pid, boot_device.value)

    def power_off(self) -> None:
        self._stop(self.stop_timeout)

    def soft_off(self) -> None:
        self._signal(self.soft_off_signal)

    def nmi(self) -> None:
        self._signal(self.nmi_signal)

    def reset(self, boot_device: BootDevice) -> None:
        self._stop(self.stop_timeout)
        self.power_on(boot_device)

    def power_cycle(self, boot_device: BootDevice) -> None:
        self.reset(boot_device)

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._stop(min(self.stop_timeout, 1.0))
        self._wake()
        if self._reader is not None:
            self._reader.join(timeout=5)
        with self._lock:
            for fd in (self._master, self._slave, self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._master = self._slave = self._wake_r = self._wake_w = -1

    def _signal(self, sig: signal.Signals) -> None:
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)

    def _stop(self, grace: float) -> None:
        """Stop the running program, if any: its exit is expected, so no power-lost event."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            self._expected.add(proc)
        _terminate(proc, grace)

    def _child_env(self, boot_device: BootDevice) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(TERM="vt100", BMC_BOOT_DEVICE=boot_device.value,
                   BMC_BOOT_MODE="uefi" if self.boot_uefi else "legacy",
                   BMC_NODE_NAME=self.node_name or "localhost")
        env.update(self.env)
        return env

    # -- the pty --------------------------------------------------------------------------------
    def _open_pty(self) -> None:
        """The node's serial port: made at the first power-on, kept until close()."""
        if self._master >= 0:
            return
        self._master, self._slave = os.openpty()
        os.set_blocking(self._master, False)
        self._tty_attrs = termios.tcgetattr(self._slave)
        fcntl.ioctl(self._slave, termios.TIOCSWINSZ, struct.pack("HHHH", *WINDOW_SIZE, 0, 0))
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._reader = threading.Thread(target=self._run, daemon=True,
                                        name=f"console-{self.node_name or 'process'}")
        self._reader.start()

    def _reset_tty(self) -> None:
        """A fresh boot sees a terminal in its default state and no stale typed input."""
        if self._tty_attrs is not None:
            termios.tcsetattr(self._slave, termios.TCSANOW, self._tty_attrs)
        termios.tcflush(self._slave, termios.TCIOFLUSH)

    def _wake(self) -> None:
        if self._wake_w >= 0:
            # failing means a wake-up is pending already, or we are closing
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    # -- the console ----------------------------------------------------------------------------
    def attach_console(self, output: Callable[[bytes], None]) -> bool:
        with self._lock:
            self._sink = output
            early, self._early = bytes(self._early), bytearray()
        if early:
            output(early)
        return True

    def write_console(self, data: bytes) -> None:
        with self._lock:
            if self._master < 0 or self._proc is None:
                return  # the server is off: nobody reads the serial port
            try:
                os.write(self._master, data)
            except BlockingIOError:
                log.debug("%s: console input dropped (the program is not reading)",
                          self.node_name)
            except OSError as exc:
                log.debug("%s: console write failed: %s", self.node_name, exc)

    def _emit(self, data: bytes) -> None:
        with self._lock:
            sink = self._sink
            if sink is None:
                self._early += data
                del self._early[:-EARLY_OUTPUT_LIMIT]
                return
        try:
            sink(data)
        except Exception:  # a viewer's bug must not stop the console
            log.exception("%s: console output callback failed", self.node_name)

    # -- the reader thread: console output and child exits --------------------------------------
    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._master, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        watched: dict[int, subprocess.Popen[bytes]] = {}  # pidfd -> child
        polled: list[subprocess.Popen[bytes]] = []  # children without a pidfd (old kernels)
        while True:
            with self._lock:
                if self._closing and not watched and not polled and self._proc is None:
                    self._drain_output()
                    return
                new, self._new_children = self._new_children, []
            for proc in new:
                try:
                    pidfd = os.pidfd_open(proc.pid)
                except (AttributeError, OSError):
                    polled.append(proc)
                    continue
                watched[pidfd] = proc
                poller.register(pidfd, select.POLLIN)
            for fd, _ in poller.poll(200 if polled else 1000):
                if fd == self._master:
                    self._drain_output()
                elif fd == self._wake_r:
                    _drain_pipe(self._wake_r)
                elif fd in watched:
                    poller.unregister(fd)
                    os.close(fd)
                    self._child_exited(watched.pop(fd))
            for proc in [p for p in polled if _has_exited(p.pid)]:
                polled.remove(proc)
                self._child_exited(proc)

    def _drain_output(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EIO:  # no slave side open: nothing to read for now
                    time.sleep(0.05)
                    return
                raise
            if not data:
                return
            self._emit(data)

    def _child_exited(self, proc: subprocess.Popen[bytes]) -> None:
        self._drain_output()  # its last words come before the news of its exit
        with self._lock:
            if proc in self._expected:
                self._expected.discard(proc)
                return  # _stop() reaps it
        _kill_session(proc.pid)  # what it left running (the leader is a zombie until reaped)
        code = proc.wait()
        with self._lock:
            if self._proc is proc:
                self._proc = None
        reason = (f"killed by {signal.Signals(-code).name}" if code < 0
                  else f"exited with status {code}")
        log.info("%s: the server process %s: the server is off", self.node_name or "process",
                 reason)
        try:
            self.report_power(PowerState.OFF, reason)
        except Exception:
            log.exception("%s: power-change callback failed", self.node_name)


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, OSError):
        pass


def _has_exited(pid: int) -> bool:
    """Whether `pid` (our child) has exited, without reaping it (its group stays ours)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True  # already reaped


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _kill_session(sid: int) -> None:
    """SIGKILL every process of the session `sid` (the program and whatever it started).

    A process group is not enough: a shell with job control puts background jobs in groups of
    their own. Only a process that starts a new session (a daemon) escapes this.
    """
    _kill_group(sid, signal.SIGKILL)
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: the group kill above is all we can do
        return
    for entry in entries:
        if not entry.isdigit() or int(entry) == sid:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if len(fields) > 3 and int(fields[3]) == sid:  # state, ppid, pgrp, session
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry), signal.SIGKILL)


def _terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the program's process group, SIGKILL what is left after `grace`, reap."""
    _kill_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while not _has_exited(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    # the leader is dead or dying; until it is reaped its session ID cannot be reused
    _kill_session(proc.pid)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
        log.error("process %d survived SIGKILL", proc.pid)
