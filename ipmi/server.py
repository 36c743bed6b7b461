"""The IPMI UDP server: one thread, one selector (epoll), one endpoint per BMC.

This is the only module of `ipmi/` that touches sockets: it reads datagrams, hands them to the
node's `BmcEndpoint` and sends back what the endpoint answers. It also sends what endpoints
have to say unasked (SOL console output, retransmissions): when an endpoint's deadline comes,
or when a console hub wakes the loop through a socketpair because new output arrived.

Sockets: a BMC on a port of its own has a socket of its own. BMCs that share a port on their
own IPv4 addresses (`--address-base`: every BMC at its own address, port 623, as on a real
network) share one socket bound to the wildcard address on that port: the kernel tells each
datagram's destination address (IP_PKTINFO), which decides the BMC, and the reply is sent
from that address. 10,000 BMCs then cost one descriptor, not 10,000; datagrams to an
address that is no BMC's are dropped.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import selectors
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from bmc.node import Node
from ipmi.endpoint import BmcEndpoint

log = logging.getLogger(__name__)

MAX_DATAGRAM = 2048  # IPMI LAN packets are far smaller; anything bigger is not ours
SESSION_SWEEP_SECONDS = 5.0
#: Linux's IP_PKTINFO (Python's socket module lacks the name): struct in_pktinfo
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_PKTINFO = struct.Struct("=i4s4s")  # ifindex, spec_dst (source to use), addr (destination)
_CMSG_SPACE = socket.CMSG_SPACE(_PKTINFO.size)
#: datagrams one node may have held by injected latency (bmc/faults.py) before more are dropped
MAX_HELD = 64


class _SharedPort:
    """One wildcard socket serving the BMCs of many IPv4 addresses on one port."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.by_address: dict[bytes, BmcEndpoint] = {}  # packed IPv4 destination -> BMC


def _shared_groups(bindings: list[tuple]) -> dict[int, list[int]]:
    """port -> indexes of the bindings that share it on distinct IPv4 host addresses."""
    by_port: dict[int, list[int]] = defaultdict(list)
    for index, (address, port, *_rest) in enumerate(bindings):
        if port and ":" not in address and address not in ("0.0.0.0", ""):
            by_port[port].append(index)
    return {port: indexes for port, indexes in by_port.items() if len(indexes) > 1}


class IpmiServer:
    def __init__(self, bindings: list[tuple[str, int, Node]]
                 | list[tuple[str, int, Node, dict[str, object]]],
                 **endpoint_options: object) -> None:
        """`bindings`: (address, port, node[, that node's BmcEndpoint options])."""
        self.bindings = bindings
        self.endpoint_options = endpoint_options
        self.endpoints: list[BmcEndpoint] = []  # in binding order
        self._ports: list[int] = []  # in binding order
        self._sockets: list[socket.socket] = []
        self._selector: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = socket.socketpair()
        # console output for SOL arrives on other threads: they wake the loop through this
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wake_pending = False
        self._calls: list[tuple[Future[Any], Callable[[], Any]]] = []  # for the loop thread
        self._calls_lock = threading.Lock()
        self._shared: dict[int, _SharedPort] = {}  # port -> its shared socket
        # where an endpoint's datagrams go out: its socket, and the source address to send
        # from when the socket is shared (None: the socket's own)
        self._route: dict[BmcEndpoint, tuple[socket.socket, bytes | None]] = {}
        self._busy: set[BmcEndpoint] = set()  # endpoints with a deadline (active SOL)
        # datagrams held by injected latency: (due, order, endpoint, data, peer), soonest
        # first; the loop handles them when due, never sleeping on one node's behalf
        self._held: list[tuple[float, int, BmcEndpoint, bytes, tuple]] = []
        self._held_count: dict[BmcEndpoint, int] = defaultdict(int)
        self._held_order = itertools.count()

    @property
    def ports(self) -> list[int]:
        """The bound port of each binding, in binding order."""
        return list(self._ports)

    def start(self) -> None:
        """Bind every port now (so a conflict is reported here), then serve in a thread."""
        selector = selectors.DefaultSelector()
        self._selector = selector
        try:
            shared = _shared_groups(self.bindings)
            for port in shared:
                self._share(port)
            for address, port, node, *own in self.bindings:
                self._serve_node(address, port, node, own[0] if own else {})
        except BaseException:
            selector.close()
            self._selector = None
            self._close_sockets()
            raise
        selector.register(self._stop_r, selectors.EVENT_READ, None)
        selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._thread = threading.Thread(target=self._serve, name="ipmi-server", daemon=True)
        self._thread.start()

    def _share(self, port: int) -> _SharedPort:
        """The wildcard socket of a port that BMCs share on their own addresses."""
        assert self._selector is not None
        sock = self._bind("0.0.0.0", port, socket.AF_INET)
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        shared = self._shared[port] = _SharedPort(sock)
        self._selector.register(sock, selectors.EVENT_READ, shared)
        return shared

    def _serve_node(self, address: str, port: int, node: Node,
                    options: dict[str, object]) -> BmcEndpoint:
        """Start serving `node`: on its port's shared socket, or on a socket of its own."""
        assert self._selector is not None
        options = {**self.endpoint_options, **options}
        shared = self._shared.get(port) if ":" not in address else None
        if shared is not None:
            packed = socket.inet_aton(address)
            if packed in shared.by_address:
                raise OSError(98, f"IPMI port {address}:{port}/udp: Address already in use")
            endpoint = BmcEndpoint(node, local_address=(address, port),
                                   **options)  # type: ignore[arg-type]
            shared.by_address[packed] = endpoint
            self._route[endpoint] = (shared.sock, packed)
        else:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = self._bind(address, port, family)
            endpoint = BmcEndpoint(node, local_address=sock.getsockname()[:2],
                                   **options)  # type: ignore[arg-type]
            self._route[endpoint] = (sock, None)
            self._selector.register(sock, selectors.EVENT_READ, endpoint)
            port = sock.getsockname()[1]
        endpoint.wakeup = self._wake
        self.endpoints.append(endpoint)
        self._ports.append(port)
        return endpoint

    # -- nodes added and removed while serving --------------------------------------------------
    def add(self, address: str, port: int, node: Node,
            options: dict[str, object] | None = None, timeout: float = 5.0) -> int:
        """Serve one more node (from any thread); its bound port. OSError if it cannot bind."""
        return self._on_loop(lambda: self._ports[self.endpoints.index(
            self._serve_node(address, port, node, options or {}))], timeout)

    def remove(self, node: Node, timeout: float = 5.0) -> bool:
        """Stop serving `node`: its sessions end, its socket (if its own) closes."""
        return self._on_loop(lambda: self._drop(node), timeout)

    def _drop(self, node: Node) -> bool:
        assert self._selector is not None
        index = next((i for i, e in enumerate(self.endpoints) if e.node is node), None)
        if index is None:
            return False
        endpoint = self.endpoints.pop(index)
        del self._ports[index]
        self._busy.discard(endpoint)
        sock, source = self._route.pop(endpoint)
        endpoint.close()
        if source is None:  # its own socket
            self._selector.unregister(sock)
            self._sockets.remove(sock)
            sock.close()
        else:
            shared = next(p for p in self._shared.values() if p.sock is sock)
            del shared.by_address[source]
        return True

    def _on_loop(self, call: Callable[[], Any], timeout: float) -> Any:
        """Run `call` on the server's thread (it owns the sockets) and return its result."""
        if self._thread is None or threading.current_thread() is self._thread:
            return call()
        future: Future[Any] = Future()
        with self._calls_lock:
            self._calls.append((future, call))
        self._wake_pending = False  # make sure this wake-up is sent
        self._wake()
        return future.result(timeout)

    def _run_calls(self) -> None:
        with self._calls_lock:
            calls, self._calls = self._calls, []
        for future, call in calls:
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)

    def _bind(self, address: str, port: int, family: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sockets.append(sock)
        try:
            sock.bind((address, port))
        except OSError as exc:
            raise OSError(exc.errno,
                          f"IPMI port {address}:{port}/udp: {exc.strerror}") from exc
        sock.setblocking(False)
        return sock

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
                if isinstance(endpoint, _SharedPort):
                    for served in self._drain_shared(endpoint):
                        self._flush(served)
                    continue
                self._drain(key.fileobj, endpoint)  # type: ignore[arg-type]
                self._flush(endpoint)  # what the datagrams started (SOL output, notices)
            now = time.monotonic()
            if self._held and self._held[0][0] <= now:
                self._release_held(now)
            for endpoint in list(self._busy):
                deadline = endpoint.next_deadline()
                if deadline is None or deadline <= now:
                    self._flush(endpoint)
            if now >= next_sweep:
                next_sweep = now + SESSION_SWEEP_SECONDS
                for endpoint in self.endpoints:
                    endpoint.expire_sessions()

    def _timeout(self, next_sweep: float) -> float:
        deadlines = [d for d in (e.next_deadline() for e in self._busy) if d is not None]
        if self._held:
            deadlines.append(self._held[0][0])
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
        self._run_calls()
        for endpoint in self.endpoints:
            if endpoint.sol.payload is not None:
                self._flush(endpoint)

    def _flush(self, endpoint: BmcEndpoint) -> None:
        """Send what `endpoint` has to send now; keep it in `_busy` while it has a deadline."""
        for peer, data in endpoint.poll():
            self._send(endpoint, data, peer)
        if endpoint.next_deadline() is None:
            self._busy.discard(endpoint)
        else:
            self._busy.add(endpoint)

    def _send(self, endpoint: BmcEndpoint, data: bytes, peer: tuple) -> None:
        faults = endpoint.node.faults
        if faults is not None and faults.unreachable():
            return  # an unreachable BMC sends nothing either (SOL output, late replies)
        sock, source = self._route[endpoint]
        try:
            if source is None:
                sock.sendto(data, peer)
            else:  # from the BMC's own address, whatever the kernel would pick
                info = _PKTINFO.pack(0, source, b"\0\0\0\0")
                sock.sendmsg([data], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, peer)
        except OSError as exc:
            log.debug("send to %s failed: %s", peer, exc)

    def _drain(self, sock: socket.socket, endpoint: BmcEndpoint) -> None:
        # read until the socket is empty: one wake-up may cover several datagrams
        for _ in range(64):
            try:
                data, peer = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP port unreachable from a vanished client
                log.debug("recv error: %s", exc)
                continue
            self._receive(endpoint, data, peer)

    def _receive(self, endpoint: BmcEndpoint, data: bytes, peer: tuple) -> None:
        """Handle one datagram and send its reply, unless injected faults drop or hold it."""
        faults = endpoint.node.faults
        if faults is not None:
            delay = faults.ipmi_datagram()
            if delay is None:
                return  # dropped, as a lossy (or unreachable) network would
            if delay > 0:
                if self._held_count[endpoint] >= MAX_HELD:
                    faults.ipmi_held_over()
                    return
                self._held_count[endpoint] += 1
                heapq.heappush(self._held, (time.monotonic() + delay, next(self._held_order),
                                            endpoint, data, peer))
                return
        reply = endpoint.datagram_received(data, peer)
        if reply is not None:
            self._send(endpoint, reply, peer)

    def _release_held(self, now: float) -> None:
        """Handle the held datagrams that are due (their node may be gone meanwhile)."""
        served: set[BmcEndpoint] = set()
        while self._held and self._held[0][0] <= now:
            _due, _order, endpoint, data, peer = heapq.heappop(self._held)
            left = self._held_count.pop(endpoint, 1) - 1
            if left:
                self._held_count[endpoint] = left
            if endpoint not in self._route:
                continue  # removed while its datagram was held
            reply = endpoint.datagram_received(data, peer)
            if reply is not None:
                self._send(endpoint, reply, peer)
            served.add(endpoint)
        for endpoint in served:
            self._flush(endpoint)

    def _drain_shared(self, port: _SharedPort) -> set[BmcEndpoint]:
        """Read a shared socket until empty; the endpoints that got datagrams."""
        served: set[BmcEndpoint] = set()
        for _ in range(256):
            try:
                data, ancillary, _flags, peer = port.sock.recvmsg(MAX_DATAGRAM, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("recv error: %s", exc)
                continue
            endpoint = None
            for level, kind, info in ancillary:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO \
                        and len(info) >= _PKTINFO.size:
                    endpoint = port.by_address.get(_PKTINFO.unpack_from(info)[2])
            if endpoint is None:
                continue  # to an address of this host that is no BMC's
            served.add(endpoint)
            self._receive(endpoint, data, peer)
        return served

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
        for endpoint in self.endpoints:
            endpoint.close()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        self.endpoints.clear()
        self._ports.clear()
        self._route.clear()
        self._shared.clear()
        self._busy.clear()
        self._held.clear()
        self._held_count.clear()


#: the selector key data of the wake-up socket
_WAKE = object()
