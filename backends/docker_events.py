"""One Docker event stream per Docker daemon, shared by every `docker` node on it.

A thread per daemon (not per node) reads `GET /events` for container start/die/destroy and
calls the subscribers registered for that container's name. When the stream breaks (the daemon
stopped or restarted) the thread reconnects with an exponential backoff, and on every
(re)connection calls each subscriber with `None`: "resynchronise", because events were missed
while it was away. The thread ends when the last subscriber leaves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: the container events that can change a container's power state
ACTIONS = ("start", "die", "destroy")
MIN_BACKOFF = 0.5
MAX_BACKOFF = 10.0

#: called with an event (Docker's JSON, decoded) or None after a (re)connection
Subscriber = Callable[[dict[str, Any] | None], None]


class EventStream:
    """The event stream of one Docker daemon (`key` names it: its URL)."""

    def __init__(self, key: str, client_factory: Callable[[], Any]) -> None:
        self.key = key
        self._factory = client_factory
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"docker-events {key}")

    @property
    def connected(self) -> bool:
        """Whether events are flowing now (a state learnt from them is current)."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _add(self, name: str, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers.setdefault(name, []).append(callback)

    def _remove(self, name: str, callback: Subscriber) -> int:
        """Forget a subscriber; returns how many are left."""
        with self._lock:
            callbacks = self._subscribers.get(name, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._subscribers.pop(name, None)
            return sum(len(c) for c in self._subscribers.values())

    def _stop(self) -> None:
        self._stopping.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            try:
                stream.close()  # wakes the thread's blocking read
            except Exception:  # noqa: BLE001 - closing a broken stream may fail; we are done
                log.debug("closing the event stream of %s failed", self.key, exc_info=True)

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        delay = MIN_BACKOFF
        failures = 0
        while not self._stopping.is_set():
            client = None
            try:
                client = self._factory()
                stream = client.api.events(decode=True, filters={"type": "container",
                                                                 "event": list(ACTIONS)})
                with self._lock:
                    self._stream = stream
                if self._stopping.is_set():
                    break
                self._connected.set()
                if failures:
                    log.info("docker events: reconnected to %s", self.key)
                delay, failures = MIN_BACKOFF, 0
                self._deliver_all(None)  # whatever happened while we were away
                for event in stream:
                    self._deliver(event)
                if not self._stopping.is_set():
                    raise ConnectionError("the daemon closed the event stream")
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect later
                if self._stopping.is_set():
                    break
                failures += 1
                # the first failure is news; the retries that follow are not
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "docker events: %s unreachable (%s); retrying with backoff",
                        self.key, _short(exc))
            finally:
                self._connected.clear()
                with self._lock:
                    self._stream = None
                if client is not None:
                    client.close()
            self._stopping.wait(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    def _deliver(self, event: dict[str, Any]) -> None:
        name = ((event.get("Actor") or {}).get("Attributes") or {}).get("name")
        with self._lock:
            callbacks = list(self._subscribers.get(name, ()))
        for callback in callbacks:
            self._call(callback, event)

    def _deliver_all(self, event: None) -> None:
        with self._lock:
            callbacks = [c for cs in self._subscribers.values() for c in cs]
        for callback in callbacks:
            self._call(callback, event)

    def _call(self, callback: Subscriber, event: dict[str, Any] | None) -> None:
        try:
            callback(event)
        except Exception:  # one node's failure must not stop the others' events
            log.exception("docker events: a subscriber failed on %s", event)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


_streams: dict[str, EventStream] = {}
_registry_lock = threading.Lock()


def subscribe(key: str, client_factory: Callable[[], Any], name: str,
              callback: Subscriber) -> EventStream:
    """Call `callback` with the events of container `name` on daemon `key` (starts its stream
    on first use; `client_factory` makes a Docker SDK client for it)."""
    with _registry_lock:
        stream = _streams.get(key)
        if stream is None:
            stream = _streams[key] = EventStream(key, client_factory)
            stream._add(name, callback)
            stream._thread.start()
        else:
            stream._add(name, callback)
    return stream


def unsubscribe(stream: EventStream, name: str, callback: Subscriber) -> None:
    """Stop calling `callback`; the stream's thread ends with its last subscriber."""
    with _registry_lock:
        if stream._remove(name, callback) == 0 and _streams.get(stream.key) is stream:
            del _streams[stream.key]
            stream._stop()


def active_streams() -> dict[str, EventStream]:
    """The running streams by daemon (tests check there is one per daemon)."""
    with _registry_lock:
        return dict(_streams)
