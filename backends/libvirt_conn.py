"""libvirt connections for the `libvirt` backend: one per URI, shared by its nodes, kept alive.

- One event loop per process: libvirt's default implementation, registered once before the
  first connection opens, run by one daemon thread (`virEventRunDefaultImpl`). It carries
  domain lifecycle events, the close callback, keepalives and console streams. Nothing slow
  runs on it: events are handed to the connection's dispatcher thread.
- One `Connection` per URI, refcounted (`acquire`/`release`). It connects in the background
  (a node's constructor must not block) and again, with backoff, whenever libvirt closes it
  (libvirtd restarted, keepalive timeout, ssh died). Meanwhile calls fail after
  `connect_timeout` with a BackendError saying so, instead of hanging.
- Every libvirt call goes through `Connection.call`, which bounds it by a timeout: a libvirtd
  that stops answering costs the node an error, never its worker thread.
- Listeners (the backends) get lifecycle events of their domain and a `connected()` call after
  each (re)connection, on the dispatcher thread, in order.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from backends.base import BackendError

log = logging.getLogger(__name__)

T = TypeVar("T")
#: seconds between reconnection attempts: doubling from the first to the last
BACKOFF = (0.25, 8.0)
#: keepalive: a probe after this many idle seconds, the connection is closed after COUNT misses
KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 3

_lv: Any = None
_lv_lock = threading.Lock()


def libvirt_module() -> Any:
    """The `libvirt` module, with the process's event loop registered and running."""
    global _lv
    with _lv_lock:
        if _lv is not None:
            return _lv
        try:
            import libvirt
        except ImportError as exc:
            raise BackendError("the libvirt backend needs libvirt-python "
                               "(pip install 'bmc-emulator[libvirt]')") from exc
        # libvirt prints every error to stderr by default; ours are raised and logged instead
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()  # before any connection opens
        threading.Thread(target=_run_loop, args=(libvirt,), name="libvirt-events",
                         daemon=True).start()
        _lv = libvirt
        return libvirt


def _run_loop(lv: Any) -> None:
    while True:
        try:
            lv.virEventRunDefaultImpl()
        except Exception:  # never let the process's only event loop die
            log.exception("libvirt event loop iteration failed")
            time.sleep(0.1)


class LibvirtCallError(BackendError):
    """A libvirt call failed; `code` is libvirt's error code (VIR_ERR_*)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Listener(Protocol):
    def libvirt_event(self, event: int, detail: int) -> None: ...
    def libvirt_connected(self) -> None: ...


def is_connection_error(exc: Exception) -> bool:
    """Whether a libvirtError means the connection is gone (rather than the request failed)."""
    lv = _lv
    if lv is None or not isinstance(exc, lv.libvirtError):
        return False
    code = exc.get_error_code()
    if code in (lv.VIR_ERR_NO_CONNECT, lv.VIR_ERR_INVALID_CONN, lv.VIR_ERR_RPC,
                lv.VIR_ERR_AUTH_FAILED):
        return True
    message = (exc.get_error_message() or "").lower()
    return code in (lv.VIR_ERR_SYSTEM_ERROR, lv.VIR_ERR_INTERNAL_ERROR) and any(
        word in message for word in ("socket", "connection", "end of file", "broken pipe",
                                     "cannot write data", "cannot recv data"))


class Connection:
    """The libvirt connection to one URI, shared by every node on it. Thread-safe."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.refs = 0
        self.lv = libvirt_module()
        self._lock = threading.Lock()
        self._conn: Any = None
        self._up = threading.Event()
        #: the last connection attempt failed: calls fail at once instead of waiting (a node
        #: per domain on a dead URI must not add a wait each, at start or later)
        self._down = threading.Event()
        #: the first connection attempt is over (either way)
        self.tried = threading.Event()
        self._closed = threading.Event()
        self._last_error = "not connected yet"
        #: bumped on every new connection: objects of an older one (domains) are stale
        self.generation = 0
        self.events_ok = False
        self._listeners: dict[str, set[Listener]] = {}  # by domain UUID: its events
        self._all: set[Listener] = set()  # every backend: told of each (re)connection
        self._event_id: int | None = None
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._calls = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix=f"libvirt-call {uri}")
        threading.Thread(target=self._dispatch, name=f"libvirt-dispatch {uri}",
                         daemon=True).start()
        self._connector: threading.Thread | None = None
        self._start_connector()

    # -- use --------------------------------------------------------------------------------
    def get(self, timeout: float) -> Any:
        """The live virConnect, waiting up to `timeout` s for (re)connection; at once a
        BackendError while libvirt is known to be unreachable."""
        if not self._up.is_set() and self._down.is_set():
            raise BackendError(f"libvirt at {self.uri} is not reachable ({self._last_error}); "
                               "reconnecting in the background")
        if not self._up.wait(timeout):
            raise BackendError(f"libvirt at {self.uri} is not reachable ({self._last_error}); "
                               "reconnecting in the background")
        with self._lock:
            conn = self._conn
        if conn is None:  # lost just now
            raise BackendError(f"libvirt at {self.uri} is not reachable ({self._last_error}); "
                               "reconnecting in the background")
        return conn

    def call(self, what: str, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        """`fn(*args)` on a worker, at most `timeout` s; libvirt errors become BackendErrors."""
        future = self._calls.submit(fn, *args)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise BackendError(f"libvirt at {self.uri} did not answer {what} within "
                               f"{timeout:g} s") from None
        except self.lv.libvirtError as exc:
            if is_connection_error(exc) or not self._alive():
                self.lost(f"{what}: {exc.get_error_message()}")
                raise BackendError(f"libvirt at {self.uri}: connection lost during {what} "
                                   f"({exc.get_error_message()}); reconnecting") from None
            raise LibvirtCallError(f"{what}: {exc.get_error_message()}",
                                   exc.get_error_code()) from None

    def _alive(self) -> bool:
        """Whether the connection still stands (local: asks the client, not libvirtd)."""
        conn = self._conn
        if conn is None:
            return False
        try:
            return bool(conn.isAlive())
        except self.lv.libvirtError:
            return False

    def watch(self, uuid: str, listener: Listener) -> None:
        with self._lock:
            self._listeners.setdefault(uuid, set()).add(listener)

    def unwatch(self, listener: Listener) -> None:
        with self._lock:
            for group in self._listeners.values():
                group.discard(listener)

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` on the dispatcher thread (in order with events; may call libvirt)."""
        self._jobs.put(job)

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    # -- (re)connecting ----------------------------------------------------------------------
    def _start_connector(self) -> None:
        with self._lock:
            if self._closed.is_set() or (self._connector and self._connector.is_alive()):
                return
            self._connector = threading.Thread(target=self._connect_loop,
                                               name=f"libvirt-connect {self.uri}", daemon=True)
            self._connector.start()

    def _connect_loop(self) -> None:
        delay = BACKOFF[0]
        while not self._closed.is_set():
            try:
                conn = self._open()
            except Exception as exc:  # libvirtError, OSError from ssh, ...
                message = exc.get_error_message() if isinstance(exc, self.lv.libvirtError) \
                    else str(exc)
                self._last_error = message or type(exc).__name__
                self._down.set()
                self.tried.set()
                log.warning("libvirt %s: cannot connect (%s); next try in %.2g s", self.uri,
                            self._last_error, delay)
                self._closed.wait(delay)
                delay = min(delay * 2, BACKOFF[1])
                continue
            with self._lock:
                if self._closed.is_set():
                    break
                self._conn = conn
                self.generation += 1
                self._down.clear()
                self._up.set()
                self.tried.set()
            log.info("libvirt %s: connected%s", self.uri,
                     "" if self.events_ok else " (no lifecycle events: polling)")
            self.submit(self._announce)
            return
        self._connector = None

    def _open(self) -> Any:
        lv = self.lv
        conn = lv.open(self.uri)
        # a driver without a daemon (test:///) needs neither keepalives nor a close callback
        with contextlib.suppress(lv.libvirtError):
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
        with contextlib.suppress(lv.libvirtError):
            conn.registerCloseCallback(self._on_close, None)
        try:
            self._event_id = conn.domainEventRegisterAny(
                None, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)
            self.events_ok = True
        except lv.libvirtError as exc:
            self.events_ok = False
            log.warning("libvirt %s: no lifecycle events (%s)", self.uri,
                        exc.get_error_message())
        return conn

    def lost(self, why: str) -> None:
        """The connection is gone (closed under us, or calls say so): reconnect."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            self._up.clear()
            self._last_error = why
        log.warning("libvirt %s: connection lost (%s); reconnecting", self.uri, why)
        self.submit(lambda: self._drop(conn))
        self._start_connector()

    def _drop(self, conn: Any) -> None:
        for undo in (conn.unregisterCloseCallback, conn.close):
            # it may be dead already: only the local handle is left to free
            with contextlib.suppress(Exception):
                undo()

    # -- libvirt's callbacks (the event loop thread: never block) -----------------------------
    def _on_close(self, conn: Any, reason: int, _opaque: Any) -> None:
        reasons = {0: "error", 1: "end of file: libvirtd stopped?", 2: "keepalive timeout",
                   3: "closed by the client"}
        why = reasons.get(reason, f"reason {reason}")
        # lost() takes our lock: never on the event loop (a call may hold it while waiting)
        self.submit(lambda: self._lost_if_current(conn, why))

    def _lost_if_current(self, conn: Any, why: str) -> None:
        if self._conn is conn:
            self.lost(why)

    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any
                      ) -> None:
        uuid = dom.UUIDString()  # local: no RPC
        self.submit(lambda: self._deliver(uuid, event, detail))

    # -- the dispatcher thread ---------------------------------------------------------------
    def _dispatch(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("libvirt %s: event handling failed", self.uri)

    def _deliver(self, uuid: str, event: int, detail: int) -> None:
        with self._lock:
            listeners = list(self._listeners.get(uuid, ()))
        for listener in listeners:
            listener.libvirt_event(event, detail)

    def _announce(self) -> None:
        with self._lock:
            listeners = list(self._all)
        for listener in listeners:
            listener.libvirt_connected()

    def add(self, listener: Listener) -> None:
        """Tell `listener` about every (re)connection, the present one included."""
        with self._lock:
            self._all.add(listener)
            up = self._up.is_set()
        if up:
            self.submit(listener.libvirt_connected)

    def remove(self, listener: Listener) -> None:
        with self._lock:
            self._all.discard(listener)
        self.unwatch(listener)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            conn, self._conn = self._conn, None
            self._up.clear()
        if conn is not None:
            event_id = self._event_id

            def goodbye() -> None:
                if event_id is not None:
                    with contextlib.suppress(Exception):
                        conn.domainEventDeregisterAny(event_id)
                self._drop(conn)

            # closing talks to libvirtd, which may be the thing that hangs: bounded
            concurrent.futures.wait([self._calls.submit(goodbye)], timeout=2.0)
        self._jobs.put(None)
        self._calls.shutdown(wait=False, cancel_futures=True)


_registry: dict[str, Connection] = {}
_registry_lock = threading.Lock()


def acquire(uri: str) -> Connection:
    """The shared connection to `uri` (made, and connecting in the background, if new)."""
    with _registry_lock:
        conn = _registry.get(uri)
        if conn is None:
            conn = _registry[uri] = Connection(uri)
        conn.refs += 1
        return conn


def release(conn: Connection) -> None:
    """Drop one user of `conn`; the last one closes it."""
    with _registry_lock:
        conn.refs -= 1
        if conn.refs > 0:
            return
        if _registry.get(conn.uri) is conn:
            del _registry[conn.uri]
    conn.close()
