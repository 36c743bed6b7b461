"""TLS inside waitress's own connections (waitress itself has none).

`TlsChannel` is mixed into waitress's HTTPChannel (redfish/server.py). It reads the socket
itself, runs TLS through an `ssl.SSLObject` on memory buffers, and hands waitress the plain
bytes, so TLS costs no thread, no extra socket and no proxy hop: one poll loop still serves
every BMC, on their own ports or on their own addresses of one shared port.

The first byte a client sends tells what it speaks (a TLS handshake starts with 0x16; an HTTP
request with a letter):
- on an HTTPS port, a plain HTTP request is parsed as usual and answered by the server with a
  redirect to https:// (or a 400 saying to use it) instead of waiting for a handshake;
- on a plain port, a TLS handshake is closed at once (the client reports a TLS error at once,
  never waits for a timeout).

Threads: waitress's worker threads also flush output (`write_soon`, holding the channel's
outbuf lock) while the loop thread reads; an SSLObject must not be used by two threads at once,
so every use of it is under `_tls_lock` (always taken after the outbuf lock, never before).
"""

from __future__ import annotations

import errno
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

TLS_HANDSHAKE = 0x16  # TLS record type "handshake": the first byte of every ClientHello
_WOULD_BLOCK = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
#: how long a closing connection may still try to send its last encrypted bytes
_CLOSE_GRACE = 5.0


class TlsChannel:
    """Mixin for waitress's HTTPChannel: TLS on memory BIOs, protocol sniffing, no threads."""

    #: makes the node's server context (None: the port speaks plain HTTP); set by the server
    tls_context: Callable[[], ssl.SSLContext] | None = None
    #: how the server answers plain HTTP on this HTTPS port: "redirect" or "refuse"
    http_on_tls = "redirect"
    #: a plain-HTTP request arrived on an HTTPS port: `http_on_tls`, else "" (false)
    plain_on_tls = ""
    _sniffed = False
    _tls: ssl.SSLObject | None = None
    _handshaken = False
    _close_by: float | None = None

    # attributes of waitress's channel this mixin uses
    socket: Any
    adj: Any
    addr: Any
    last_activity: float

    @property
    def secure(self) -> bool:
        return self._tls is not None

    # -- reading --------------------------------------------------------------------------------
    def handle_read(self) -> None:
        if self._sniffed and self._tls is None:
            super().handle_read()  # type: ignore[misc]  # plain HTTP: waitress as it is
            return
        try:
            raw = self.socket.recv(self.adj.recv_bytes)
        except OSError as exc:
            if exc.errno not in _WOULD_BLOCK:
                self.handle_close()
            return
        if not raw:
            self.handle_close()
            return
        if not self._sniffed:
            self._sniffed = True
            hello = raw[0] == TLS_HANDSHAKE
            if self.tls_context is None or not hello:
                if hello:  # TLS on the plain-HTTP port: say no at once
                    log.debug("TLS handshake from %s on a plain-HTTP port: closed", self._peer())
                    self.close()  # type: ignore[attr-defined]
                    return
                self.plain_on_tls = self.http_on_tls if self.tls_context is not None else ""
                self._received(raw)
                return
            if not self._start_tls():
                return
        plain = self._decrypt(raw)
        if plain:
            self._received(plain)

    def _received(self, data: bytes) -> None:
        self.last_activity = time.time()
        self.received(data)  # type: ignore[attr-defined]

    def _start_tls(self) -> bool:
        assert self.tls_context is not None
        try:
            context = self.tls_context()
        except Exception:  # a certificate that cannot be made: logged once per connection
            log.exception("Redfish TLS: no certificate for a connection from %s", self._peer())
            self.close()  # type: ignore[attr-defined]
            return False
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=True)
        self._tls_lock = threading.Lock()
        self._raw_out = bytearray()
        return True

    def _decrypt(self, raw: bytes) -> bytes:
        """Feed `raw` to TLS; the application bytes it yields (handshake replies are sent)."""
        tls = self._tls
        assert tls is not None
        chunks: list[bytes] = []
        failed: ssl.SSLError | None = None
        ended = False
        with self._tls_lock:
            self._in.write(raw)
            try:
                if not self._handshaken:
                    tls.do_handshake()
                    self._handshaken = True
                while True:
                    chunk = tls.read(self.adj.recv_bytes)
                    if not chunk:
                        break
                    chunks.append(chunk)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:  # the client's close_notify
                ended = True
            except ssl.SSLError as exc:
                failed = exc
            self._raw_out += self._out.read()
            self._send_raw()
        if failed is not None:
            # a client that does not trust the certificate, or speaks no shared TLS version:
            # its alert is on its way; a debug line, not an error (scanners do this all day)
            log.debug("Redfish TLS from %s failed: %s", self._peer(),
                      failed.reason or failed)
            self.handle_close()
            return b""
        if ended and not chunks:
            self.handle_close()
        return b"".join(chunks)

    # -- writing --------------------------------------------------------------------------------
    def send(self, data: bytes, do_close: bool = True) -> int:
        """waitress's send: on TLS, encrypt and send; 0 while earlier records still wait."""
        tls = self._tls
        if tls is None:
            return super().send(data, do_close)  # type: ignore[misc, no-any-return]
        with self._tls_lock:
            if self._raw_out:
                self._send_raw()
                if self._raw_out:
                    return 0  # the socket is full: waitress keeps the data and tries later
            try:
                sent = tls.write(data)
            except ssl.SSLError as exc:
                log.debug("Redfish TLS to %s failed: %s", self._peer(), exc)
                self._raw_out.clear()
                sent = 0
            else:
                self._raw_out += self._out.read()
                self._send_raw()
        if not sent and do_close:
            self.handle_close()
        return sent

    def _send_raw(self) -> None:
        """Send what TLS produced, as much as the socket takes (under `_tls_lock`)."""
        while self._raw_out:
            try:
                sent = self.socket.send(self._raw_out)
            except OSError as exc:
                if exc.errno not in _WOULD_BLOCK:
                    self._raw_out.clear()  # the peer is gone: nothing more can reach it
                return
            if not sent:
                return
            del self._raw_out[:sent]

    def writable(self) -> bool:
        return bool(self._tls is not None and self._raw_out) or bool(
            super().writable())  # type: ignore[misc]

    def handle_write(self) -> None:
        if self._tls is not None and self._raw_out:
            with self._tls_lock:
                self._send_raw()
                pending = bool(self._raw_out)
            if pending:
                if self._close_by is not None and time.monotonic() > self._close_by:
                    self.close()  # type: ignore[attr-defined]
                return
            if self._close_by is not None:  # the last bytes of a closing connection are out
                self.close()  # type: ignore[attr-defined]
                return
        super().handle_write()  # type: ignore[misc]

    def handle_close(self) -> None:
        # waitress closes right after its last send; TLS may still hold that send's records
        # (the socket was full): let them go first, for a while
        if self._tls is not None and self._raw_out and self.socket is not None:
            with self._tls_lock:
                self._send_raw()
                pending = bool(self._raw_out)
            if pending:
                if self._close_by is None:
                    self._close_by = time.monotonic() + _CLOSE_GRACE
                    return
                if time.monotonic() <= self._close_by:
                    return
        super().handle_close()  # type: ignore[misc]

    def _peer(self) -> str:
        return str(self.addr[0]) if isinstance(self.addr, tuple) and self.addr else "?"
