"""SSH for backends: one asyncio loop thread for the process, one connection per SSH target.

The `ssh` and `metal` backends talk SSH with asyncssh (commands, and serial consoles that stay
open for the node's life). asyncssh is asyncio-only, and the node calls backends from plain
threads, so every SSH conversation of the process runs on one loop in one daemon thread
(started on first use); blocking callers wait on it with a deadline (`run`), never forever.

Connections are shared: every node whose settings name the same host, port, user, key and
known-hosts file uses one SSH connection (asyncssh multiplexes channels over it), opened on first
use and opened again when it drops. asyncssh itself is imported only when a node uses SSH.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from backends.base import BackendError

if TYPE_CHECKING:
    import asyncssh

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def loop() -> asyncio.AbstractEventLoop:
    """The process's SSH loop, running in a daemon thread (started on first use)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            new = asyncio.new_event_loop()
            thread = threading.Thread(target=new.run_forever, name="ssh-loop", daemon=True)
            thread.start()
            _loop = new
        return _loop


def run(coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
    """Run `coro` on the SSH loop and wait at most `timeout` seconds for it (any thread but
    the loop's). A timeout cancels it and raises BackendError naming `what`."""
    future = asyncio.run_coroutine_threadsafe(coro, loop())
    try:
        return future.result(timeout)
    except FutureTimeout:
        future.cancel()
        raise BackendError(f"{what}: no answer within {timeout:g} s") from None


@dataclass(frozen=True)
class SshTarget:
    """Where to log in, and how. Equal targets share one connection."""

    host: str
    port: int = 22
    user: str | None = None  # None: the local user name, as ssh does
    key: str | None = None  # a private key file; None: the SSH agent and ~/.ssh/id_*
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    check_host_key: bool = True  # False: accept any host key (a lab without known_hosts)
    connect_timeout: float = 5.0

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"


def require(module: str, extra: str) -> None:
    """BackendError (the node cannot start) if `module` is not installed."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise BackendError(f"this backend needs the Python package {module!r}: "
                           f"pip install 'bmc-emulator[{extra}]'")


def check_types(**settings: tuple[Any, type | tuple[type, ...]]) -> None:
    """TypeError naming the first setting whose value is not of its type (`None` is allowed
    where the type tuple includes `type(None)`)."""
    for name, (value, kinds) in settings.items():
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if isinstance(value, bool) and bool not in kinds:
            value_ok = False
        else:
            value_ok = isinstance(value, kinds)
        if not value_ok:
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise TypeError(f"{name}: must be {names}, not {value!r}")


def check_target_settings(key: str | None, known_hosts: str | None, prefix: str = "") -> None:
    """ValueError for files named in the settings that are not there (a clear config error
    at start instead of a failure at the first power-on)."""
    none = type(None)
    check_types(**{f"{prefix}key": (key, (str, none)),
                   f"{prefix}known_hosts": (known_hosts, (str, none))})
    for name, path in (("key", key), ("known_hosts", known_hosts)):
        if path is not None and not Path(path).expanduser().is_file():
            raise ValueError(f"{prefix}{name}: {path!r} is not a file")


def ssh_error(exc: BaseException) -> str:
    """A one-line description of an SSH failure (never a secret: asyncssh's messages name
    the host and the reason only)."""
    import asyncssh

    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return f"host key not verifiable ({exc.reason}); add it to the known_hosts file"
    if isinstance(exc, asyncssh.PermissionDenied):
        return "permission denied (the key is not accepted)"
    if isinstance(exc, asyncssh.DisconnectError):
        return exc.reason or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


class _Pool:
    """Open connections by target, with a reference count per target (its users)."""

    def __init__(self) -> None:
        self._conns: dict[SshTarget, asyncssh.SSHClientConnection] = {}
        self._locks: dict[SshTarget, asyncio.Lock] = {}
        self._users: dict[SshTarget, int] = {}
        self._count_lock = threading.Lock()

    def use(self, target: SshTarget) -> None:
        with self._count_lock:
            self._users[target] = self._users.get(target, 0) + 1

    def release(self, target: SshTarget) -> None:
        """One user fewer; the last one closes the connection (from any thread)."""
        with self._count_lock:
            self._users[target] = self._users.get(target, 1) - 1
            if self._users[target] > 0:
                return
            del self._users[target]
        loop().call_soon_threadsafe(self._close, target)

    def _close(self, target: SshTarget) -> None:
        conn = self._conns.pop(target, None)
        if conn is not None:
            conn.close()

    async def get(self, target: SshTarget) -> asyncssh.SSHClientConnection:
        """The open connection to `target`, connecting first if there is none (on the loop)."""
        conn = self._conns.get(target)
        if conn is not None and not conn.is_closed():
            return conn
        lock = self._locks.setdefault(target, asyncio.Lock())
        async with lock:  # callers arriving together share one new connection
            conn = self._conns.get(target)
            if conn is not None and not conn.is_closed():
                return conn
            conn = await _connect(target)
            self._conns[target] = conn
            return conn

    def drop(self, target: SshTarget, conn: asyncssh.SSHClientConnection) -> None:
        """Forget a connection that failed (the next `get` opens a new one)."""
        if self._conns.get(target) is conn:
            del self._conns[target]
        with contextlib.suppress(Exception):
            conn.close()


async def _connect(target: SshTarget) -> asyncssh.SSHClientConnection:
    import asyncssh

    quiet = logging.getLogger("asyncssh")
    if quiet.level == logging.NOTSET:  # it logs every channel at INFO: our own logs say enough
        quiet.setLevel(logging.WARNING)
    options: dict[str, Any] = {
        "port": target.port,
        "connect_timeout": target.connect_timeout,
        # notice a dead peer (a console would otherwise wait forever for output)
        "keepalive_interval": 15, "keepalive_count_max": 3,
    }
    if target.user:
        options["username"] = target.user
    if target.key:
        options["client_keys"] = [str(Path(target.key).expanduser())]
        options["agent_path"] = None  # exactly this key, as the settings say
    if not target.check_host_key:
        options["known_hosts"] = None
    elif target.known_hosts:
        options["known_hosts"] = str(Path(target.known_hosts).expanduser())
    return await asyncio.wait_for(asyncssh.connect(target.host, **options),
                                  target.connect_timeout + 1)


#: every connection of the process
pool = _Pool()
