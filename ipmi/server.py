"""The IPMI UDP server: one thread, one selector (epoll), one socket and endpoint per BMC.

This is the only module of `ipmi/` that touches sockets: it reads datagrams, hands them to the
node's `BmcEndpoint` and sends back what the endpoint answers. It also sends what endpoints
have to say unasked (SOL console output, retransmissions): when an endpoint's deadline comes,
or when a console hub wakes the loop through a socketpair because new output arrived.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time

from bmc.node import Node
from ipmi.endpoint import BmcEndpoint

log = logging.getLogger(__name__)

MAX_DATAGRAM = 2048  # IPMI LAN packets are far smaller; anything bigger is not ours
SESSION_SWEEP_SECONDS = 5.0


class IpmiServer:
    def __init__(self, bindings: list[tuple[str, int, Node]]
                 | list[tuple[str, int, Node, dict[str, object]]],
                 **endpoint_options: object) -> None:
        """`bindings`: (address, port, node[, that node's BmcEndpoint options])."""
        self.bindings = bindings
        self.endpoint_options = endpoint_options
        self.endpoints: dict[int, BmcEndpoint] = {}  # fd -> endpoint
        self._sockets: list[socket.socket] = []
        self._selector: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = socket.socketpair()
        # console output for SOL arrives on other threads: they wake the loop through this
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        self._sock_of: dict[BmcEndpoint, socket.socket] = {}
        self._busy: set[BmcEndpoint] = set()  # endpoints with a deadline (active SOL)

    @property
    def ports(self) -> list[int]:
        return [s.getsockname()[1] for s in self._sockets]

    def start(self) -> None:
        """Bind every port now (so a conflict is reported here), then serve in a thread."""
        selector = selectors.DefaultSelector()
        try:
            for address, port, node, *own in self.bindings:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                self._sockets.append(sock)
                try:
                    sock.bind((address, port))
                except OSError as exc:
                    raise OSError(exc.errno,
                                  f"IPMI port {address}:{port}/udp: {exc.strerror}") from exc
                sock.setblocking(False)
                options = {**self.endpoint_options, **(own[0] if own else {})}
                endpoint = BmcEndpoint(node, local_address=sock.getsockname()[:2],
                                       **options)  # type: ignore[arg-type]
                endpoint.wakeup = self._wake
                self.endpoints[sock.fileno()] = endpoint
                self._sock_of[endpoint] = sock
                selector.register(sock, selectors.EVENT_READ, endpoint)
        except BaseException:
            selector.close()
            self._close_sockets()
            raise
        selector.register(self._stop_r, selectors.EVENT_READ, None)
        selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._selector = selector
        self._thread = threading.Thread(target=self._serve, name="ipmi-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._selector is not None
        next_sweep = time.monotonic() + SESSION_SWEEP_SECONDS
        while True:
            events = self._selector.select(self._timeout(next_sweep))
            for key, _ in events:
                endpoint = key.data
                if endpoint is None:
                    return  # stop() was called
                if endpoint is _WAKE:
                    self._woken()
                    continue
                self._drain(key.fileobj, endpoint)  # type: ignore[arg-type]
                self._flush(endpoint)  # what the datagrams started (SOL output, notices)
            now = time.monotonic()
            for endpoint in list(self._busy):
                deadline = endpoint.next_deadline()
                if deadline is None or deadline <= now:
                    self._flush(endpoint)
            if now >= next_sweep:
                next_sweep = now + SESSION_SWEEP_SECONDS
                for endpoint in self.endpoints.values():
                    endpoint.expire_sessions()

    def _timeout(self, next_sweep: float) -> float:
        deadlines = [d for d in (e.next_deadline() for e in self._busy) if d is not None]
        return max(0.0, min([next_sweep, *deadlines]) - time.monotonic())

    def _wake(self) -> None:
        """Called from console threads: new SOL output to collect."""
        if self._wake_pending:
            return
        self._wake_pending = True
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
            self._wake_w.send(b"\0")

    def _woken(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        self._wake_pending = False  # before polling: output arriving from now on wakes again
        for endpoint in self.endpoints.values():
            if endpoint.sol.payload is not None:
                self._flush(endpoint)

    def _flush(self, endpoint: BmcEndpoint) -> None:
        """Send what `endpoint` has to send now; keep it in `_busy` while it has a deadline."""
        sock = self._sock_of[endpoint]
        for peer, data in endpoint.poll():
            try:
                sock.sendto(data, peer)
            except OSError as exc:
                log.debug("send to %s failed: %s", peer, exc)
        if endpoint.next_deadline() is None:
            self._busy.discard(endpoint)
        else:
            self._busy.add(endpoint)

    @staticmethod
    def _drain(sock: socket.socket, endpoint: BmcEndpoint) -> None:
        # read until the socket is empty: one wake-up may cover several datagrams
        for _ in range(64):
            try:
                data, peer = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP port unreachable from a vanished client
                log.debug("recv error: %s", exc)
                continue
            reply = endpoint.datagram_received(data, peer)
            if reply is not None:
                try:
                    sock.sendto(reply, peer)
                except OSError as exc:
                    log.debug("send to %s failed: %s", peer, exc)

    def stop(self) -> None:
        if self._thread is not None:
            self._stop_w.send(b"x")
            self._thread.join(timeout=5)
            self._thread = None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        self._close_sockets()

    def _close_sockets(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.close()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        self.endpoints.clear()
        self._sock_of.clear()
        self._busy.clear()


#: the selector key data of the wake-up socket
_WAKE = object()
