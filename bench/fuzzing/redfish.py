"""The Redfish fuzz target: the Flask app of one BMC, driven in-process by Flask's test client.

The resources come from the service itself: a walk from /redfish/v1 following every
@odata.id and action target (as an authenticated client), which also collects each resource's
property names and values. A fuzz input is a few requests, each with a method, one of those
paths (or a mutated one), a query ($expand/$select/$top/$skip/$filter/only and garbage), headers
(credentials good, bad and missing, Content-Type, If-Match, If-None-Match, Accept,
OData-Version) and a body (the resource's own property names with wrong values, arbitrary
JSON with lone surrogates, deep nesting and huge numbers, bytes that are not JSON at all).

Invariants: no 5xx but the documented ones (501 QueryParameterUnsupported for a query the
service does not implement, as DSP0266 says; 503 with Retry-After for a full session table, no
SSE slot, or a busy backend); every 4xx/5xx answer has a Redfish error body; every JSON answer
parses; nothing is logged at ERROR.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

from backends.memory import MemoryBackend
from bench.fuzzing import (
    ALLOWED_CONNECT,
    BytesSource,
    ErrorLog,
    FuzzFailure,
    Source,
    restore_users,
)
from bmc.node import Node
from bmc.users import Privilege
from redfish import NODE_ENVIRON_KEY
from redfish.app import create_app

USERS = {"admin": ("password", Privilege.ADMINISTRATOR, 2),
         "operator": ("operpass", Privilege.OPERATOR, 3),
         "reader": ("readpass", Privilege.USER, 4)}
METHODS = ["GET", "GET", "GET", "GET", "HEAD", "POST", "POST", "POST", "PATCH", "PATCH",
           "PATCH", "PUT", "DELETE", "DELETE", "OPTIONS", "TRACE", "FUZZ"]
QUERIES = ["", "", "", "$expand=*", "$expand=.", "$expand=~", "$expand=*($levels=1)",
           "$expand=.($levels=3)", "$expand=*($levels=0)", "$expand=*($levels=99)",
           "$expand=.($levels=)", "$expand=*($levels=6", "$select=Name", "$select=Id,Name,Status",
           "$select=Boot/BootSourceOverrideTarget", "$select=Members", "$select=", "$select=,,",
           "$top=1", "$top=0", "$top=-1", "$top=99999999999999999999", "$skip=1", "$skip=x",
           "$filter=Id eq '1'", "only", "only=1", "excerpt", "$count=true", "$levels=2",
           "$expand=*&$select=Name", "$expand=*&only", "$skip=1&$top=1", "%24expand=%2A",
           "$expand=*&$expand=.", "$select=Name&$select=Id", "$expand=%00", "a=b", "&&&", "="]
CONTENT_TYPES = ["application/json", "application/json", "application/json", None,
                 "application/json; charset=utf-8", "application/json;charset=UTF-8",
                 "application/json; charset=latin-1", "application/json; charset=utf-16",
                 "text/plain", "application/x-www-form-urlencoded", "application/octet-stream",
                 "multipart/form-data; boundary=x", "application/json-patch+json", "",
                 "application/JSON", "*/*", "application/json; q=\"x"]
ACCEPTS = [None, "application/json", "*/*", "text/html", "application/xml", "text/event-stream",
           "application/json;q=0", ""]
ODATA_VERSIONS = [None] * 20 + ["4.0", "4.0 ", "3.0", ""]
SEGMENTS = ["1", "0", "-1", "99", "..", "%2e%2e", ".", "Members", "$ref", "Actions", "Oem",
            "x" * 300, "%00", "%ff", "\u00e9", "Settings", "SD", "Entries", "1;x", "~", "*"]
ENUMS = ["On", "Off", "ForceOff", "ForceOn", "ForceRestart", "GracefulShutdown", "Nmi",
         "PushPowerButton", "PowerCycle", "GracefulRestart", "Pxe", "Hdd", "Cd", "Usb",
         "BiosSetup", "None", "Once", "Continuous", "Disabled", "UEFI", "Legacy",
         "Administrator", "Operator", "ReadOnly", "Enabled", "Lit", "Blinking", "Redfish",
         "Event", "Alert", "SSE", "HTTP", "NFS", "CIFS", "Standard", "ResetAllKeysToDefault",
         "DeleteAllKeys", "DeletePK", "StatusChange", "ResourceUpdated", "http://127.0.0.1/x"]
ACTION_PARAMETERS = ["ResetType", "Image", "Inserted", "WriteProtected", "TransferProtocolType",
                     "UserName", "Password", "ImageURI", "Targets", "ResetKeysType",
                     "MessageId", "EventType", "EventId", "OriginOfCondition", "Severity",
                     "OldPassword", "NewPassword", "PasswordName", "MessageArgs", "Oem"]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "\udc00\ud800"]
WALK_LIMIT = 600


class Receiver:
    """An event receiver on loopback: the one place fuzzed subscriptions may push to."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        ALLOWED_CONNECT.add(("127.0.0.1", self.port))

    def close(self) -> None:
        ALLOWED_CONNECT.discard(("127.0.0.1", self.port))
        self.server.shutdown()
        self.server.server_close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(_utf8(f"{user}:{password}")).decode()


class RedfishTarget:
    """The Redfish app of one BMC and the requests that fuzz it."""

    def __init__(self) -> None:
        self.node = Node("fuzz-rf", MemoryBackend(power_on=True))
        for name, (password, privilege, uid) in USERS.items():
            self.node.users.add(name, password, privilege, user_id=uid)
        self.receiver = Receiver()
        self.app = create_app(sse_heartbeat=0.002, sse_max_seconds=0.005,
                              event_destinations=["127.0.0.1/32"])
        self.client = self.app.test_client()
        self.client.environ_base[NODE_ENVIRON_KEY] = self.node
        self.errors = ErrorLog()
        self.stats = {"inputs": 0, "requests": 0, "repairs": 0, "status": {}}
        self.token = ""
        self.etags: dict[str, str] = {}
        self.paths: list[str] = []
        self.properties: dict[str, dict[str, Any]] = {}
        self.names: list[str] = []
        self.discover()

    def close(self) -> None:
        self.receiver.close()
        self.node.close()

    # -- the service's resources ---------------------------------------------------------------
    def discover(self) -> None:
        """Walk the service from its root, as an administrator: every resource and action."""
        seen: set[str] = set()
        queue = deque(["/redfish/v1", "/redfish", "/redfish/v1/odata", "/redfish/v1/$metadata"])
        actions: set[str] = set()
        while queue and len(seen) < WALK_LIMIT:
            path = queue.popleft()
            if path in seen:
                continue
            seen.add(path)
            response = self.client.get(path, headers={"Authorization": basic(
                "admin", USERS["admin"][0])})
            if response.status_code != 200 or not response.is_json:
                continue
            body = response.get_json()
            self.properties[path] = {k: v for k, v in body.items() if not k.startswith("@")}
            for link in _links(body):
                if link.startswith("/redfish") and link not in seen:
                    queue.append(link)
            actions |= set(_targets(body))
        self.paths = sorted(seen | actions)
        self.names = sorted({n for props in self.properties.values() for n in props}
                            | set(ACTION_PARAMETERS))
        self.errors.check("Redfish walk")

    # -- one input ---------------------------------------------------------------------------
    def run_input(self, data: bytes) -> None:
        self.run(BytesSource(data))

    def run(self, source: Source, max_requests: int = 4) -> None:
        self.stats["inputs"] += 1
        self.repair_if_needed()
        for _ in range(source.integer(1, max_requests)):
            self.request(source)
        self.errors.check("Redfish")

    def request(self, source: Source) -> None:
        method = source.choice(METHODS)
        path = self.path(source)
        query = source.choice(QUERIES)
        if source.integer(0, 7) == 0:
            query = source.choice([query + "&", ""]) + quote(_utf8(source.text(20)), safe="=&$()*,")
        headers, remote = self.headers(source, path)
        data = self.body(source, path) if method not in ("GET", "HEAD") or \
            source.integer(0, 9) == 0 else None
        self.stats["requests"] += 1
        response = self.client.open(path, method=method, query_string=query or None,
                                    headers=headers, data=data,
                                    environ_overrides={"REMOTE_ADDR": remote})
        try:
            self.check(method, path, query, response)
        finally:
            response.close()

    def path(self, source: Source) -> str:
        path = source.choice(self.paths)
        kind = source.integer(0, 11)  # 0..5: as the service names it (an exhausted input is 0)
        if kind == 6:
            path += "/" + source.choice(SEGMENTS)
        elif kind == 7:
            path = path.rsplit("/", 1)[0] + "/" + quote(_utf8(source.text(24)), safe="")
        elif kind == 8:
            path += "/"
        elif kind == 9:
            path = path.replace("/", "//", source.integer(1, 3))
        elif kind == 10:
            path = path.lower() if source.boolean() else path.upper()
        elif kind == 11:
            path = path.rsplit("/", 1)[0] + "/" + source.choice(SEGMENTS)
        return path

    def headers(self, source: Source, path: str) -> tuple[dict[str, str], str]:
        headers: dict[str, str] = {}
        auth = source.integer(0, 12)
        remote = "127.0.0.1"
        if auth <= 3:
            headers["Authorization"] = basic("admin", USERS["admin"][0])
        elif auth == 4:
            user = source.choice(["operator", "reader"])
            headers["Authorization"] = basic(user, USERS[user][0])
        elif auth <= 8:
            headers["X-Auth-Token"] = self.token
        else:  # wrong or garbage credentials, or none, from elsewhere (lockouts stay there)
            remote = source.choice(["192.0.2.20", "192.0.2.21", "2001:db8::1"])
            bad = source.integer(0, 5)
            if bad == 0:
                headers["Authorization"] = basic(source.choice(["admin", "nobody", ""]),
                                                 source.text(12))
            elif bad == 1:
                headers["Authorization"] = source.choice(["Basic", "Basic !!!", "Bearer x",
                                                          "Basic " + "A" * 2000, "Digest a=b"])
            elif bad == 2:
                headers["X-Auth-Token"] = source.choice([self.token[:-1], "x", "0" * 64])
            elif bad == 3:
                headers["Authorization"] = "Basic " + base64.b64encode(source.blob(40)).decode()
        content_type = source.choice(CONTENT_TYPES)
        if content_type is not None:
            headers["Content-Type"] = content_type
        for name, pool in (("Accept", ACCEPTS), ("OData-Version", ODATA_VERSIONS)):
            value = source.choice(pool)
            if value is not None:
                headers[name] = value
        match = source.integer(0, 7)
        etag = self.etags.get(path, 'W/"0"')
        if match == 1:
            headers["If-Match"] = etag
        elif match == 2:
            headers["If-Match"] = source.choice(["*", 'W/"nope"', '"x", W/"y"', "", "garbage"])
        elif match == 3:
            headers["If-None-Match"] = source.choice([etag, "*", 'W/"x"'])
        return headers, remote

    # -- bodies --------------------------------------------------------------------------------
    def body(self, source: Source, path: str) -> bytes:
        kind = source.integer(0, 9)
        own = self.properties.get(path.split("?")[0]) or self.properties.get(
            path.rsplit("/Actions", 1)[0], {})
        if kind <= 4:  # the resource's own properties (or an action's), with other values
            names = [*own, *ACTION_PARAMETERS] if "/Actions/" in path else list(own) or ["Name"]
            value: dict[str, Any] = {}
            for _ in range(source.integer(0, 4)):
                name = source.choice(names)
                value[name] = (self.wrong(source, own.get(name)) if source.boolean()
                               else self.value(source, 2))
            if source.integer(0, 3) == 0:
                value[source.text(10)] = self.value(source, 1)
            return _dumps(value)
        if kind <= 6:
            return _dumps(self.value(source, 4))
        if kind == 7:
            return source.blob(200)
        if kind == 8:  # deep nesting, huge numbers, duplicate keys, NaN
            depth = source.choice([50, 900, 1100, 5000, 100000])
            return source.choice([
                b"[" * depth + b"]" * depth,
                b'{"a":' * depth + b"1" + b"}" * depth,
                b'{"Name": ' + b"9" * source.choice([20, 4300, 5000, 100000]) + b"}",
                b'{"Name": 1e999, "AssetTag": -1e999}',
                b'{"Name": NaN, "AssetTag": Infinity}',
                b'{"Name": "a", "Name": {"x": 1}}',
                b"\xef\xbb\xbf{}", b"null", b"", b"{", b'"\\ud800"', b"{\"\x00\": 1}"])
        return _dumps(source.text(100))

    def value(self, source: Source, depth: int) -> Any:
        kind = source.integer(0, 10 if depth > 0 else 6)
        if kind == 0:
            return None
        if kind == 1:
            return source.boolean()
        if kind == 2:
            return source.choice([0, 1, -1, 255, 256, 65536, 2**31, 2**63, -2**63, 2**64,
                                  source.integer(-2**70, 2**70)])
        if kind == 3:
            return source.choice([0.5, -0.0, 1e308, 5e-324, float("inf"), float("nan")])
        if kind == 4:
            return source.choice(ENUMS)
        if kind == 5:
            return source.text(40)
        if kind == 6:
            return source.text(4) + source.choice(SURROGATES) + source.text(4)
        if kind <= 8:
            return [self.value(source, depth - 1) for _ in range(source.integer(0, 4))]
        return {source.choice([*self.names, source.text(10)]): self.value(source, depth - 1)
                for _ in range(source.integer(0, 4))}

    def wrong(self, source: Source, current: Any) -> Any:
        """Something of another type than `current` (or, for an object, its own keys with
        wrong values)."""
        if isinstance(current, dict) and current and source.integer(0, 2):
            keys = list(current)
            return {k: self.wrong(source, current[k]) for k in
                    [source.choice(keys) for _ in range(source.integer(1, 3))]}
        if isinstance(current, list) and current and source.boolean():
            return [self.wrong(source, current[0])]
        options: list[Any] = [None, True, 1, -1, 2**64, 1.5, "", "x", [], {}, [current],
                              {"@odata.id": "/redfish/v1"}, source.text(8), source.choice(ENUMS)]
        return source.choice([o for o in options if type(o) is not type(current)])

    # -- checking ------------------------------------------------------------------------------
    def check(self, method: str, path: str, query: str, response: Any) -> None:
        status = response.status_code
        counts = self.stats["status"]
        counts[status] = counts.get(status, 0) + 1
        what = f"{method} {path!r} ?{query!r} -> {status}"
        raw = response.get_data()
        content_type = response.headers.get("Content-Type", "")
        body: Any = None
        if content_type.startswith("application/json") and raw:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise FuzzFailure(f"{what}: JSON answer does not parse: {raw[:200]!r}") from exc
        if status == 200 and method == "GET" and isinstance(body, dict) and "@odata.id" in body:
            etag = response.headers.get("ETag")
            if etag:
                self.etags[path] = etag
        if status < 400:
            return
        if method != "HEAD":
            _check_error_body(what, body, raw)
        ids = [i.get("MessageId", "") for i in (body or {}).get("error", {}).get(
            "@Message.ExtendedInfo", [])] if isinstance(body, dict) else []
        if status == 501 and (method == "HEAD" and query or any(
                i.endswith("QueryParameterUnsupported") for i in ids)):
            return
        if status == 503 and "Retry-After" in response.headers and (method == "HEAD" or any(
                i.endswith(("ServiceTemporarilyUnavailable", "CreateLimitReachedForResource"))
                for i in ids)):
            return
        if status >= 500:
            raise FuzzFailure(f"{what}: {raw[:400]!r}")

    # -- keeping the harness's own access --------------------------------------------------------
    def repair_if_needed(self) -> None:
        users = self.node.users
        broken = any(users.authenticate(n, p) is None or users.by_name(n).privilege != priv
                     for n, (p, priv, _) in USERS.items())  # type: ignore[union-attr]
        if broken or any(self.node.lockout.is_locked(n, "127.0.0.1") for n in USERS):
            self.repair()
        if not self.token or self._token_dead():
            self.login()

    def _token_dead(self) -> bool:
        from redfish.auth import from_token_of

        return from_token_of(self.node, self.token) is None

    def repair(self) -> None:
        self.stats["repairs"] += 1
        restore_users(self.node, USERS)

    def login(self) -> None:
        response = self.client.post("/redfish/v1/SessionService/Sessions", json={
            "UserName": "admin", "Password": USERS["admin"][0]})
        if response.status_code == 503:  # the fuzz filled the session table: make room
            from redfish.auth import sessions_of

            store = sessions_of(self.node)
            for session in store.all() if store else []:
                store.delete(session.id)  # type: ignore[union-attr]
            response = self.client.post("/redfish/v1/SessionService/Sessions", json={
                "UserName": "admin", "Password": USERS["admin"][0]})
        if response.status_code != 201:
            raise FuzzFailure(f"our own login failed: {response.status_code} "
                              f"{response.get_data()[:300]!r}")
        self.token = response.headers["X-Auth-Token"]

    def still_works(self) -> None:
        """After the run: a fresh login, a GET of the system and a power action succeed."""
        self.repair()
        self.login()
        auth = {"X-Auth-Token": self.token}
        system = next(p for p in self.paths if p.startswith("/redfish/v1/Systems/")
                      and p.count("/") == 4)
        response = self.client.get(system, headers=auth)
        if response.status_code != 200 or response.get_json().get("Id") != "fuzz-rf":
            raise FuzzFailure(f"GET {system} after the run: {response.status_code}")
        response = self.client.post(f"{system}/Actions/ComputerSystem.Reset", headers=auth,
                                    json={"ResetType": "On"})
        if response.status_code >= 400:
            raise FuzzFailure(f"power on after the run: {response.status_code} "
                              f"{response.get_data()[:300]!r}")
        self.errors.check("Redfish after the run")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate as a client could send it


def _dumps(value: Any) -> bytes:
    # ensure_ascii writes lone surrogates as \ud800 escapes, as a hostile client would
    return json.dumps(value).encode()


def _links(body: Any) -> Iterator[str]:
    if isinstance(body, dict):
        for key, value in body.items():
            if key == "@odata.id" and isinstance(value, str):
                yield value.split("#", 1)[0].rstrip("/") or "/"
            else:
                yield from _links(value)
    elif isinstance(body, list):
        for item in body:
            yield from _links(item)


def _targets(body: Any) -> Iterator[str]:
    if isinstance(body, dict):
        for key, value in body.items():
            if key in ("target", "@Redfish.ActionInfo") and isinstance(value, str):
                yield value
            else:
                yield from _targets(value)
    elif isinstance(body, list):
        for item in body:
            yield from _targets(item)


def _check_error_body(what: str, body: Any, raw: bytes) -> None:
    """A Redfish error (DSP0266 "Error responses"): error.code, error.message and
    @Message.ExtendedInfo, each with a MessageId."""
    error = body.get("error") if isinstance(body, dict) else None
    infos = error.get("@Message.ExtendedInfo") if isinstance(error, dict) else None
    if not (isinstance(error, dict) and isinstance(error.get("code"), str)
            and isinstance(error.get("message"), str) and isinstance(infos, list) and infos
            and all(isinstance(i, dict) and isinstance(i.get("MessageId"), str)
                    for i in infos)):
        raise FuzzFailure(f"{what}: not a Redfish error body: {raw[:300]!r}")
