"""The management API: list, show, add and remove nodes of a running emulator.

VirtualBMC users manage BMCs with `vbmc add/delete/list` against a running daemon; this is
ours, behind `bmc-emulator nodes list|show|add|remove`. It is a small JSON-over-HTTP API on a
Unix socket (stdlib `http.server`), so it needs no port and no password: the socket file is
mode 0600 in a directory of mode 0700, and each connection's peer credentials (SO_PEERCRED)
must be the emulator's own user or root. Nothing it says ever contains a password.

    GET    /v1/nodes          {"nodes": [NODE, ...]}
    GET    /v1/nodes/NAME     NODE, or 404
    POST   /v1/nodes          body: one node as in the YAML config (YAML or JSON) -> 201 NODE,
                              or 400 {"errors": ["node 'x': field: message", ...]}
    DELETE /v1/nodes/NAME     204, or 404; `?forget=1`: its saved state (--state-dir) too
    PUT    /v1/nodes/NAME/faults  body: a `faults:` mapping as in the config (JSON) -> 200 NODE
                              (its faults replaced; {} clears them), 400 {"errors": [...]}, 404
    DELETE /v1/nodes/NAME/faults  200 NODE without faults, or 404
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import socket
import socketserver
import stat
import struct
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

API = "/v1/nodes"
MAX_BODY = 256 * 1024
SOCKET_ENV = "BMC_EMULATOR_SOCKET"


class NodeRefused(Exception):
    """A node to add was refused: each problem as `node 'x': field: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Fleet(Protocol):
    """What the API manages (`bmc.fleet.Fleet`)."""

    def describe(self) -> list[dict[str, Any]]: ...

    def add(self, text: str) -> dict[str, Any]: ...

    def remove(self, name: str, *, forget: bool = False) -> bool: ...

    def set_faults(self, name: str, raw: Any) -> dict[str, Any] | None: ...


def default_socket() -> str:
    """Where `serve --manage` listens and `nodes` looks, unless told otherwise."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return str(Path(runtime) / "bmc-emulator" / "manage.sock")
    if os.geteuid() == 0:
        return "/run/bmc-emulator/manage.sock"
    return f"/tmp/bmc-emulator-{os.geteuid()}/manage.sock"


# -- the server ---------------------------------------------------------------------------------
class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    fleet: Fleet


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        log.debug("management API: " + format, *args)

    def _allowed(self) -> bool:
        creds = self.request.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                        struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid in (0, os.geteuid()):
            return True
        self._answer(403, {"error": "only the emulator's own user may manage it"})
        return False

    def _answer(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _name(self) -> str | None:
        prefix = API + "/"
        path = self.path.split("?", 1)[0]
        if path.startswith(prefix) and "/" not in path[len(prefix):] and path != prefix:
            return path[len(prefix):]
        return None

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self._allowed():
            return
        nodes = self.server.fleet.describe()
        if self.path.split("?", 1)[0] == API:
            self._answer(200, {"nodes": nodes})
            return
        name = self._name()
        found = next((n for n in nodes if n["name"] == name), None)
        if found is None:
            self._answer(404, {"error": f"no node named {name!r}"})
        else:
            self._answer(200, found)

    def _faults_of(self) -> str | None:
        """NAME of /v1/nodes/NAME/faults, else None."""
        path = self.path.split("?", 1)[0]
        prefix, suffix = API + "/", "/faults"
        if path.startswith(prefix) and path.endswith(suffix):
            name = path[len(prefix):-len(suffix)]
            return name if name and "/" not in name else None
        return None

    def _read_body(self) -> str | None:
        """The request body, or None after answering 400 for a missing or oversized one."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._answer(400, {"errors": [f"send a body of at most {MAX_BODY} bytes"]})
            return None
        return self.rfile.read(length).decode("utf-8", errors="replace")

    def do_PUT(self) -> None:  # noqa: N802
        if not self._allowed():
            return
        name = self._faults_of()
        if name is None:
            self._answer(404, {"error": f"no such resource {self.path!r}"})
            return
        text = self._read_body()
        if text is None:
            return
        try:
            raw = json.loads(text)
        except ValueError as exc:
            self._answer(400, {"errors": [f"faults: not JSON: {exc}"]})
            return
        self._set_faults(name, raw)

    def _set_faults(self, name: str, raw: Any) -> None:
        try:
            node = self.server.fleet.set_faults(name, raw)
        except NodeRefused as exc:
            self._answer(400, {"errors": exc.problems})
            return
        if node is None:
            self._answer(404, {"error": f"no node named {name!r}"})
        else:
            self._answer(200, node)

    def do_POST(self) -> None:  # noqa: N802
        if not self._allowed():
            return
        if self.path.split("?", 1)[0] != API:
            self._answer(404, {"error": f"no such resource {self.path!r}"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._answer(400, {"errors": [f"send one node of at most {MAX_BODY} bytes"]})
            return
        text = self.rfile.read(length).decode("utf-8", errors="replace")
        try:
            node = self.server.fleet.add(text)
        except NodeRefused as exc:
            self._answer(400, {"errors": exc.problems})
            return
        except Exception as exc:  # a failure while starting it: the fleet is as before
            log.exception("adding a node failed")
            self._answer(500, {"errors": [f"the node could not be started: {exc}"]})
            return
        self._answer(201, node)

    def do_DELETE(self) -> None:  # noqa: N802
        if not self._allowed():
            return
        faults_of = self._faults_of()
        if faults_of is not None:
            self._set_faults(faults_of, None)
            return
        name = self._name()
        query = parse_qs(self.path.partition("?")[2])
        forget = query.get("forget", ["0"])[-1] in ("1", "true")
        if name is None or not self.server.fleet.remove(name, forget=forget):
            self._answer(404, {"error": f"no node named {name!r}"})
        else:
            self._answer(204)


class ManagementServer:
    """The API on a Unix socket, served from a thread."""

    def __init__(self, path: str, fleet: Fleet) -> None:
        self.path = path
        self.fleet = fleet
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        where = Path(self.path)
        where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if where.exists() or where.is_symlink():
            if not stat.S_ISSOCK(where.lstat().st_mode):
                raise OSError(17, f"management socket {where} exists and is not a socket")
            if _answers(str(where)):
                raise OSError(98, f"management socket {where} is in use by another emulator")
            where.unlink()  # left behind by an emulator that was killed
        old_mask = os.umask(0o177)  # the socket is created 0600: only its owner connects
        try:
            server = _Server(str(where), _Handler)
        finally:
            os.umask(old_mask)
        server.fleet = self.fleet
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="manage",
                                        daemon=True)
        self._thread.start()
        log.info("management API on %s", where)

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(OSError):
            Path(self.path).unlink()
        self._server = None


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


# -- the client -----------------------------------------------------------------------------
class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class ManagementError(Exception):
    """The API refused a request, or no emulator answers on the socket."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


def request(path: str, method: str, url: str, body: str | None = None,
            timeout: float = 30.0) -> tuple[int, Any]:
    """One API call: (status, decoded JSON or None)."""
    connection = _UnixConnection(path, timeout)
    try:
        headers = {"Content-Type": "application/yaml"} if body is not None else {}
        connection.request(method, url, body=body.encode() if body is not None else None,
                           headers=headers)
        response = connection.getresponse()
        data = response.read()
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ManagementError(f"no emulator answers on {path} ({exc.strerror}); start one with "
                              f"`bmc-emulator serve --manage-socket {path}`") from None
    except OSError as exc:
        raise ManagementError(f"management socket {path}: {exc}") from None
    finally:
        connection.close()
    return response.status, json.loads(data) if data else None
