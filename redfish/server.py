"""`RedfishServer`: every BMC's Redfish service in one waitress server.

Each binding (addr, port, node) on a port of its own gets its own listening socket; all of
them feed one waitress server (one poll() loop, one worker pool) and one Flask app. Which node
a request is for is decided by the socket it arrived on: after waitress has built one listener
per socket, each listener's WSGI application is wrapped so it stamps its node into the environ
before the shared app runs.

BMCs that share a port on their own IPv4 addresses (`--address-base`, one address per BMC as
on a real network) share one listening socket on the wildcard address: the local address of
each accepted connection decides the node (waitress's SERVER_PORT alone could not tell
10.0.0.1:443 from 10.0.0.2:443). 10,000 BMCs then cost one listening descriptor, not 10,000;
a connection to an address that is no BMC's gets a 404.

Flask and waitress are imported in `start()`, so importing this module costs next to nothing.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redfish import LOCAL_ADDRESS_KEY, NODE_ENVIRON_KEY
from redfish.tls import TlsContexts, TlsSettings, default_directory
from redfish.tls_channel import TlsChannel

if TYPE_CHECKING:
    from bmc.node import Node

log = logging.getLogger(__name__)

#: waitress buffers bodies up to this; the app refuses >1 MiB itself (with a Redfish body), so
#: only grossly oversized uploads get waitress's plain-text 413
_WAITRESS_MAX_BODY = 2 * 1024 * 1024
_BACKLOG = 128



class _AddressBinder:
    """WSGI wrapper of a shared listener: the connection's local address decides the node."""

    def __init__(self, app: Callable[..., Iterable[bytes]], nodes: dict[str, Node]) -> None:
        self.app = app
        self.nodes = nodes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        node = self.nodes.get(environ.get(LOCAL_ADDRESS_KEY, ""))
        if node is None:
            start_response("404 Not Found", [("Content-Type", "text/plain"),
                                             ("Content-Length", "19")])
            return [b"no BMC at this host"]
        if environ.get(PLAIN_ON_TLS_KEY):
            return _use_https(environ, start_response)
        environ[NODE_ENVIRON_KEY] = node
        return self.app(environ, start_response)


def shared_ports(bindings: list[tuple[str, int, Node]]) -> dict[int, list[int]]:
    """port -> indexes of the bindings that share it on distinct IPv4 host addresses."""
    by_port: dict[int, list[int]] = {}
    for index, (address, port, _node) in enumerate(bindings):
        if port and ":" not in address and address not in ("0.0.0.0", ""):
            by_port.setdefault(port, []).append(index)
    return {port: indexes for port, indexes in by_port.items() if len(indexes) > 1}


class _NodeBinder:
    """WSGI wrapper of one listener: requests it accepted are for `node`."""

    def __init__(self, app: Callable[..., Iterable[bytes]], node: Node) -> None:
        self.app = app
        self.node = node

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        if environ.get(PLAIN_ON_TLS_KEY):
            return _use_https(environ, start_response)
        environ[NODE_ENVIRON_KEY] = self.node
        return self.app(environ, start_response)


#: environ key: the request came in plain HTTP on an HTTPS port (value: redirect it?)
PLAIN_ON_TLS_KEY = "bmc_emulator.plain_on_tls"
_REDIRECT = "redirect"


def _use_https(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A plain-HTTP request on an HTTPS port: a 308 to the same URL on https://, or a 400.

    308 (not 301) so that a POST stays a POST with its body, as RFC 9110 says.
    """
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    path = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
    if environ[PLAIN_ON_TLS_KEY] == _REDIRECT and host and path.startswith("/"):
        location = f"https://{host}{path}"
        body = b"This BMC speaks HTTPS: " + location.encode("latin-1", "replace") + b"\n"
        status, headers = "308 Permanent Redirect", [("Location", location)]
    else:
        body = b"This port speaks HTTPS only: use https://\n"
        status, headers = "400 Bad Request", []
    start_response(status, [*headers, ("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _where(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _listen(addr: str, port: int) -> socket.socket:
    """A bound, listening TCP socket, or an OSError saying which port and why."""
    where = _where(addr, port)
    try:
        infos = socket.getaddrinfo(addr or "0.0.0.0", port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(exc.errno, f"Redfish address {where} cannot be resolved: {exc.strerror}"
                      ) from exc
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        # lets a restarted emulator take its ports back while old connections sit in TIME_WAIT;
        # on Linux it does not allow two listeners on one port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        # listen now, not in waitress: a port given twice must fail here, with its name
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = f"Redfish port {where} is in use"
        elif exc.errno == errno.EACCES:
            message = (f"Redfish port {where}: permission denied (ports below 1024 need root "
                       "or CAP_NET_BIND_SERVICE)")
        elif exc.errno == errno.EADDRNOTAVAIL:
            message = f"Redfish address {where} is not an address of this host"
        else:
            message = f"Redfish port {where}: {exc.strerror}"
        raise OSError(exc.errno, message) from exc
    return sock


def _raise_fd_limit(wanted: int) -> None:
    """Best effort: 1,000 BMCs need several thousand descriptors, above the usual soft 1,024."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit to %d: %s", new, exc)


def _connection_limit(bmcs: int) -> int:
    """waitress's cap on its map (listeners and the wake-up pipe count as connections too).

    When it is reached waitress stops accepting on *every* listener, so it is set as high as
    the open files allow: the per-node and per-client caps (`ConnectionCaps`) are what stop a
    flood, and they stop it at its own node.
    """
    wanted = bmcs + 1 + max(100, 2 * bmcs, PER_NODE_CONNECTIONS * min(bmcs, 64))
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError):  # pragma: no cover - not POSIX
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(bmcs + 101, min(wanted, soft - bmcs - 256))


#: open connections one node takes at most, and one client address to one node: an idle
#: flood against one BMC fills its own share, never another node's, and one client cannot
#: take a node's whole share (a fleet manager holding a connection to each of 10,000 BMCs
#: from one address is fine: the client cap is per node). Past a cap the oldest idle
#: connection of that share makes room.
PER_NODE_CONNECTIONS = 64
PER_CLIENT_CONNECTIONS = 16
#: seconds an idle connection (no request under way) is kept: waitress's 120 s let ~100 idle
#: sockets hold the service
IDLE_SECONDS = 15
CLEANUP_SECONDS = 3
#: a connection opened or used this recently is not taken for idle when room is needed
FRESH_SECONDS = 0.5


class ConnectionCaps:
    """Open connections per node and per (node, client); past a cap, the oldest idle one of
    that share is closed to make room (a client that leaks idle connections loses its own,
    never another's), and only when none is idle is the new one refused.

    Only the server's loop thread opens and closes channels, so no lock is needed."""

    def __init__(self, per_node: int = PER_NODE_CONNECTIONS,
                 per_client: int = PER_CLIENT_CONNECTIONS) -> None:
        self.per_node, self.per_client = per_node, per_client
        self.nodes: dict[Any, dict[Any, None]] = {}  # node -> its channels, oldest first
        self.clients: dict[tuple[Any, str], dict[Any, None]] = {}
        self.refused = 0

    def admit(self, channel: Any, node: Any, client: str) -> bool:
        mine = self.clients.setdefault((node, client), {})
        theirs = self.nodes.setdefault(node, {})
        for share, cap in ((mine, self.per_client), (theirs, self.per_node)):
            if len(share) >= cap and not self._close_oldest_idle(share):
                self.refused += 1
                return False
        mine[channel] = None
        theirs[channel] = None
        return True

    @staticmethod
    def _close_oldest_idle(share: dict[Any, None]) -> bool:
        """Close one connection of `share` that loses nothing: one its client has closed
        already (the server has not caught up with that yet), else the oldest idle one.

        Idle means no request under way, nothing unread in the socket, and nothing sent or
        received for FRESH_SECONDS: a client opening a connection per request always has a
        few the server has not caught up with, and its next request may be on its way in
        one just opened (or just answered)."""
        idle = None
        now = time.time()  # waitress's clock for last_activity
        for channel in share:  # oldest first
            unread = _unread(channel)
            if unread == "closed":
                # even with its request still being finished: its client has left (it may
                # have read the whole answer while the worker thread was still ending it)
                channel.close()  # releases it from every share
                return True
            if (unread == "nothing" and idle is None and not channel.requests
                    and now - channel.last_activity >= FRESH_SECONDS):
                idle = channel
        if idle is None:
            return False
        idle.close()
        return True

    def release(self, channel: Any, node: Any, client: str) -> None:
        for table, key in ((self.nodes, node), (self.clients, (node, client))):
            share = table.get(key)
            if share is not None:
                share.pop(channel, None)
                if not share:
                    del table[key]


def _unread(channel: Any) -> str:
    """What waits unread in a connection's socket: "nothing", "data" or "closed" (EOF)."""
    sock = getattr(channel, "socket", None)
    if sock is None:
        return "closed"
    try:
        peeked = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return "nothing"
    except OSError:  # reset by the peer, ...
        return "closed"
    return "data" if peeked else "closed"


def _channel_class(caps: ConnectionCaps | None = None,
                   tls: Callable[[Any], tuple[Callable[[], Any], str] | None] | None = None
                   ) -> type:
    """waitress's HTTPChannel, except for two things its tasks do.

    204 and 304 answers keep HTTP/1.1 connections open: waitress closes the connection after
    any answer without a Content-Length, and it strips that header from 204/304, so every
    Reset action, session DELETE or If-None-Match hit cost the client a new TCP connection
    (sushy logs "Resetting dropped connection"). Such answers end at their headers (RFC 9112
    section 6.3), so the connection can simply stay open.

    An answer whose whole body comes in one piece (every JSON answer) is sent with its header
    in one send: waitress sends them apart, and each send from a worker thread costs a round
    trip of the GIL with the I/O thread (~0.3 ms under load) and a TCP segment of its own.

    `tls(node)` says how a node's connections make their TLS context and answer plain HTTP
    (None: the node speaks plain HTTP); see redfish/tls_channel.py.
    """
    from waitress.channel import HTTPChannel
    from waitress.task import WSGITask

    class Task(WSGITask):  # type: ignore[misc]
        _bodyless_keep_alive = False

        def get_environment(self) -> dict[str, Any]:
            environ: dict[str, Any] = super().get_environment()
            channel = self.channel
            local = getattr(channel, "local_address", None)
            if local is None:  # once per connection: a shared listener's node is this
                try:
                    local = channel.socket.getsockname()[0]
                except OSError:
                    local = ""
                channel.local_address = local
            environ[LOCAL_ADDRESS_KEY] = local
            if channel.secure:
                environ["wsgi.url_scheme"] = "https"
            elif channel.plain_on_tls:
                environ[PLAIN_ON_TLS_KEY] = channel.plain_on_tls
                self.set_close_on_finish()  # answered once, then closed: it is no HTTPS client
            return environ

        def build_response_header(self) -> bytes:
            self._bodyless_keep_alive = (
                self.version == "1.1" and not self.has_body
                and self.request.headers.get("CONNECTION", "").lower() != "close")
            try:
                return super().build_response_header()  # type: ignore[no-any-return]
            finally:
                self._bodyless_keep_alive = False

        def set_close_on_finish(self) -> None:
            # while building a bodyless 1.1 answer, the only caller is the missing length
            if not self._bodyless_keep_alive:
                super().set_close_on_finish()

        def write(self, data: bytes) -> None:
            if self.wrote_header or not data or self.content_length != len(data):
                super().write(data)  # later chunks, no body, or a body in pieces
                return
            header = self.build_response_header()
            self.wrote_header = True
            if self.has_body and not self.chunked_response:
                self.content_bytes_written += len(data)
                self.channel.write_soon(header + data)
            else:
                self.channel.write_soon(header)
                super().write(data)  # drops the body as waitress does (e.g. a 304's)

    class Channel(TlsChannel, HTTPChannel):  # type: ignore[misc]
        task_class = Task
        _counted: tuple[Any, str] | None = None

        def __init__(self, server: Any, sock: socket.socket, addr: Any, adj: Any,
                     map: Any = None) -> None:  # noqa: A002 - waitress's name
            super().__init__(server, sock, addr, adj, map)
            # the node: its listener, or its address on a shared listener (kept: the task's
            # environ and a node's removal read it too)
            node: Any = server
            application = server.application
            if isinstance(application, _AddressBinder):
                self.local_address = _local_address(sock)
                node = (server, self.local_address)
                served = application.nodes.get(self.local_address)
            else:
                served = getattr(application, "node", None)
            made = tls(served) if tls is not None and served is not None else None
            if made is not None:
                self.tls_context, self.http_on_tls = made
            if caps is None:
                return
            client = str(addr[0]) if isinstance(addr, tuple) and addr else ""
            if caps.admit(self, node, client):
                self._counted = (node, client)
            else:
                log.debug("Redfish connection from %s refused: its node's share is taken",
                          client)
                self.close()

        def close(self) -> None:
            counted, self._counted = self._counted, None
            if counted is not None and caps is not None:
                caps.release(self, *counted)
            super().close()

    return Channel


def _local_address(sock: socket.socket) -> str:
    try:
        return str(sock.getsockname()[0])
    except OSError:
        return ""


class RedfishServer:
    """The Redfish services of many BMCs in one process: one socket per (addr, port, node)."""

    def __init__(self, bindings: list[tuple[str, int, Node]], threads: int = 16,
                 app_options: dict[str, Any] | None = None,
                 tls: dict[Node, TlsSettings] | None = None,
                 tls_directory: str | None = None) -> None:
        if not bindings:
            raise ValueError("RedfishServer needs at least one (addr, port, node) binding")
        self.bindings = list(bindings)
        self.threads = threads
        #: the nodes that speak HTTPS, and how; where generated certificates are kept
        self.tls: dict[Node, TlsSettings] = dict(tls or {})
        self.tls_contexts = TlsContexts(default_directory(None) if tls_directory is None
                                        else Path(tls_directory))
        #: keyword arguments for `redfish.app.create_app` (session and SSE limits, ...)
        self.app_options = dict(app_options or {})
        self._ports: list[int] = []
        self._map: dict[int, Any] = {}
        self._server: Any = None
        self._app: Any = None
        self._wake: Callable[[], None] | None = None
        self._trigger: Any = None
        self._channel: type | None = None
        self._own: dict[Node, Any] = {}  # node -> its own listener
        self.caps = ConnectionCaps()
        self._shared: dict[int, Any] = {}  # port -> the listener its BMCs share
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def ports(self) -> list[int]:
        """The bound ports, in binding order (port 0 in a binding becomes the real one)."""
        return list(self._ports)

    def start(self) -> None:
        """Bind every socket (OSError naming the port if one fails), then serve in a thread."""
        if self._thread is not None:
            raise RuntimeError("RedfishServer already started")
        # named certificates and the lab CA read now: a bad file stops the start (TlsError)
        self.tls_contexts.check(list(self.tls.values()))
        # before binding: with the usual soft limit of 1,024 the sockets alone could exhaust it;
        # 3 per BMC on top for the wake-up pipes waitress makes (and _build closes again)
        n = len(self.bindings)
        shared = shared_ports(self.bindings)
        in_group = {index for indexes in shared.values() for index in indexes}
        own = [index for index in range(n) if index not in in_group]
        listening = len(own) + len(shared)
        _raise_fd_limit(3 * listening + _connection_limit(n) + 256)
        sockets: list[socket.socket] = []
        try:
            # one socket per BMC on a port of its own, then one per shared port
            for index in own:
                addr, port, _node = self.bindings[index]
                sockets.append(_listen(addr, port))
            for port in shared:
                sockets.append(_listen("0.0.0.0", port))
            self._build(sockets, own, shared)
        except BaseException:
            if self._map:  # waitress got as far as making listeners and wake-up pipes
                from waitress import wasyncore

                wasyncore.close_all(self._map, ignore_all=True)
            for sock in sockets:
                sock.close()
            self._map = {}
            raise
        bound = {index: sock.getsockname()[1] for index, sock in zip(own, sockets, strict=False)}
        self._ports = [bound.get(index, port) for index, (_, port, _) in enumerate(self.bindings)]
        try:
            self._restore_events(list(zip(self.bindings, self._ports, strict=True)))
        except BaseException:  # a saved subscription cannot be read: nothing left listening
            from waitress import wasyncore

            wasyncore.close_all(self._map, ignore_all=True)
            self._map = {}
            raise
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name="redfish-server", daemon=True)
        self._thread.start()
        where = [_where(addr, port) for (addr, _, _), port in zip(self.bindings, self._ports,
                                                                  strict=True)]
        shown = ", ".join(where[:4]) + (f", ... ({len(where) - 4} more)" if len(where) > 4 else "")
        log.info("Redfish serving %d BMC(s) on %s", len(where), shown)

    def _build(self, sockets: list[socket.socket], own: list[int],
               shared: dict[int, list[int]]) -> None:
        from waitress.server import BaseWSGIServer, create_server

        from redfish.app import create_app

        queue_log = logging.getLogger("waitress.queue")
        if queue_log.level == logging.NOTSET:
            # "Task queue depth is N" on every burst: normal when 1,000 BMCs share 16 threads
            queue_log.setLevel(logging.ERROR)

        n = len(sockets)
        self._map = {}
        self._app = create_app(**self.app_options)
        self._server = create_server(
            self._app, map=self._map, sockets=sockets, threads=self.threads,
            asyncore_use_poll=True,  # select() stops at fd 1024; 1,000 BMCs go beyond
            connection_limit=_connection_limit(len(self.bindings)),
            channel_timeout=IDLE_SECONDS, cleanup_interval=CLEANUP_SECONDS,
            max_request_body_size=_WAITRESS_MAX_BODY,
            ident="bmc-emulator",
        )
        # what each listening socket serves: one node, or the nodes of its shared port by address
        serves: dict[int, Any] = {}
        for sock, index in zip(sockets, own, strict=False):
            serves[id(sock)] = self.bindings[index][2]
        for sock, indexes in zip(sockets[len(own):], shared.values(), strict=True):
            serves[id(sock)] = {self.bindings[i][0]: self.bindings[i][2] for i in indexes}
        listeners = [d for d in self._map.values() if isinstance(d, BaseWSGIServer)]
        self._channel = _channel_class(self.caps, self._tls_for)
        for listener in listeners:
            self._adopt(listener, serves[id(listener.socket)])
        if len(listeners) != n:  # a waitress change we do not understand: refuse, never guess
            raise RuntimeError(f"waitress made {len(listeners)} listeners for {n} sockets")
        # every listener made its own wake-up pipe, though all share one poll loop: keep one
        # (saves 3 descriptors and a poll entry per BMC; trigger.close() is idempotent)
        self._trigger = listeners[0].trigger
        for listener in listeners[1:]:
            listener.trigger.close()
            listener.trigger = self._trigger
        self._wake = self._trigger.pull_trigger

    def _tls_for(self, node: Node) -> tuple[Callable[[], Any], str] | None:
        """How connections to `node` make their TLS context, and answer plain HTTP; None: it
        speaks plain HTTP."""
        settings = self.tls.get(node)
        if settings is None:
            return None
        return (partial(self.tls_contexts.context, settings),
                _REDIRECT if settings.redirect_http else "refuse")

    @property
    def ca_path(self) -> Path | None:
        """The lab CA's certificate, if a node uses a generated certificate."""
        if any(not one.cert for one in self.tls.values()):
            return self.tls_contexts.authority.ca_path
        return None

    def _adopt(self, listener: Any, serves: Node | dict[str, Node]) -> None:
        """Make a waitress listener serve one node, or the nodes of a shared port."""
        listener.application = (_AddressBinder(self._app, serves) if isinstance(serves, dict)
                                else _NodeBinder(self._app, serves))
        listener.channel_class = self._channel
        if isinstance(serves, dict):
            self._shared[listener.socket.getsockname()[1]] = listener
        else:
            self._own[serves] = listener

    def _restore_events(self, bound: list[tuple[tuple[str, int, Node], int]]) -> None:
        """Nodes with saved event subscriptions (--state-dir) get them back before serving
        (StateError if a row cannot be read: the start stops, see bmc.serve)."""
        from redfish.resources.event_service import restore

        for (addr, _, node), port in bound:
            if node.state is not None:
                restore(self._app, node, addr, port)

    # -- nodes added and removed while serving --------------------------------------------------
    def add(self, addr: str, port: int, node: Node, timeout: float = 5.0,
            tls: TlsSettings | None = None) -> int:
        """Serve one more node (from any thread); its bound port. OSError if it cannot bind,
        TlsError if its certificate cannot be used."""
        if tls is not None:
            self.tls_contexts.check([tls])
            self.tls[node] = tls
        try:
            return self._add(addr, port, node, timeout)
        except BaseException:
            self.tls.pop(node, None)
            raise

    def _add(self, addr: str, port: int, node: Node, timeout: float) -> int:
        shared = self._shared.get(port) if ":" not in addr else None
        if shared is not None:
            nodes = shared.application.nodes
            if addr in nodes:
                raise OSError(errno.EADDRINUSE, f"Redfish port {_where(addr, port)} is in use")
            self._restore_events([((addr, port, node), port)])
            nodes[addr] = node
            return port
        sock = _listen(addr, port)
        try:
            self._restore_events([((addr, port, node), sock.getsockname()[1])])
            self._on_loop(lambda: self._listen_for(sock, node), timeout)
        except BaseException:
            sock.close()
            raise
        return int(sock.getsockname()[1])

    def _listen_for(self, sock: socket.socket, node: Node) -> None:
        from waitress.server import TcpWSGIServer

        listener = TcpWSGIServer(self._app, self._map, True, sock,
                                 dispatcher=self._server.task_dispatcher, adj=self._server.adj,
                                 bind_socket=False, sockinfo=(sock.family, sock.type,
                                                              sock.proto, sock.getsockname()))
        listener.trigger.close()  # its own wake-up pipe: the shared one serves
        listener.trigger = self._trigger
        self._adopt(listener, node)

    def remove(self, node: Node, timeout: float = 5.0) -> bool:
        """Stop serving `node`: its listener (or its address on a shared one) and every open
        connection to it close."""
        return bool(self._on_loop(lambda: self._forget(node), timeout))

    def _forget(self, node: Node) -> bool:
        from waitress import wasyncore
        from waitress.channel import HTTPChannel

        self.tls.pop(node, None)
        listener = self._own.pop(node, None)
        address = None
        if listener is None:
            for shared in self._shared.values():
                nodes = shared.application.nodes
                address = next((a for a, n in nodes.items() if n is node), None)
                if address is not None:
                    del nodes[address]
                    listener = shared
                    break
        if listener is None:
            return False
        for channel in list(self._map.values()):
            if isinstance(channel, HTTPChannel) and channel.server is listener and (
                    address is None or getattr(channel, "local_address", None) == address):
                channel.close()
        if address is None:
            # waitress's close() would close the listener's trigger too: the shared one
            wasyncore.dispatcher.close(listener)
        return True

    def _on_loop(self, call: Callable[[], Any], timeout: float) -> Any:
        """Run `call` in the server's loop thread (it owns the map) and return its result."""
        from concurrent.futures import Future

        if self._thread is None:
            return call()
        future: Future[Any] = Future()

        def thunk() -> None:
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)

        self._trigger.pull_trigger(thunk)
        return future.result(timeout)

    def _serve(self) -> None:
        from waitress import wasyncore

        try:
            while not self._stopping.is_set():
                wasyncore.loop(timeout=1.0, map=self._map, use_poll=True, count=1)
        except Exception:  # pragma: no cover - wasyncore handles per-connection errors itself
            log.exception("Redfish server loop failed")

    def stop(self) -> None:
        """Stop accepting, finish the workers, close every socket. Safe to call twice."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        if self._app is not None:
            from redfish.resources.event_service import close_streams

            close_streams(self._app)  # SSE streams would hold their threads until they time out
        if self._wake is not None:
            self._wake()  # interrupt poll() now rather than at its timeout
        thread.join(timeout=5)
        from waitress import wasyncore

        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
        wasyncore.close_all(self._map)  # listeners, wake-up pipes and open connections
        self._map = {}
        self._server = None
        self._wake = None
        self._trigger = None
        self._own.clear()
        self._shared.clear()
        self._thread = None

    def __enter__(self) -> RedfishServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
