"""A container's serial console: one `docker attach` connection, read and written by a thread.

The attach connection is a hijacked HTTP socket: raw bytes both ways for a container with a
TTY, Docker's multiplexed frames (8-byte header: stream, 0, 0, 0, big-endian length) from one
without. One thread per attachment waits on the socket and a wake-up pipe: it passes output on
and writes queued input when the socket can take it, so `write` never blocks (input beyond
`INPUT_LIMIT` unsent bytes is dropped, as a UART drops what nobody reads). The attachment ends
when the container stops (EOF); the backend attaches again before the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

INPUT_LIMIT = 64 * 1024
READ_SIZE = 65536
HEADER = 8


class ContainerConsole:
    """One attachment; `output` gets the container's output (from this object's thread)."""

    def __init__(self, attach_socket: Any, *, tty: bool, output: Callable[[bytes], None],
                 name: str = "") -> None:
        self._io = attach_socket  # keep the SDK's object (and its HTTP response) alive
        self._sock: socket.socket = getattr(attach_socket, "_sock", attach_socket)
        self._sock.setblocking(False)
        self._tty = tty
        self._output = output
        self._name = name
        self._lock = threading.Lock()
        self._pending = bytearray()
        self._frames = bytearray()
        self._closing = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"console-{name}")
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def write(self, data: bytes) -> None:
        """Queue `data` for the container's stdin (never blocks)."""
        with self._lock:
            if self._closing or self._wake_w < 0:
                return
            room = INPUT_LIMIT - len(self._pending)
            if room < len(data):
                log.debug("%s: console input dropped (the container is not reading)",
                          self._name)
            self._pending += data[:max(room, 0)]
            self._wake()

    def close(self, timeout: float = 2.0) -> None:
        with self._lock:
            self._closing = True
            self._wake()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _wake(self) -> None:  # with self._lock held
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):  # full: a wake-up is pending already
                os.write(self._wake_w, b"x")

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closing:
                        return
                    want_write = bool(self._pending)
                readable, writable, _ = select.select(
                    [self._sock, self._wake_r], [self._sock] if want_write else [], [], 5.0)
                if self._wake_r in readable:
                    with contextlib.suppress(OSError):
                        while os.read(self._wake_r, 4096):
                            pass
                if self._sock in readable and not self._read():
                    return  # EOF: the container stopped
                if self._sock in writable:
                    self._flush()
        except OSError as exc:
            log.debug("%s: console connection lost: %s", self._name, exc)
        finally:
            self._shutdown()

    def _read(self) -> bool:
        """Read what is there; False at end of stream."""
        while True:
            try:
                data = self._sock.recv(READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return True
            if not data:
                return False
            self._deliver(data)
            # TLS: decrypted bytes may wait inside the SSL object, invisible to select()
            if not (isinstance(self._sock, ssl.SSLSocket) and self._sock.pending()):
                return True

    def _flush(self) -> None:
        with self._lock:
            chunk = bytes(self._pending[:READ_SIZE])
        try:
            sent = self._sock.send(chunk)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        with self._lock:
            del self._pending[:sent]

    def _deliver(self, data: bytes) -> None:
        if self._tty:
            self._emit(data)
            return
        self._frames += data  # stdout/stderr frames: the header says which and how long
        while len(self._frames) >= HEADER:
            size = int.from_bytes(self._frames[4:HEADER], "big")
            if len(self._frames) < HEADER + size:
                break
            payload = bytes(self._frames[HEADER:HEADER + size])
            del self._frames[:HEADER + size]
            if payload:
                self._emit(payload)

    def _emit(self, data: bytes) -> None:
        try:
            self._output(data)
        except Exception:  # a viewer's bug must not end the console
            log.exception("%s: console output callback failed", self._name)

    def _shutdown(self) -> None:
        with self._lock:
            self._closing = True
            fds = (self._wake_r, self._wake_w)
            self._wake_r = self._wake_w = -1
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(Exception):
            self._io.close()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
