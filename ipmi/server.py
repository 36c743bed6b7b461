"""The IPMI UDP server: one thread, one selector (epoll), one socket and endpoint per BMC.

This is the only module of `ipmi/` that touches sockets: it reads datagrams, hands them to the
node's `BmcEndpoint` and sends back what the endpoint answers.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading

from bmc.node import Node
from ipmi.endpoint import BmcEndpoint

log = logging.getLogger(__name__)

MAX_DATAGRAM = 2048  # IPMI LAN packets are far smaller; anything bigger is not ours
SESSION_SWEEP_SECONDS = 5.0


class IpmiServer:
    def __init__(self, bindings: list[tuple[str, int, Node]], **endpoint_options: object) -> None:
        self.bindings = bindings
        self.endpoint_options = endpoint_options
        self.endpoints: dict[int, BmcEndpoint] = {}  # fd -> endpoint
        self._sockets: list[socket.socket] = []
        self._selector: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = socket.socketpair()

    @property
    def ports(self) -> list[int]:
        return [s.getsockname()[1] for s in self._sockets]

    def start(self) -> None:
        """Bind every port now (so a conflict is reported here), then serve in a thread."""
        selector = selectors.DefaultSelector()
        try:
            for address, port, node in self.bindings:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_DGRAM)
                self._sockets.append(sock)
                try:
                    sock.bind((address, port))
                except OSError as exc:
                    raise OSError(exc.errno,
                                  f"IPMI port {address}:{port}/udp: {exc.strerror}") from exc
                sock.setblocking(False)
                endpoint = BmcEndpoint(node, **self.endpoint_options)  # type: ignore[arg-type]
                self.endpoints[sock.fileno()] = endpoint
                selector.register(sock, selectors.EVENT_READ, endpoint)
        except BaseException:
            selector.close()
            self._close_sockets()
            raise
        selector.register(self._stop_r, selectors.EVENT_READ, None)
        self._selector = selector
        self._thread = threading.Thread(target=self._serve, name="ipmi-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._selector is not None
        while True:
            events = self._selector.select(SESSION_SWEEP_SECONDS)
            for key, _ in events:
                endpoint: BmcEndpoint | None = key.data
                if endpoint is None:
                    return  # stop() was called
                self._drain(key.fileobj, endpoint)  # type: ignore[arg-type]
            if not events:
                for endpoint in self.endpoints.values():
                    endpoint.expire_sessions()

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
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        self.endpoints.clear()
