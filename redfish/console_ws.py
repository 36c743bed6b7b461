"""The WebSocket serial console: a node's console hub, both ways, over a WebSocket.

    ws://HOST:PORT/redfish/v1/Managers/BMC/SerialConsole/WebSocket

Credentials: HTTP Basic, or a Redfish session token (POST /redfish/v1/SessionService/Sessions)
as an `X-Auth-Token` header or, for browsers (which cannot set headers on a WebSocket), as the
WebSocket subprotocol (`new WebSocket(url, [token])`, as OpenBMC's bmcweb takes it); the
server then selects that subprotocol, as RFC 6455 wants.

Console output goes to the client as binary messages, the recent output (the boot banner)
first; what the client sends (binary or text) is typed on the console, if this viewer is the
console's writer (the first viewer to attach, IPMI SOL included). The account must be able to
log in to Redfish and hold at least the SOL privilege level (IPMI `sol set privilege-level`,
USER by default), so IPMI and the WebSocket grant the console to the same people.

Why its own listener, not a route of the Redfish app: waitress, which serves Redfish, is a
plain WSGI server and cannot hand a connection over after an HTTP Upgrade; flask-sock and
simple-websocket need the raw socket that werkzeug's dev server, gunicorn or eventlet put into
the WSGI environ, and waitress offers none. So each node's WebSocket console listens on a port
of its own (`console.websocket` or `defaults.console_port_base`), served by the `websockets`
library (maintained, complete RFC 6455 with ping/pong keepalive, a sans-I/O core) on one
asyncio loop in one thread for all nodes. The Manager resource advertises the URL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Sequence
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from redfish import auth

if TYPE_CHECKING:
    from websockets.asyncio.server import Server, ServerConnection
    from websockets.http11 import Request, Response

    from bmc.node import Node

log = logging.getLogger(__name__)

PATH = "/redfish/v1/Managers/BMC/SerialConsole/WebSocket"
#: WebSocket viewers per node (IPMI SOL is one more)
MAX_VIEWERS = 4
#: output chunks queued for one client; a client this far behind is disconnected
QUEUE_LIMIT = 4096
MAX_MESSAGE = 64 * 1024
REALM = 'Basic realm="bmc-emulator console", charset="UTF-8"'


def console_url(address: str, port: int, secure: bool = False) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{'wss' if secure else 'ws'}://{host}:{port}{PATH}"


class ConsoleWebSocketServer:
    """Every node's WebSocket console, on one asyncio loop in one thread."""

    def __init__(self, bindings: list[tuple[str, int, Node]],
                 tls: dict[Node, ssl.SSLContext] | None = None) -> None:
        self.bindings = bindings
        #: nodes whose Redfish speaks HTTPS: their console is wss://, with the same certificate
        self.tls = dict(tls or {})
        self._sockets: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._viewers: dict[str, int] = {}  # node name -> WebSocket viewers now

    @property
    def ports(self) -> list[int]:
        return [sock.getsockname()[1] for sock in self._sockets]

    def start(self) -> None:
        """Bind every port (OSError naming the port), then serve in a thread."""
        try:
            for address, port, _node in self.bindings:
                self._sockets.append(_listen(address, port))
        except BaseException:
            self._close_sockets()
            raise
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="console-websocket", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None:
            self.stop()
            raise OSError(f"console WebSocket server failed: {self._error}")
        for (address, _, node), port in zip(self.bindings, self.ports, strict=True):
            node.console.websocket_url = console_url(address, port, node in self.tls)

    def _run(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except Exception:  # start() reports a failure to start; this logs a later one
            log.exception("console WebSocket server failed")
        finally:
            self._ready.set()
            self._loop.close()

    async def _serve(self) -> None:
        from websockets.asyncio.server import serve

        self._stopped = asyncio.Event()
        servers: list[Server] = []
        try:
            for sock, (_, _, node) in zip(self._sockets, self.bindings, strict=True):
                servers.append(await serve(
                    partial(self._handler, node), sock=sock, compression=None,
                    ssl=self.tls.get(node),
                    process_request=partial(self._check, node), max_size=MAX_MESSAGE,
                    select_subprotocol=_token_subprotocol,
                    ping_interval=20, ping_timeout=20, server_header="bmc-emulator"))
        except Exception as exc:
            self._error = exc  # before _ready: start() reads it as soon as it wakes
            raise
        finally:
            self._ready.set()
        await self._stopped.wait()
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()

    def stop(self) -> None:
        """Close every connection and listener. Safe to call twice."""
        if self._thread is not None and self._loop is not None:
            if self._stopped is not None and not self._loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=10)
            self._thread = None
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    # -- one connection -------------------------------------------------------------------------
    def _check(self, node: Node, connection: ServerConnection, request: Request
               ) -> Response | None:
        """Refuse before the upgrade: wrong path, bad credentials, no console, too many."""
        if request.path.partition("?")[0].rstrip("/") != PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not found: the console is at "
                                      f"{PATH}\n")
        source = str(connection.remote_address[0]) if connection.remote_address else ""
        user = _basic_user(node, request.headers.get("Authorization", ""), source)
        if user is None:
            user, token = _token_user(node, request)
            if token is not None:
                connection.token_subprotocol = token  # type: ignore[attr-defined]
        if user is None:
            response = connection.respond(HTTPStatus.UNAUTHORIZED, "Authentication required\n")
            response.headers["WWW-Authenticate"] = REALM
            return response
        if user.privilege < node.console.sol.privilege:
            return connection.respond(HTTPStatus.FORBIDDEN,
                                      "The console needs a higher privilege\n")
        if not node.console.available:
            return connection.respond(HTTPStatus.NOT_FOUND,
                                      f"{node.name} has no serial console (its backend)\n")
        if self._viewers.get(node.name, 0) >= MAX_VIEWERS:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE,
                                      f"At most {MAX_VIEWERS} console viewers\n")
        connection.username = user.name  # type: ignore[attr-defined]
        return None

    async def _handler(self, node: Node, connection: ServerConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        def put(data: bytes) -> None:  # on the loop
            if queue.qsize() >= QUEUE_LIMIT:
                queue.put_nowait(None)  # the client cannot keep up: disconnect it
            else:
                queue.put_nowait(data)

        def output(data: bytes) -> None:  # on the console's thread
            loop.call_soon_threadsafe(put, data)

        name = f"websocket {getattr(connection, 'username', '?')}@{connection.remote_address}"
        self._viewers[node.name] = self._viewers.get(node.name, 0) + 1
        viewer = node.console.attach(output, name=name, write=True)
        sender = asyncio.create_task(_send(connection, queue))
        try:
            async for message in connection:
                viewer.write(message.encode() if isinstance(message, str) else message)
        except ConnectionClosed:
            pass
        finally:
            viewer.detach()
            self._viewers[node.name] -= 1
            sender.cancel()


async def _send(connection: ServerConnection, queue: asyncio.Queue[bytes | None]) -> None:
    from websockets.exceptions import ConnectionClosed

    try:
        while True:
            data = await queue.get()
            while data is not None and not queue.empty() and len(data) < MAX_MESSAGE:
                more = queue.get_nowait()
                if more is None:
                    data = None
                    break
                data += more
            if data is None:
                await connection.close(1008, "console viewer too slow")
                return
            await connection.send(data)
    except ConnectionClosed:
        pass


def _basic_user(node: Node, header: str, source: str = "") -> Any:
    """The user an `Authorization: Basic` header logs in, or None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        name, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(
            ":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return auth.login(node.users, name, password, node.lockout, source) if sep else None


def _token_user(node: Node, request: Request) -> tuple[Any, str | None]:
    """(user, subprotocol to select) of a Redfish session token in `X-Auth-Token` or offered
    as a subprotocol; (None, None) if neither opens a session."""
    header = request.headers.get("X-Auth-Token", "").strip()
    if header:
        principal = auth.from_token_of(node, header)
        return (principal.user if principal else None), None
    offered = request.headers.get_all("Sec-WebSocket-Protocol")
    for value in offered:
        for token in (part.strip() for part in value.split(",")):
            principal = auth.from_token_of(node, token)
            if principal is not None:
                return principal.user, token
    return None, None


def _token_subprotocol(connection: ServerConnection, offered: Sequence[str]) -> str | None:
    """Select the subprotocol that carried the session token (None: select none)."""
    token = getattr(connection, "token_subprotocol", None)
    return token if token in offered else None


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(64)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        host = f"[{address}]" if ":" in address else address
        raise OSError(exc.errno, f"console WebSocket port {host}:{port}: {exc.strerror}"
                      ) from exc
    return sock
