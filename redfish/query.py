"""Query parameters: `$select` and `$expand` (DSP0266 "Query parameters"), applied to GETs.

Supported, and said so in the service root's ProtocolFeaturesSupported:

* `$expand=*`, `.` (links outside `Links`) and `~` (links in `Links`), each optionally with
  `($levels=N)`, N up to MAX_LEVELS: references become the resources they point to, fetched
  in-process from the same app (same node, same caller);
* `$select=A,B/C`: only those properties (and the `@odata` ones) are returned.

Any other parameter starting with `$` is answered with 501 (as the spec requires); parameters
without `$` are ignored.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from redfish import odata, paths
from redfish.errors import RedfishError, error

log = logging.getLogger(__name__)

SUPPORTED = ("$select", "$expand")
MAX_LEVELS = 3
_EXPAND = re.compile(r"^([*.~])(?:\(\$levels=(\d+)\))?$")
_NAME = re.compile(r"^[A-Za-z_@][A-Za-z0-9_.@#]*(/[A-Za-z_@][A-Za-z0-9_.@#]*)*$")
#: never fetched for $expand: streams, task monitors (GET there has meaning)
_NOT_EXPANDED = (paths.SSE, paths.TASK_MONITORS)


@dataclass(frozen=True)
class Query:
    select: tuple[str, ...] | None = None
    expand: str | None = None  # "*", "." or "~"
    levels: int = 1

    @property
    def empty(self) -> bool:
        return self.select is None and self.expand is None


#: the query of a request without one (most of them)
NONE = Query()


def parse() -> Query:
    """The request's query, or the RedfishError for an unsupported or malformed one."""
    if not request.query_string or request.path == paths.SSE:
        return NONE  # SSE's $filter is the event service's (redfish.resources.event_service)
    for name in request.args:
        if name.startswith("$") and name not in SUPPORTED:
            raise error(501, "QueryParameterUnsupported", name)
    select = None
    raw_select = request.args.get("$select")
    if raw_select is not None:
        names = tuple(n.strip() for n in raw_select.split(",") if n.strip())
        if not names or not all(_NAME.match(n) for n in names):
            raise error(400, "QueryParameterValueFormatError", raw_select, "$select")
        select = names
    expand, levels = None, 1
    raw_expand = request.args.get("$expand")
    if raw_expand is not None:
        match = _EXPAND.match(raw_expand.strip())
        if not match:
            raise error(400, "QueryParameterValueFormatError", raw_expand, "$expand")
        expand = match.group(1)
        levels = int(match.group(2) or 1)
        if not 1 <= levels <= MAX_LEVELS:
            raise error(400, "QueryParameterValueError", "$levels")
    return Query(select, expand, levels)


def apply(body: dict[str, Any], query: Query) -> dict[str, Any]:
    # a public document (the service root) read without credentials expands nothing: the
    # links lead to resources the caller may not read
    if query.expand is not None and g.get("principal") is not None:
        body = _expand(body, query.expand, query.levels, in_links=False)
    if query.select is not None:
        body = _select(body, query.select)
    return body


def _fetch(uri: str) -> dict[str, Any] | None:
    """GET `uri` from this app, in-process; None if it is not a plain JSON resource."""
    path = urlsplit(uri).path
    path = path.rstrip("/") or "/"
    if path.startswith(_NOT_EXPANDED):
        return None
    try:
        endpoint, args = current_app.url_map.bind("localhost").match(path, method="GET")
        result = current_app.view_functions[endpoint](**args)
    except (HTTPException, RedfishError):
        return None
    except Exception:  # a resource that fails to render stays a link; the answer still works
        log.exception("expanding %s failed", path)
        return None
    response: Response = current_app.make_response(result)
    if response.status_code != 200 or not isinstance(response, odata.JsonResponse) \
            or response.body is None:
        return None
    return response.body  # never changed by _expand/_select, which build new dicts


def _is_link(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"@odata.id"}


def _expand(value: Any, kind: str, levels: int, in_links: bool) -> Any:
    if isinstance(value, list):
        return [_expand(v, kind, levels, in_links) for v in value]
    if not isinstance(value, dict):
        return value
    if _is_link(value):
        wanted = kind == "*" or (kind == "~") == in_links
        if not wanted or levels < 1:
            return value
        fetched = _fetch(value["@odata.id"])
        if fetched is None:
            return value
        # one level used; links inside the fetched resource are its own (not in our Links)
        return _expand(fetched, kind, levels - 1, in_links=False) if levels > 1 else fetched
    return {key: _expand(v, kind, levels, in_links or key == "Links")
            for key, v in value.items()}


def _select(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    kept: dict[str, Any] = {k: v for k, v in body.items() if k.startswith("@odata.")}
    for name in names:
        head, _, rest = name.partition("/")
        if head not in body:
            continue
        if rest and isinstance(body[head], dict):
            inner = _select(body[head], (rest,))
            inner = {k: v for k, v in inner.items() if not k.startswith("@odata.")}
            existing = kept.get(head)
            kept[head] = {**existing, **inner} if isinstance(existing, dict) else inner
        else:
            kept[head] = body[head]
    return kept
