"""The Flask app factory: resources, authentication, Redfish headers and error bodies.

One app serves every node; the node of a request comes from the WSGI environ
(`context.NODE_ENVIRON_KEY`, set by `redfish.server` per listening socket).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Rule

from backends.base import BackendError, BackendRefused
from bmc.power import BackendUnavailable, NodeBusy
from redfish import auth, context, odata, paths, query
from redfish.destinations import DestinationPolicy
from redfish.errors import RedfishError, error, not_found, redact_logs, unauthorized
from redfish.resources import (
    accounts,
    bios,
    chassis,
    ethernet_interfaces,
    event_service,
    json_schemas,
    log_services,
    managers,
    memory,
    metadata,
    power,
    processors,
    registries,
    secure_boot,
    sensors,
    service_root,
    sessions,
    simple_storage,
    storage,
    systems,
    task_service,
    thermal,
    update_service,
    virtual_media,
)

#: every resource module, each a blueprint `bp`
RESOURCES = (service_root, metadata, systems, managers, chassis, sessions, accounts, bios,
             secure_boot, virtual_media, processors, memory, ethernet_interfaces, simple_storage,
             storage, log_services, event_service, task_service, update_service, json_schemas,
             registries, sensors, thermal, power)

log = logging.getLogger(__name__)

#: request bodies above this are refused with 413 (nothing this service accepts is near it)
MAX_BODY = 1024 * 1024

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def create_app(*, session_timeout: float = auth.DEFAULT_SESSION_TIMEOUT,
               session_limit: int = auth.DEFAULT_SESSION_LIMIT,
               session_user_limit: int = auth.DEFAULT_SESSION_USER_LIMIT,
               max_body: int = MAX_BODY,
               sse_heartbeat: float = event_service.SSE_HEARTBEAT,
               sse_max_seconds: float = event_service.SSE_MAX_SECONDS,
               sse_streams: int = event_service.SSE_STREAMS,
               event_destinations: Sequence[str] | None = None) -> Flask:
    """The app; `sse_streams` caps open SSE streams across all BMCs (each holds a thread);
    `event_destinations`, networks such as "10.0.0.0/8", is the allow list of where event
    subscriptions may push (None: anywhere but link-local and the like, see
    redfish.destinations)."""
    app = Flask(__name__)
    app.url_rule_class = LazyBuilderRule
    app.config["MAX_CONTENT_LENGTH"] = max_body
    app.extensions["redfish.destinations"] = DestinationPolicy.from_networks(
        event_destinations)
    app.extensions["redfish.states"] = context.NodeStates(session_timeout, session_limit,
                                                              session_user_limit)
    app.extensions["redfish.sse"] = {"slots": threading.BoundedSemaphore(sse_streams),
                                     "heartbeat": sse_heartbeat,
                                     "max_seconds": sse_max_seconds,
                                     "open": set()}  # the open streams' bodies
    for module in RESOURCES:
        app.register_blueprint(module.bp)
    redact_logs()  # every redfish.* logger, Flask's own ("redfish.app") included

    # URI template -> every method some route offers there, for the Allow header
    allowed: dict[str, set[str]] = defaultdict(set)
    for rule in app.url_map.iter_rules():
        allowed[rule.rule] |= (rule.methods or set()) - {"OPTIONS"}
    app.extensions["redfish.allow"] = {k: ", ".join(sorted(v)) for k, v in allowed.items()}

    app.before_request(_injected_error)  # first: a failing BMC fails before anything else
    app.before_request(_bind_and_authenticate)
    app.after_request(_redfish_headers)
    app.register_error_handler(RedfishError, _redfish_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.wsgi_app = _strip_trailing_slash(app.wsgi_app)  # type: ignore[method-assign]
    app.wsgi_app = _inject_faults(app.wsgi_app)  # type: ignore[method-assign]
    return app


class LazyBuilderRule(Rule):
    """werkzeug's Rule, except that its URL builders (`url_for`) are compiled on first use.

    werkzeug generates and compile()s two builder functions per rule as the rule is added:
    ~0.8 ms a rule, most of create_app's time (~80 ms) at every start, for something this
    service never uses (`redfish.paths` makes its URIs).
    """

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        def build(rule: Rule, *args: Any, **kwargs: Any) -> tuple[str, str]:
            real = Rule._compile_builder(rule, append_unknown).__get__(rule, None)
            setattr(rule, "_build_unknown" if append_unknown else "_build", real)
            return real(*args, **kwargs)  # type: ignore[no-any-return]

        return build


def _strip_trailing_slash(wsgi_app: WsgiApp) -> WsgiApp:
    """`/redfish/v1/Systems/` is `/redfish/v1/Systems` (clients differ; Redfish allows both)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if len(path) > 1 and path.endswith("/"):
            path = environ["PATH_INFO"] = path.rstrip("/") or "/"
        if environ.get("REQUEST_METHOD") == "POST" and path.endswith("/Members"):
            # DSP0266: POST to a collection's Members is POST to the collection
            environ["PATH_INFO"] = path.removesuffix("/Members")
        return wsgi_app(environ, start_response)

    return app


#: environ key: the status of an error injected into this request (bmc/faults.py)
INJECTED_ERROR_KEY = "bmc_emulator.injected_error"


def _inject_faults(wsgi_app: WsgiApp) -> WsgiApp:
    """The node's injected faults (bmc/faults.py), before Flask sees the request.

    Unreachable: the connection is closed without an answer, by raising waitress's
    ClientDisconnected (waitress then closes it and writes nothing; the app's own error
    handlers, which would answer 500, never see it). Latency: the request sleeps on its
    worker thread (that thread is held for the delay). An error: `_injected_error` answers.
    """

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        faults = getattr(environ.get(context.NODE_ENVIRON_KEY), "faults", None)
        if faults is None:
            return wsgi_app(environ, start_response)
        verdict, delay = faults.redfish_request()
        if verdict == "close":
            _drop_connection()
        if delay > 0:
            time.sleep(delay)
        if verdict == "error":
            environ[INJECTED_ERROR_KEY] = faults.faults.redfish_error_status
        return wsgi_app(environ, start_response)

    return app


#: the worker thread is closing a connection for an unreachable node (waitress logs it)
_dropping = threading.local()
_quiet_lock = threading.Lock()
_quiet = False


def _drop_connection() -> None:
    from waitress.channel import ClientDisconnected

    global _quiet
    if not _quiet:
        with _quiet_lock:
            if not _quiet:
                logging.getLogger("waitress").addFilter(_not_injected)
                _quiet = True
    _dropping.now = True
    raise ClientDisconnected("fault injection: the BMC is unreachable")


def _not_injected(record: logging.LogRecord) -> bool:
    """False for waitress's INFO line about a connection closed for an unreachable node:
    injected faults are logged once when set, not per request."""
    if getattr(_dropping, "now", False) and record.getMessage().startswith(
            "Client disconnected while serving"):
        _dropping.now = False
        return False
    return True


def _injected_error() -> None:
    status = request.environ.get(INJECTED_ERROR_KEY)
    if status is None:
        return
    if status == 503:
        from bmc.faults import RETRY_AFTER

        raise error(503, "ServiceTemporarilyUnavailable", str(RETRY_AFTER),
                    headers={"Retry-After": str(RETRY_AFTER)})
    raise error(500, "InternalError")


def _is_public(method: str, path: str) -> bool:
    if method in ("GET", "HEAD"):
        return path in paths.PUBLIC
    # logging in is how a client gets credentials in the first place
    return method == "POST" and path == paths.SESSIONS


def _bind_and_authenticate() -> None:
    req = request._get_current_object()  # type: ignore[attr-defined]  # once, not per use
    node = req.environ.get(context.NODE_ENVIRON_KEY)
    if node is None:
        raise RuntimeError("request is not bound to a node; serve the app via RedfishServer")
    g.node = node
    version = req.headers.get("OData-Version")
    if version is not None and version.strip() != "4.0":
        raise error(412, "GeneralError", text=f"OData-Version {version} is not supported; "
                                              "this service speaks OData 4.0.")
    method = req.method
    if not _is_public(method, req.path):
        # checked before routing, so an unauthenticated caller learns nothing about the URIs
        principal = _authenticate()
        if principal is None:
            raise unauthorized()
        g.principal = principal
    elif "$expand" in req.args:
        # a public document expands only for a caller who may read what it links to
        g.principal = _authenticate()
    if method in ("GET", "HEAD"):
        g.query = query.parse()  # 501/400 for a query we do not support, before any work


def _authenticate() -> auth.Principal | None:
    node = context.node()
    token = request.headers.get("X-Auth-Token")
    if token:
        return auth.from_token(node.users, context.state().sessions, token)
    credentials = request.authorization
    if credentials is not None and credentials.type == "basic":
        return auth.from_basic(node.users, credentials.username or "",
                               credentials.password or "", node.lockout,
                               request.remote_addr or "")
    return None


def _redfish_headers(response: Response) -> Response:
    """Redfish headers, and the one place a JSON answer is serialized (with its ETag)."""
    req = request._get_current_object()  # type: ignore[attr-defined]  # once, not per use
    headers = response.headers
    headers["OData-Version"] = "4.0"
    headers.setdefault("Cache-Control", "no-cache")
    rule = req.url_rule
    status = response.status_code
    if status == 204:
        # no body, so no Content-Type (Flask's default would say text/html)
        headers.remove("Content-Type")
    if rule is not None and status < 400:
        allow: dict[str, str] = current_app.extensions["redfish.allow"]
        headers["Allow"] = allow.get(rule.rule, "")
    if not isinstance(response, odata.JsonResponse) or response.body is None:
        return response  # SSE, $metadata, bodiless answers: nothing below applies
    body = response.body
    method = req.method
    if status != 200 or method not in ("GET", "HEAD", "PATCH"):
        response.finish()
        return response
    if "@odata.id" in body:
        # the ETag of the resource itself, whatever $select/$expand make of the answer, so
        # that it is the one If-Match is checked against; the payload carries it too
        # (DSP0266 "ETags")
        wanted: query.Query | None = g.get("query")
        if wanted is None or wanted.empty:
            etag, data = odata.dumps_with_etag(body)
        else:
            etag = odata.etag_for(body)
            data = odata.dumps(query.apply(odata.with_etag(body, etag), wanted))
    else:
        data = odata.dumps(body)
        etag = odata.etag_of(data)
    headers["ETag"] = etag
    described_by = odata.schema_uri(body.get("@odata.type"))
    if described_by:
        headers["Link"] = f"<{described_by}>; rel=describedby"
    if_none_match = req.headers.get("If-None-Match")
    if method != "PATCH" and if_none_match and odata.etag_matches(if_none_match, etag):
        response.status_code = 304
        data = b""
    response.finish(data)
    return response


def _redfish_error(exc: RedfishError) -> Response:
    return odata.json_response(exc.body(), exc.status, exc.headers)


def _http_error(exc: HTTPException) -> Response:
    """Werkzeug's own errors (routing, 405, 413) with a Redfish body instead of HTML."""
    status = exc.code or 500
    if status == 404:
        err = not_found(request.path)
    elif status == 405:
        methods = sorted(set(getattr(exc, "valid_methods", None) or []) - {"OPTIONS"})
        err = error(405, "OperationNotAllowed", headers={"Allow": ", ".join(methods)})
    elif status == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        err = error(413, "GeneralError",
                    text=f"The request body is larger than the {limit} bytes accepted.",
                    resolution="Send a smaller request body.")
    elif 400 <= status < 500:
        err = error(status, "GeneralError", text=exc.description or exc.name)
    else:
        log.error("HTTP %s while serving %s %s: %s", status, request.method, request.path,
                  exc.description)
        err = error(status, "InternalError")
    return _redfish_error(err)


def _unexpected_error(exc: Exception) -> Response:
    """Nothing a client sends may crash the service: unknown failures become a 500 body."""
    if isinstance(exc, BackendRefused):  # the server cannot do what the client asked
        log.info("backend refused %s %s: %s", request.method, request.path, exc)
        err = error(400, "GeneralError", text=f"The server cannot do this: {exc}.",
                    resolution="Change the request to something the server supports.")
    elif isinstance(exc, BackendError | BackendUnavailable | NodeBusy):
        # the server behind the BMC, not the BMC, failed (or is busy): come back later
        log.warning("backend error serving %s %s: %s", request.method, request.path, exc)
        err = error(503, "ServiceTemporarilyUnavailable", "2", headers={"Retry-After": "2"},
                    text=f"The server's backend failed: {exc}. Retry in 2 seconds.")
    else:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        err = error(500, "InternalError")
    return _redfish_error(err)
