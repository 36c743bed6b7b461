"""EventService: subscriptions that get events POSTed to them, test events, and an SSE stream.

Delivery is `redfish.event_service`'s job (background threads, bounded queues); this module
only turns requests into subscriptions and streams. An SSE stream holds a server thread while
it is open, so streams are capped (per BMC and per server), send a heartbeat comment every
`sse_heartbeat` seconds (a vanished client is noticed at the next write) and end after
`sse_max_seconds` (clients reconnect; DSP0266 allows it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, request

from bmc.logs import RESOURCE_EVENT
from bmc.node import Node
from bmc.virtual_media import redact
from redfish import LOCAL_ADDRESS_KEY, context, odata, paths
from redfish.destinations import DestinationPolicy
from redfish.errors import error
from redfish.event_service import (
    RETRY_POLICY,
    EventFilter,
    EventRecord,
    EventService,
    EventStream,
    StreamLimitError,
    Subscription,
)
from redfish.event_service import (
    restore as restore_events,
)
from redfish.event_service import (
    service as events_of,
)
from redfish.odata import Body, link
from redfish.patching import (
    Prop,
    Shape,
    check_if_match,
    parse_action,
    parse_patch,
    with_ignored,
)

log = logging.getLogger(__name__)

bp = Blueprint("event_service", __name__)

TEST_ACTION = "#EventService.SubmitTestEvent"
REGISTRY_PREFIXES = ["ResourceEvent", "TaskEvent", "Base"]
RESOURCE_TYPES = ["ComputerSystem", "Task", "LogEntry", "Chassis", "Manager"]
#: defaults for `create_app(sse_heartbeat=, sse_max_seconds=, sse_streams=)`
SSE_HEARTBEAT = 15.0
SSE_MAX_SECONDS = 600.0
SSE_STREAMS = 4


def _check_destination(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return "malformed URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL with a host"
    return None


STRINGS = Prop(list, item=Prop(str))
SUBSCRIPTION_PARAMS: dict[str, Prop] = {
    "Destination": Prop(str, max_length=2048, check=_check_destination, required=True),
    "Context": Prop(str, max_length=256),
    "Protocol": Prop(str, ("Redfish",)),
    # an SSE "subscription" is made by opening the SSE URI, not by a POST: refused here
    "SubscriptionType": Prop(str),
    "EventFormatType": Prop(str, ("Event",)),
    "EventTypes": STRINGS,  # deprecated; accepted and ignored
    "RegistryPrefixes": STRINGS,
    "MessageIds": STRINGS,
    "ResourceTypes": STRINGS,
    "OriginResources": Prop(list, item=Prop(dict)),
    "SubordinateResources": Prop(bool),
    "HttpHeaders": Prop(list, item=Prop(dict)),
    "DeliveryRetryPolicy": Prop(str),
}
#: what a POST may ask for, beyond its type: the only values this service carries out
ONLY_VALUES = {"SubscriptionType": "RedfishEvent", "DeliveryRetryPolicy": RETRY_POLICY}
SERVICE_SHAPE: Shape = {
    "ServiceEnabled": Prop(bool),
    "DeliveryRetryAttempts": Prop(int, minimum=0, maximum=10),
    "DeliveryRetryIntervalSeconds": Prop(int, minimum=1, maximum=60),
}
SUBSCRIPTION_SHAPE: Shape = {"Context": Prop(str, max_length=256)}


def service_body(service: EventService) -> Body:
    return odata.resource(
        "EventService", paths.EVENT_SERVICE,
        Id="EventService",
        Name="Event Service",
        ServiceEnabled=service.enabled,
        DeliveryRetryAttempts=service.delivery_retry_attempts,
        DeliveryRetryIntervalSeconds=service.delivery_retry_interval,
        EventFormatTypes=["Event"],
        RegistryPrefixes=REGISTRY_PREFIXES,
        ResourceTypes=RESOURCE_TYPES,
        ServerSentEventUri=paths.SSE,
        SSEFilterPropertiesSupported={
            "EventFormatType": True, "MessageId": True, "OriginResource": True,
            "RegistryPrefix": True, "ResourceType": True, "SubordinateResources": True,
            "MetricReportDefinition": False,
        },
        SubordinateResourcesSupported=True,
        Subscriptions=link(paths.SUBSCRIPTIONS),
        Status={"State": "Enabled" if service.enabled else "Disabled", "Health": "OK"},
        Actions={TEST_ACTION: {"target": f"{paths.EVENT_SERVICE}/Actions/"
                                         "EventService.SubmitTestEvent"}},
    )


def subscription_body(sub: Subscription) -> Body:
    return odata.resource(
        "EventDestination", paths.subscription(sub.id),
        Id=sub.id,
        Name=f"Event subscription {sub.id}",
        # its user:password is write-only, like HttpHeaders: shown to nobody
        Destination=redact(sub.destination),
        Context=sub.context,
        Protocol=sub.protocol,
        SubscriptionType="RedfishEvent",
        EventFormatType="Event",
        RegistryPrefixes=sub.filter.registry_prefixes,
        MessageIds=sub.filter.message_ids,
        ResourceTypes=sub.filter.resource_types,
        OriginResources=[link(o) for o in sub.filter.origin_resources],
        SubordinateResources=sub.filter.subordinate_resources,
        HttpHeaders=[],  # write-only: never shown (they may hold the receiver's credentials)
        DeliveryRetryPolicy=RETRY_POLICY,
        Status={"State": "Enabled", "Health": "OK"},
    )


@bp.get(paths.EVENT_SERVICE)
def get_service() -> Response:
    return odata.json_response(service_body(events_of(context.node())))


@bp.patch(paths.EVENT_SERVICE)
def patch_service() -> Response:
    context.require("ConfigureManager")
    service = events_of(context.node())
    body = context.json_body()
    with context.state().write_lock:
        current = service_body(service)
        check_if_match(current)
        patch = parse_patch(body, SERVICE_SHAPE, current)
        changes = patch.changes
        service.configure(
            enabled=changes.get("ServiceEnabled", service.enabled),
            retry_attempts=changes.get("DeliveryRetryAttempts",
                                       service.delivery_retry_attempts),
            retry_interval=changes.get("DeliveryRetryIntervalSeconds",
                                       service.delivery_retry_interval))
    return odata.json_response(with_ignored(service_body(service), patch))


@bp.get(paths.SUBSCRIPTIONS)
def subscriptions() -> Response:
    service = events_of(context.node())
    return odata.json_response(odata.collection(
        "EventDestinationCollection", paths.SUBSCRIPTIONS, "Event Subscriptions Collection",
        [paths.subscription(s.id) for s in service.subscriptions()]))


@bp.post(paths.SUBSCRIPTIONS)
def subscribe() -> Response:
    context.require("ConfigureManager")
    node = context.node()
    params = parse_action(context.json_body(), "EventDestination", SUBSCRIPTION_PARAMS)
    for name, only in ONLY_VALUES.items():
        if name in params and params[name] != only:
            # refused rather than silently turned into what this service does
            raise error(400, "PropertyValueNotInList", params[name], name, related=f"#/{name}")
    headers: dict[str, str] = {}
    for item in params.get("HttpHeaders", []):
        headers.update({str(k): str(v) for k, v in item.items()})
    origins = [o.get("@odata.id") for o in params.get("OriginResources", [])]
    if not all(isinstance(o, str) for o in origins):
        raise error(400, "PropertyValueFormatError", json.dumps(params["OriginResources"]),
                    "OriginResources", related="#/OriginResources")
    event_filter = EventFilter(
        registry_prefixes=params.get("RegistryPrefixes", []),
        message_ids=params.get("MessageIds", []),
        resource_types=params.get("ResourceTypes", []),
        origin_resources=[str(o) for o in origins],
        subordinate_resources=params.get("SubordinateResources", False))
    policy = _policy()
    refused = policy.check_url(params["Destination"], resolve=False)
    if refused:
        log.info("%s: event destination %s refused: %s", node.name,
                 redact(params["Destination"]), refused)
        raise error(400, "PropertyValueNotInList", params["Destination"], "Destination",
                    related="#/Destination",
                    resolution=f"Choose another destination: this one is {refused}; see "
                               "the README on event destinations.")
    try:
        sub = events_of(node).subscribe(params["Destination"], params.get("Context", ""),
                                        event_filter, headers, policy)
    except OverflowError:
        raise error(400, "EventSubscriptionLimitExceeded") from None
    log.info("%s: event subscription %s to %s by %s", node.name, sub.id, redact(sub.destination),
             context.principal().user.name)
    uri = paths.subscription(sub.id)
    return odata.json_response(subscription_body(sub), 201, {"Location": uri})


def _policy() -> DestinationPolicy:
    """The app's destination policy, knowing this BMC's own listener (where this request came
    in: the address and port its events must never go to)."""
    policy: DestinationPolicy = current_app.extensions["redfish.destinations"]
    environ = request.environ
    address = environ.get(LOCAL_ADDRESS_KEY) or environ.get("SERVER_NAME", "")
    try:
        port = int(environ.get("SERVER_PORT", "0"))
    except ValueError:
        return policy
    return policy.with_own(address, port)


def restore(app: Flask, node: Node, address: str, port: int) -> int:
    """At start (redfish.server): the node's saved subscriptions come back, their pushes
    checked by the app's destination policy, knowing this BMC's own listener."""
    policy: DestinationPolicy = app.extensions["redfish.destinations"]
    return restore_events(node, policy.with_own(address, port))


def _subscription(sub_id: str) -> Subscription:
    sub = events_of(context.node()).get(sub_id)
    if sub is None:
        raise context.missing()
    return sub


@bp.get(f"{paths.SUBSCRIPTIONS}/<sub_id>")
def get_subscription(sub_id: str) -> Response:
    return odata.json_response(subscription_body(_subscription(sub_id)))


@bp.patch(f"{paths.SUBSCRIPTIONS}/<sub_id>")
def patch_subscription(sub_id: str) -> Response:
    context.require("ConfigureManager")
    sub = _subscription(sub_id)
    body = context.json_body()
    with context.state().write_lock:
        current = subscription_body(sub)
        check_if_match(current)
        patch = parse_patch(body, SUBSCRIPTION_SHAPE, current)
        events_of(context.node()).set_context(sub.id, patch.changes.get("Context",
                                                                        sub.context))
    return odata.json_response(with_ignored(subscription_body(sub), patch))


@bp.delete(f"{paths.SUBSCRIPTIONS}/<sub_id>")
def delete_subscription(sub_id: str) -> Response:
    context.require("ConfigureManager")
    _subscription(sub_id)
    events_of(context.node()).unsubscribe(sub_id)
    return Response(status=204)


TEST_PARAMS: dict[str, Prop] = {
    "EventId": Prop(str), "EventTimestamp": Prop(str), "EventType": Prop(str),
    "EventGroupId": Prop(int), "Message": Prop(str), "MessageArgs": STRINGS,
    "MessageId": Prop(str, max_length=256), "OriginOfCondition": Prop(str),
    "Severity": Prop(str, ("OK", "Warning", "Critical")),
    "MessageSeverity": Prop(str, ("OK", "Warning", "Critical")),
    "Context": Prop(str),
}


@bp.post(f"{paths.EVENT_SERVICE}/Actions/EventService.SubmitTestEvent")
def submit_test_event() -> Response:
    context.require("ConfigureManager")
    params = parse_action(context.action_body(), TEST_ACTION, TEST_PARAMS)
    severity = params.get("MessageSeverity") or params.get("Severity") or "OK"
    record = EventRecord(
        params.get("MessageId", f"{RESOURCE_EVENT}.TestMessage"),
        params.get("Message", "Test message."), severity,
        tuple(params.get("MessageArgs", [])), origin=params.get("OriginOfCondition"))
    service = events_of(context.node())
    # a test event goes to every subscription, whatever it filters (it tests delivery)
    for sub in service.subscriptions():
        service.publish(record, params.get("Context"), only=sub)
    return Response(status=204)


# -- SSE ------------------------------------------------------------------------------------
def close_streams(app: Flask) -> None:
    """End every open SSE stream of `app` now (the server is stopping)."""
    for body in list(app.extensions["redfish.sse"]["open"]):
        body.close()


_TERM = re.compile(r"^\s*(\w+)\s+eq\s+(?:'([^']*)'|(\S+))\s*$")
_FILTER_FIELDS = {"RegistryPrefix": "registry_prefixes", "MessageId": "message_ids",
                  "ResourceType": "resource_types", "OriginResource": "origin_resources"}


def parse_sse_filter(text: str | None) -> EventFilter:
    """`$filter` of the SSE URI: `Prop eq value` terms joined by `or` / `and`."""
    event_filter = EventFilter()
    if not text:
        return event_filter
    for term in re.split(r"\s+(?:and|or)\s+", text.strip()):
        match = _TERM.match(term)
        if not match:
            raise error(400, "QueryParameterValueFormatError", text, "$filter")
        name, value = match.group(1), match.group(2) or match.group(3) or ""
        if name in _FILTER_FIELDS:
            getattr(event_filter, _FILTER_FIELDS[name]).append(value)
        elif name == "SubordinateResources":
            event_filter.subordinate_resources = value.lower() == "true"
        elif name == "EventFormatType":
            if value != "Event":
                raise error(400, "QueryParameterValueError", "$filter")
        else:
            raise error(400, "QueryParameterValueFormatError", text, "$filter")
    return event_filter


class _EventStreamBody:
    """The body of an SSE answer: events as they come, heartbeats between them.

    `close()` (called by the server when the client has gone, or the stream ended) gives the
    stream and its server slot back, even if the body was never iterated (e.g. HEAD).
    """

    def __init__(self, service: EventService, stream: EventStream, slots: threading.Semaphore,
                 heartbeat: float, max_seconds: float, open_bodies: set[Any]) -> None:
        self._service = service
        self._open = open_bodies
        open_bodies.add(self)
        self._stream = stream
        self._slots = slots
        self._heartbeat = heartbeat
        self._deadline = time.monotonic() + max_seconds
        self._closed = False
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[bytes]:
        yield b": bmc-emulator event stream\n\n"  # sends the headers at once
        while not self._closed and (remaining := self._deadline - time.monotonic()) > 0:
            try:
                item = self._stream.queue.get(timeout=min(self._heartbeat, remaining))
            except queue.Empty:
                yield b": keep-alive\n\n"  # a vanished client fails this write: we end
                continue
            if item is None:
                return  # closed (the server is stopping)
            event_id, body = item
            yield f"id: {event_id}\ndata: {json.dumps(body)}\n\n".encode()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._open.discard(self)
        with contextlib.suppress(queue.Full):  # full: then it is not waiting
            self._stream.queue.put_nowait(None)  # wake the loop if it waits for an event
        self._service.close_stream(self._stream)
        self._slots.release()


@bp.get(paths.SSE)
def sse() -> Response:
    node = context.node()
    service = events_of(node)
    event_filter = parse_sse_filter(request.args.get("$filter"))
    options: dict[str, Any] = current_app.extensions["redfish.sse"]
    slots: threading.Semaphore = options["slots"]
    if not slots.acquire(blocking=False):
        raise error(503, "ServiceTemporarilyUnavailable", "60", headers={"Retry-After": "60"})
    try:
        stream = service.open_stream(event_filter)
    except StreamLimitError:
        slots.release()
        raise error(503, "ServiceTemporarilyUnavailable", "60",
                    headers={"Retry-After": "60"}) from None
    log.info("%s: SSE stream opened by %s", node.name, context.principal().user.name)
    body = _EventStreamBody(service, stream, slots, options["heartbeat"], options["max_seconds"],
                            options["open"])
    return Response(body, content_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
