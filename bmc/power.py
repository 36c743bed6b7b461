"""Backend calls off the front ends' threads: one ordered queue per node, one shared pool.

A real backend takes seconds (a container's stop timeout, a VM's shutdown, a remote API). The
IPMI front end has one thread for every node, and IPMI clients retransmit after ~1 s, so no
front end may ever wait on a backend. A `NodeWorker` takes a node's backend calls and runs
them one at a time, in order, on a thread of a pool shared by every node; a slow node only
ever delays its own queue. The caller gets a `Future` it may wait on for as long as it likes
(Redfish waits ~1 s, then answers 202 with a task; IPMI never waits).

A thread blocked in a stuck backend call stays blocked (Python cannot cancel it); its node's
queue fills up and further actions are refused as busy, and other nodes keep their threads
as long as the pool has any: it is sized for many nodes stuck at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: threads shared by every node's worker, started on demand: enough for a few hundred slow
#: actions at once (a stuck backend call holds its thread)
POOL_SIZE = 256
#: calls a node may have queued (beyond the running one) before it reports itself busy
MAX_PENDING = 8


class NodeBusy(Exception):
    """The node has too many backend calls queued: try again later (IPMI 0xC0)."""


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="backend")
        return _pool


class NodeWorker:
    """Runs one node's backend calls in submission order, one at a time, off the caller's
    thread. Thread-safe."""

    def __init__(self, name: str, max_pending: int = MAX_PENDING) -> None:
        self.name = name
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._queue: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self._running = False
        self._closed = False

    def submit(self, call: Callable[[], T], *, force: bool = False) -> Future[T]:
        """Queue `call`; NodeBusy if the queue is full (unless `force`: internal work)."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise NodeBusy(f"{self.name}: the node is shutting down")
            if not force and len(self._queue) >= self.max_pending:
                raise NodeBusy(f"{self.name}: {len(self._queue)} backend calls are waiting")
            self._queue.append((future, call))
            start = not self._running
            self._running = True
        if start:
            _shared_pool().submit(self._drain)
        return future

    @property
    def busy(self) -> bool:
        """A call is running or waiting."""
        with self._lock:
            return self._running

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing runs or waits (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while self.busy:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        return True

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                future, call = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # the caller sees it; the queue goes on
                future.set_exception(exc)

    def close(self, timeout: float = 5.0) -> None:
        """Refuse new calls, cancel the waiting ones and wait (bounded) for the running one."""
        with self._lock:
            self._closed = True
            waiting, self._queue = list(self._queue), deque()
        for future, _call in waiting:
            future.cancel()
        self.wait_idle(timeout)


class Poller:
    """Calls `poll()` of registered nodes every `interval` seconds each, from one thread.

    A node's poll only queues work on its own worker, so this thread never waits on a backend.
    """

    def __init__(self, tick: float = 0.25) -> None:
        self.tick = tick
        self._lock = threading.Lock()
        self._due: dict[int, tuple[float, Callable[[], float | None]]] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def add(self, key: int, poll: Callable[[], float | None], first: float) -> None:
        """Call `poll` in `first` seconds; it returns the seconds until its next call (None:
        stop polling)."""
        with self._lock:
            self._due[key] = (time.monotonic() + first, poll)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="power-poller",
                                                daemon=True)
                self._thread.start()

    def remove(self, key: int) -> None:
        with self._lock:
            self._due.pop(key, None)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            with self._lock:
                due = [(key, poll) for key, (when, poll) in self._due.items() if when <= now]
            for key, poll in due:
                try:
                    again = poll()
                except Exception:  # one node's failure must not stop the others' polls
                    log.exception("power poll failed")
                    again = 5.0
                with self._lock:
                    if key in self._due:
                        if again is None:
                            del self._due[key]
                        else:
                            self._due[key] = (now + again, poll)


#: the process's one poller (nodes of backends without power events, and failing backends)
poller = Poller()


class Unsupported(ValueError):
    """The node's backend cannot do this (a capability it lacks): IPMI 0xCC, Redfish 400."""


class BackendUnavailable(Exception):
    """The node's backend is failing (its last call failed and it has not recovered yet):
    IPMI 0xD5, Redfish 503 with Retry-After."""
