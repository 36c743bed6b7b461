"""Per-request context: which node the request is for, who is calling, and its JSON body.

The server puts the node into the WSGI environ under `NODE_ENVIRON_KEY` (one node per
listening socket); `app.before_request` copies it and the authenticated principal into
`flask.g`. Handlers only ever call the helpers here.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from flask import current_app, g, request

from bmc.node import Node
from redfish import NODE_ENVIRON_KEY
from redfish.auth import Principal, SessionStore, register_sessions
from redfish.errors import RedfishError, error, forbidden, not_found

__all__ = ["NODE_ENVIRON_KEY", "NodeState", "NodeStates", "action_body", "find", "json_body",
           "missing", "node", "principal", "require", "state"]


@dataclass
class NodeState:
    """What the Redfish service keeps per BMC besides the node model."""

    sessions: SessionStore
    #: makes PATCH's If-Match check and its change one step against other Redfish writers
    write_lock: threading.Lock = field(default_factory=threading.Lock)


class NodeStates:
    """NodeState per node, created on first use (nodes are only known per request)."""

    def __init__(self, session_timeout: float, session_limit: int,
                 session_user_limit: int | None = None) -> None:
        self._timeout = session_timeout
        self._limit = session_limit
        self._user_limit = session_user_limit
        self._lock = threading.Lock()
        self._states: weakref.WeakKeyDictionary[Node, NodeState] = weakref.WeakKeyDictionary()

    def get(self, node: Node) -> NodeState:
        with self._lock:
            state = self._states.get(node)
            if state is None:
                state = NodeState(SessionStore(self._timeout, self._limit,
                                               user_limit=self._user_limit))
                self._states[node] = state
                register_sessions(node, state.sessions)
            return state


def node() -> Node:
    return g.node  # type: ignore[no-any-return]


def state() -> NodeState:
    states: NodeStates = current_app.extensions["redfish.states"]
    return states.get(g.node)


def principal() -> Principal:
    return g.principal  # type: ignore[no-any-return]


def missing() -> RedfishError:
    """404 for the URI of the current request."""
    return not_found(request.path)


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


Member = TypeVar("Member", bound=_HasId)


def find(members: Iterable[Member], member_id: str) -> Member:
    """The member of a collection with Id `member_id`; 404 for the request's URI otherwise."""
    for member in members:
        if member.id == member_id:
            return member
    raise missing()


def require(privilege: str) -> None:
    """403 unless the caller's role grants `privilege` (a Redfish privilege name)."""
    if not principal().has(privilege):
        raise forbidden()


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, or the Redfish error a client should get.

    415 for a non-JSON Content-Type (none at all is accepted: many tools omit it), 413 above
    MAX_CONTENT_LENGTH (raised by Werkzeug while reading), 400 for malformed JSON or a
    non-object.
    """
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json":
        raise error(415, "GeneralError",
                    text=f"The Content-Type {mimetype!r} is not supported.",
                    resolution="Send the request body as JSON with Content-Type: "
                               "application/json.")
    data = request.get_data(cache=True)
    try:
        body = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise error(400, "MalformedJSON") from None
    if not isinstance(body, dict):
        raise error(400, "UnrecognizedRequestBody")
    # a lone surrogate can only come from a \uD800-\uDFFF escape (strict UTF-8 decoding
    # refuses encoded ones), so the walk runs only for bodies with escapes
    if b"\\u" in data and _has_lone_surrogate(body):
        raise error(400, "MalformedJSON",
                    resolution="Send every string as valid Unicode: an unpaired UTF-16 "
                               "surrogate escape (such as \\ud800) cannot be stored, echoed "
                               "or logged.")
    return body


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(value: Any) -> bool:
    """Does any string (key or value) in the parsed JSON `value` hold a UTF-16 surrogate?

    json.loads joins a valid escaped pair into one character, so any surrogate left is a lone
    one, which no UTF-8 encoder accepts: it would fail where the string is next encoded
    (the answer, a log line, a subscriber's event), far from here. Iterative: no recursion
    limit to hit on a deeply nested body.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def action_body() -> dict[str, Any]:
    """An action's parameters: like `json_body`, but no body at all means no parameters.

    Clients differ: sushy POSTs EjectMedia and ResetBios without a body, others send `{}`.
    """
    if not request.get_data(cache=True).strip():
        return {}
    return json_body()
