"""A serial console that lives on the SSH loop: a remote pty over SSH, or a local one.

A BMC's serial console is always there, whoever watches: `RemoteConsole` keeps one session
open for the node's whole life (from `attach_console` to `close`), feeds everything it reads
to the node's console hub, types what the hub's writer sends, and when the session ends or
cannot be opened (the host is down, `virsh console` exited because the VM stopped, the SOS
service dropped us) opens it again after a back-off (1 s doubling to 30 s; a session that
lasted a while starts the back-off again at 1 s). Nothing here blocks a caller: output comes
from the loop thread, input is handed to the loop.

Channels: `ssh_channel` (a command, or the login shell, on a pty over a pooled connection:
what Equinix Metal's SOS and `virsh console` on a hypervisor need) and `local_channel` (a local
command on a pty of our own, for `host: local`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from backends import sshloop
from backends.sshloop import SshTarget

log = logging.getLogger(__name__)

TERM = "vt100"
TERM_SIZE = (80, 24)  # columns, rows: what a serial console client usually is
RETRY_MIN, RETRY_MAX = 1.0, 30.0
#: a session that lasted this long was a success: the back-off starts again from RETRY_MIN
STABLE_AFTER = 10.0
PTYEXEC = str(Path(__file__).resolve().parent / "ptyexec.py")


class Channel(Protocol):
    """One open console session."""

    async def read(self) -> bytes:
        """The next output; b"" once the session is over."""

    def write(self, data: bytes) -> None:
        """Type `data` (dropped if the other side does not keep up)."""

    def close(self) -> None:
        """End the session."""


Opener = Callable[[], Awaitable[Channel]]


class RemoteConsole:
    """Keeps a console session open and connected to `sink` until `close()`."""

    def __init__(self, name: str, opener: Opener, what: str) -> None:
        self.name = name
        self.what = what  # "SOS console abc@sos.da11..." for the logs
        self._opener = opener
        self._sink: Callable[[bytes], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._channel: Channel | None = None
        self.connected = asyncio.Event()  # set while a session is open (on the loop)
        self.sessions = 0  # sessions opened so far (tests, logs)

    def start(self, sink: Callable[[bytes], None]) -> None:
        """Start (or keep) the session; output goes to `sink` from the loop thread."""
        self._sink = sink
        if self._task is None:
            loop = sshloop.loop()

            def create() -> None:
                self._task = loop.create_task(self._run())

            # the task exists before start() returns, so a close() right after cancels it
            sshloop.run(_call(create), 5.0, f"{self.name}: console")

    def write(self, data: bytes) -> None:
        """Type on the console (any thread; never blocks; dropped while disconnected)."""
        sshloop.loop().call_soon_threadsafe(self._write, data)

    def _write(self, data: bytes) -> None:
        if self._channel is not None:
            try:
                self._channel.write(data)
            except Exception as exc:  # the session is ending: the reader notices
                log.debug("%s: console input dropped: %s", self.name, exc)

    def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            async def cancel() -> None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                sshloop.run(cancel(), 5.0, f"{self.name}: closing the console")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay, failures = RETRY_MIN, 0
        while True:
            started = loop.time()
            try:
                channel = await self._opener()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                # the first failure is news; the same failure every back-off is noise
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "%s: cannot open the %s: %s (retrying every %g s at most)",
                        self.name, self.what, _describe(exc), RETRY_MAX)
            else:
                failures = 0
                await self._pump(channel)
                if loop.time() - started > STABLE_AFTER:
                    delay = RETRY_MIN
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _pump(self, channel: Channel) -> None:
        self._channel = channel
        self.sessions += 1
        self.connected.set()
        log.info("%s: %s open", self.name, self.what)
        try:
            while data := await channel.read():
                sink = self._sink
                if sink is not None:
                    try:
                        sink(data)
                    except Exception:  # a viewer's bug must not end the console
                        log.exception("%s: console output callback failed", self.name)
            log.info("%s: %s closed by the other side", self.name, self.what)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("%s: %s lost: %s", self.name, self.what, _describe(exc))
        finally:
            self.connected.clear()
            self._channel = None
            channel.close()


async def _call(function: Callable[[], None]) -> None:
    function()


def _describe(exc: BaseException) -> str:
    try:
        return sshloop.ssh_error(exc)
    except ImportError:  # a local console: asyncssh may not be installed
        return str(exc) or type(exc).__name__


# -- an SSH session on a pty ------------------------------------------------------------------
class _SshChannel:
    def __init__(self, process: object) -> None:
        self._process = process

    async def read(self) -> bytes:
        return await self._process.stdout.read(65536)  # type: ignore[attr-defined]

    def write(self, data: bytes) -> None:
        self._process.stdin.write(data)  # type: ignore[attr-defined]

    def close(self) -> None:
        self._process.close()  # type: ignore[attr-defined]


def ssh_channel(target: SshTarget, command: str | None,
                resolve: Callable[[], Awaitable[SshTarget]] | None = None) -> Opener:
    """An opener of `command` (None: the login shell) on a pty at `target`.

    `resolve`, if given, picks the target at each attempt (the Metal SOS host comes from the
    API). The connection is the pooled one; a failed one is dropped so the next try reconnects.
    """

    async def open_channel() -> Channel:
        where = await resolve() if resolve is not None else target
        conn = await sshloop.pool.get(where)
        try:
            process = await asyncio.wait_for(
                conn.create_process(command, term_type=TERM, term_size=TERM_SIZE,
                                    encoding=None),
                where.connect_timeout)
        except Exception:
            sshloop.pool.drop(where, conn)
            raise
        return _SshChannel(process)

    return open_channel


# -- a local command on a pty -----------------------------------------------------------------
class _LocalChannel:
    def __init__(self, command: str) -> None:
        import fcntl
        import struct
        import termios

        self._master, slave = os.openpty()
        try:
            columns, rows = TERM_SIZE
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            from backends.sshcommand import child_env

            env = {**child_env(), "TERM": TERM}
            # ptyexec makes the pty its controlling terminal (job control, ^C) like a console
            self._proc = subprocess.Popen([sys.executable, "-I", "-S", PTYEXEC,
                                           "/bin/sh", "-c", command],
                                          stdin=slave, stdout=slave, stderr=slave,
                                          start_new_session=True, env=env)
        except BaseException:
            os.close(self._master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(self._master, False)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        asyncio.get_running_loop().add_reader(self._master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError as exc:  # EIO: every slave side is closed (the command exited)
            if exc.errno != errno.EIO:
                log.debug("local console read failed: %s", exc)
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._master)
        self._queue.put_nowait(data)

    async def read(self) -> bytes:
        return await self._queue.get()

    def write(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._master, data)

    def close(self) -> None:
        if self._master < 0:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._master)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        os.close(self._master)
        self._master = -1
        self._proc.wait()  # killed: immediate


def local_channel(command: str) -> Opener:
    """An opener of the shell command `command` on a local pty."""

    async def open_channel() -> Channel:
        return _LocalChannel(command)

    return open_channel
