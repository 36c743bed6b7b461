"""A libvirt domain's serial console: a non-blocking `virDomainOpenConsole` stream.

The stream lives on the process's libvirt event loop: its READABLE callback reads what is there
and hands it to the console hub's output callback (which never blocks); typed input is sent at
once, and what the stream cannot take now waits in a bounded buffer that a WRITABLE callback
flushes. Nothing here blocks the caller or the loop. The stream ends when the domain stops (or
someone else takes the console over with `virsh console --force`); the backend opens a new one
after every start.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: typed input waiting for the stream, at most (more is dropped, as a UART's FIFO would)
INPUT_LIMIT = 64 * 1024
READ_SIZE = 64 * 1024


class StreamConsole:
    """The serial console of one domain. Thread-safe."""

    def __init__(self, lv: Any, name: str, defer: Callable[[Callable[[], None]], None]) -> None:
        self.lv = lv
        self.name = name
        #: runs cleanup off the event loop (aborting a remote stream talks to libvirtd)
        self._defer = defer
        self._lock = threading.Lock()
        self._stream: Any = None
        self._pending = bytearray()
        self._writable_wanted = False
        self.output: Callable[[bytes], None] | None = None

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    def open(self, conn: Any, dom: Any) -> None:
        """Open (or reopen) the console of running domain `dom` (libvirtError if it cannot)."""
        lv = self.lv
        self.close()
        stream = conn.newStream(lv.VIR_STREAM_NONBLOCK)
        try:
            # FORCE: the BMC owns the serial port, as on real hardware (a `virsh console`
            # session is cut off); the devname None is the domain's first console
            dom.openConsole(None, stream, lv.VIR_DOMAIN_CONSOLE_FORCE)
            stream.eventAddCallback(self._events(readable=True), self._on_event, None)
        except Exception:
            _quietly(stream.abort)
            raise
        with self._lock:
            self._stream = stream
            self._pending.clear()
            self._writable_wanted = False
        log.debug("%s: serial console stream open", self.name)

    def write(self, data: bytes) -> None:
        """Type `data`; dropped while no stream is open. Never blocks."""
        with self._lock:
            if self._stream is None:
                return
            room = INPUT_LIMIT - len(self._pending)
            if len(data) > room:
                log.warning("%s: console input buffer full, %d bytes dropped", self.name,
                            len(data) - room)
                data = data[:room]
            self._pending += data
            self._flush_locked()

    def close(self) -> None:
        with self._lock:
            stream, self._stream = self._stream, None
            self._pending.clear()
        if stream is not None:
            self._finish(stream)

    # -- on the event loop ----------------------------------------------------------------------
    def _events(self, readable: bool = True, writable: bool = False) -> int:
        lv = self.lv
        mask = lv.VIR_STREAM_EVENT_ERROR | lv.VIR_STREAM_EVENT_HANGUP
        if readable:
            mask |= lv.VIR_STREAM_EVENT_READABLE
        if writable:
            mask |= lv.VIR_STREAM_EVENT_WRITABLE
        return mask

    def _on_event(self, stream: Any, events: int, _opaque: Any) -> None:
        lv = self.lv
        if stream is not self._stream:
            return  # an old stream's last callback
        if events & lv.VIR_STREAM_EVENT_READABLE and not self._read(stream):
            return
        if events & lv.VIR_STREAM_EVENT_WRITABLE:
            with self._lock:
                if stream is self._stream:
                    self._flush_locked()
        if events & (lv.VIR_STREAM_EVENT_ERROR | lv.VIR_STREAM_EVENT_HANGUP):
            self._ended(stream, "hung up")

    def _read(self, stream: Any) -> bool:
        """Read all there is; False if the stream ended."""
        for _ in range(64):  # bounded: let other streams and events have the loop too
            try:
                data = stream.recv(READ_SIZE)
            except self.lv.libvirtError as exc:
                self._ended(stream, exc.get_error_message())
                return False
            if data == -2:  # nothing more now (EAGAIN)
                return True
            if not data:
                self._ended(stream, "end of stream")
                return False
            output = self.output
            if output is not None:
                output(bytes(data))
        return True

    def _flush_locked(self) -> None:
        stream = self._stream
        while self._pending and stream is not None:
            try:
                sent = stream.send(bytes(self._pending[:READ_SIZE]))
            except self.lv.libvirtError as exc:
                log.debug("%s: console write failed: %s", self.name, exc.get_error_message())
                self._pending.clear()
                return
            if sent == -2 or sent == 0:  # the stream is full: wait until it is writable
                break
            del self._pending[:sent]
        wanted = bool(self._pending)
        if wanted != self._writable_wanted and stream is not None:
            self._writable_wanted = wanted
            _quietly(stream.eventUpdateCallback, self._events(writable=wanted))

    def _ended(self, stream: Any, why: str) -> None:
        with self._lock:
            if stream is not self._stream:
                return
            self._stream = None
            self._pending.clear()
        log.debug("%s: serial console stream ended (%s)", self.name, why)
        self._finish(stream)

    def _finish(self, stream: Any) -> None:
        _quietly(stream.eventRemoveCallback)
        self._defer(lambda: _quietly(stream.abort))


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(Exception):  # the stream is gone already
        fn(*args)
