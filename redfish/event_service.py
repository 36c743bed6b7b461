"""Redfish events of a BMC: subscriptions (pushed to a URL) and SSE streams.

The node model knows nothing of Redfish: it tells its listeners what happened (system log
entries, SEL entries, sensor threshold crossings, task state changes). This module turns each
into a Redfish `Event` and hands it to every matching subscription and open SSE stream. A
node's `EventService` is made the first time the Redfish service needs it (`service(node)`):
before that nobody can have subscribed, so no event is lost.

Nothing here blocks the thread that caused the event: pushes go into one bounded queue served
by a couple of background threads (`Deliverer`) with short timeouts, and SSE streams have
bounded queues of their own. When a queue is full the event is dropped (and counted) rather
than stalling the BMC. A push that fails is retried `DeliveryRetryAttempts` times, every
`DeliveryRetryIntervalSeconds` (the EventService's settings, without holding a thread while
it waits); a subscription whose retries are all used up is terminated, as its
`DeliveryRetryPolicy` ("TerminateAfterRetries", the only one offered) says.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from bmc.logs import RESOURCE_EVENT
from bmc.virtual_media import redact
from redfish import paths
from redfish.destinations import DestinationPolicy

if TYPE_CHECKING:
    from bmc.logs import LogEntry
    from bmc.node import Node
    from bmc.sel import SelEntry
    from bmc.sensors import ThresholdEvent
    from bmc.tasks import Task

log = logging.getLogger(__name__)

EVENT_TYPE = "#Event.v1_7_0.Event"
#: the state store's kinds (bmc/state.py, through `node.state`): one row per subscription,
#: keyed by its Id, and the EventService's settings (key "settings")
SUBSCRIPTION_KIND = "subscription"
SERVICE_KIND = "event_service"
MAX_SUBSCRIPTIONS = 16
MAX_STREAMS = 4  # concurrent SSE streams per BMC (each holds a server thread)
STREAM_QUEUE = 64


@dataclass(frozen=True)
class EventRecord:
    """One thing to tell subscribers about (a Redfish EventRecord, without its EventId)."""

    message_id: str  # full: "ResourceEvent.1.4.3.ResourcePoweredOn"
    message: str
    severity: str = "OK"
    args: tuple[str, ...] = ()
    origin: str | None = None  # @odata.id of the resource it concerns
    resource_type: str | None = None  # its schema name, for ResourceTypes filters
    log_entry: str | None = None  # @odata.id of the log entry recording it, if any
    timestamp: float = field(default_factory=time.time)

    @property
    def registry_prefix(self) -> str:
        return self.message_id.split(".", 1)[0]

    @property
    def message_key(self) -> str:
        """The message name without the registry version: "ResourcePoweredOn"."""
        return self.message_id.rsplit(".", 1)[-1]


@dataclass
class EventFilter:
    """What a subscription or stream wants; empty lists mean everything."""

    registry_prefixes: list[str] = field(default_factory=list)
    message_ids: list[str] = field(default_factory=list)
    resource_types: list[str] = field(default_factory=list)
    origin_resources: list[str] = field(default_factory=list)
    subordinate_resources: bool = False

    def matches(self, record: EventRecord) -> bool:
        if self.registry_prefixes and record.registry_prefix not in self.registry_prefixes:
            return False
        if self.message_ids and not any(_id_matches(record, m) for m in self.message_ids):
            return False
        if self.resource_types and record.resource_type not in self.resource_types:
            return False
        if self.origin_resources:
            origin = record.origin or ""
            if not any(origin == o or (self.subordinate_resources
                                        and origin.startswith(o.rstrip("/") + "/"))
                       for o in self.origin_resources):
                return False
        return True


def _id_matches(record: EventRecord, wanted: str) -> bool:
    """"ResourcePoweredOn", "ResourceEvent.ResourcePoweredOn" or with the version all match."""
    parts = wanted.split(".")
    if len(parts) == 1:
        return record.message_key == wanted
    return parts[0] == record.registry_prefix and parts[-1] == record.message_key


#: the only DeliveryRetryPolicy offered: after the last retry the subscription is deleted
RETRY_POLICY = "TerminateAfterRetries"
#: EventService defaults (DeliveryRetryAttempts, DeliveryRetryIntervalSeconds)
RETRY_ATTEMPTS = 3
RETRY_INTERVAL = 5


@dataclass
class Subscription:
    id: str
    destination: str
    context: str = ""
    protocol: str = "Redfish"
    filter: EventFilter = field(default_factory=EventFilter)
    #: sent with every push (e.g. an auth token for the receiver); never shown back
    http_headers: dict[str, str] = field(default_factory=dict)
    #: where pushes may go, checked again at each push (a host name may resolve anywhere)
    policy: DestinationPolicy | None = None
    delivered: int = 0
    failed: int = 0  # events given up on (after every retry)
    terminated: bool = False


def _split_credentials(url: str) -> tuple[str, str]:
    """`url` without its user:password, and that user:password (percent-decoded; "" if none):
    a destination's credentials are sent as HTTP Basic, as a browser would."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, ""
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    return (urlunsplit(parts._replace(netloc=host)),
            f"{unquote(user)}:{unquote(password)}")


def _opener() -> Any:
    """urllib without redirects: a receiver may not send a push (and its headers) on to an
    address the destination policy would refuse. A 3xx answer is a failed push."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(NoRedirect)


@dataclass
class _Push:
    """One event on its way to one subscription."""

    subscription: Subscription
    payload: bytes
    retries: int  # retries left after the attempt under way
    interval: float
    give_up: Callable[[Subscription], None]


class _DelayedQueue:
    """A bounded queue whose items become due at a time: retries wait here, not in a thread."""

    def __init__(self, capacity: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self._clock = clock
        self._heap: list[tuple[float, int, _Push]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self.unfinished = 0  # queued or being pushed

    def put(self, item: _Push, delay: float = 0.0, *, retry: bool = False) -> bool:
        """Queue `item` due in `delay` s; False if full (a retry always has its place)."""
        with self._cond:
            if not retry and len(self._heap) >= self.capacity:
                return False
            heapq.heappush(self._heap, (self._clock() + delay, next(self._order), item))
            if not retry:
                self.unfinished += 1
            self._cond.notify()
            return True

    def get(self) -> _Push:
        with self._cond:
            while True:
                wait = self._heap[0][0] - self._clock() if self._heap else None
                if wait is not None and wait <= 0:
                    return heapq.heappop(self._heap)[2]
                self._cond.wait(wait)

    def done(self) -> None:
        with self._cond:
            self.unfinished -= 1


class Deliverer:
    """Pushes event payloads to subscribers' URLs from background threads.

    One per process, shared by every BMC: a bounded queue and `workers` threads, each push
    with a timeout; a failed push waits in the queue for its retry (no thread sleeps); never
    started until the first push.
    """

    def __init__(self, workers: int = 2, capacity: int = 256, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._queue = _DelayedQueue(capacity)
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.dropped = 0

    def submit(self, subscription: Subscription, payload: bytes, *, retries: int = 0,
               interval: float = 0.0,
               give_up: Callable[[Subscription], None] = lambda _s: None) -> bool:
        """Queue one push; `retries` more attempts `interval` s apart if it fails, then
        `give_up(subscription)`."""
        self._start()
        if self._queue.put(_Push(subscription, payload, retries, interval, give_up)):
            return True
        self.dropped += 1
        log.warning("event queue full: event for %s dropped", redact(subscription.destination))
        return False

    def _start(self) -> None:
        with self._lock:
            if self._threads:
                return
            for i in range(self._workers):
                thread = threading.Thread(target=self._run, name=f"event-push-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _run(self) -> None:
        while True:
            push = self._queue.get()
            finished = True
            try:
                finished = self._attempt(push)
            except Exception:  # never let one bad push kill the worker
                log.exception("pushing an event to %s failed",
                              redact(push.subscription.destination))
            finally:
                if finished:
                    self._queue.done()

    def _attempt(self, push: _Push) -> bool:
        """Push once; False if a retry was queued (the push is not finished)."""
        subscription = push.subscription
        if subscription.terminated:
            return True
        if self._post(subscription, push.payload):
            subscription.delivered += 1
            return True
        if push.retries > 0:
            push.retries -= 1
            self._queue.put(push, push.interval, retry=True)
            return False
        subscription.failed += 1
        push.give_up(subscription)
        return True

    def _post(self, subscription: Subscription, payload: bytes) -> bool:
        import urllib.error  # here, not at the top: ~30 ms that start-up need not pay
        import urllib.request

        policy = subscription.policy
        refused = policy.check_url(subscription.destination, resolve=True) if policy else None
        if refused:
            log.warning("event push to %s refused: %s", redact(subscription.destination),
                        refused)
            return False
        headers = {**subscription.http_headers, "Content-Type": "application/json",
                   "OData-Version": "4.0"}
        url, credentials = _split_credentials(subscription.destination)
        if credentials:  # urllib would take "user:password@host" for a host name
            headers.setdefault("Authorization", "Basic " + base64.b64encode(
                credentials.encode()).decode("ascii"))
        request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
        try:
            with _opener().open(request, timeout=self.timeout) as response:
                response.read(65536)
            return True
        except (urllib.error.URLError, OSError, ValueError) as exc:
            # the URL only, never the headers: they may carry the receiver's credentials
            log.info("event push to %s failed: %s", redact(subscription.destination), exc)
            return False

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """For tests: wait until every queued push has been delivered or given up."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self._queue.unfinished


DELIVERER = Deliverer()


class EventStream:
    """One open SSE stream: a bounded queue the request thread reads from."""

    def __init__(self, event_filter: EventFilter) -> None:
        self.filter = event_filter
        #: (event id, payload); None ends the stream
        self.queue: queue.Queue[tuple[int, dict[str, Any]] | None] = queue.Queue(STREAM_QUEUE)
        self.dropped = 0


class StreamLimitError(RuntimeError):
    """Too many SSE streams are open on this BMC."""


class EventService:
    """Subscriptions and SSE streams of one BMC. Thread-safe.

    Holds no reference to its node (`service(node)` keeps one per node while the node lives).
    """

    def __init__(self, node: Node, deliverer: Deliverer = DELIVERER) -> None:
        self._deliverer = deliverer
        self._lock = threading.Lock()
        self._subscriptions: dict[str, Subscription] = {}
        self._streams: list[EventStream] = []
        self._sub_ids = itertools.count(1)
        self._event_ids = itertools.count(1)
        self.enabled = True
        self.delivery_retry_attempts = RETRY_ATTEMPTS
        self.delivery_retry_interval = RETRY_INTERVAL
        self.terminated = 0  # subscriptions ended by their retry policy
        self._state = node.state  # None: subscriptions live in memory only
        self._connect_sources(node)

    def _connect_sources(self, node: Node) -> None:
        """Listen to the node's logs, SEL, sensors and tasks."""
        system = paths.system(node)
        chassis = paths.chassis(node)

        def on_log_entry(entry: LogEntry) -> None:
            self.publish(EventRecord(
                entry.message_id, entry.message, entry.severity, entry.args, origin=system,
                resource_type="ComputerSystem",
                log_entry=f"{system}/LogServices/Log/Entries/{entry.id}",
                timestamp=entry.created))

        def on_task(task: Task) -> None:
            last = task.messages[-1]
            self.publish(EventRecord(last.message_id, last.message, last.severity, last.args,
                                     origin=f"{paths.TASKS}/{task.id}", resource_type="Task"))

        def on_sel_entry(entry: SelEntry) -> None:
            # the SEL's own text: a receiver can show it as is (IPMI has no message ids)
            uri = f"{paths.MANAGER_LOG_SERVICES}/SEL/Entries/{entry.record_id}"
            self.publish(EventRecord(f"{RESOURCE_EVENT}.ResourceCreated", entry.message,
                                     entry.severity, origin=uri, resource_type="LogEntry",
                                     log_entry=uri))

        def on_threshold(event: ThresholdEvent) -> None:
            self.publish(threshold_record(chassis, event))

        node.system_log.listeners.append(on_log_entry)
        node.tasks.listeners.append(on_task)
        node.sel.subscribe(on_sel_entry)
        node.sensors.subscribe(on_threshold)

    # -- subscriptions ----------------------------------------------------------------------
    def subscribe(self, destination: str, context: str = "",
                  event_filter: EventFilter | None = None,
                  http_headers: dict[str, str] | None = None,
                  policy: DestinationPolicy | None = None) -> Subscription:
        with self._lock:
            if len(self._subscriptions) >= MAX_SUBSCRIPTIONS:
                raise OverflowError("subscription limit reached")
            sub_id = str(next(self._sub_ids))
            subscription = Subscription(sub_id, destination, context,
                                        filter=event_filter or EventFilter(),
                                        http_headers=dict(http_headers or {}),
                                        policy=policy)
            self._subscriptions[sub_id] = subscription
            self._save(subscription)
            return subscription

    def _save(self, subscription: Subscription) -> None:
        """Save one subscription (with the lock held: saves land in the order of changes)."""
        if self._state is not None:
            self._state.save(SUBSCRIPTION_KIND, subscription.id, _saved(subscription))

    def set_context(self, sub_id: str, context: str) -> None:
        with self._lock:
            subscription = self._subscriptions.get(sub_id)
            if subscription is not None:
                subscription.context = context
                self._save(subscription)

    def configure(self, *, enabled: bool, retry_attempts: int, retry_interval: int) -> None:
        """The EventService's own settings (PATCH); saved before this returns."""
        with self._lock:
            self.enabled = enabled
            self.delivery_retry_attempts = retry_attempts
            self.delivery_retry_interval = retry_interval
            if self._state is not None:
                self._state.save(SERVICE_KIND, "settings", {
                    "enabled": enabled, "retry_attempts": retry_attempts,
                    "retry_interval": retry_interval})

    def restore(self, policy: DestinationPolicy) -> int:
        """Take back the saved settings and subscriptions (at start, before serving), their
        pushes checked against `policy` as when they were made; how many came back.

        A row that does not make sense stops the start (StateError naming file, node, kind
        and key); a subscription the policy now refuses (the allow list changed) is dropped."""
        state = self._state
        if state is None:
            return 0
        settings = state.get(SERVICE_KIND, "settings")
        if settings is not None:
            try:
                enabled, attempts, interval = (settings["enabled"], settings["retry_attempts"],
                                               settings["retry_interval"])
                if not isinstance(enabled, bool) or not all(
                        isinstance(v, int) and not isinstance(v, bool) and v >= 0
                        for v in (attempts, interval)):
                    raise ValueError("expected a boolean and two integers")
            except (KeyError, TypeError, ValueError) as exc:
                raise state.error(SERVICE_KIND, "settings", repr(exc)) from exc
            self.enabled, self.delivery_retry_attempts = enabled, attempts
            self.delivery_retry_interval = interval
        restored = []
        for sub_id, saved in state.load(SUBSCRIPTION_KIND).items():
            try:
                subscription = _from_saved(sub_id, saved, policy)
            except (KeyError, TypeError, ValueError) as exc:
                raise state.error(SUBSCRIPTION_KIND, sub_id, repr(exc)) from exc
            refused = policy.check_url(subscription.destination, resolve=False)
            if refused:
                log.warning("event subscription %s to %s dropped: %s", sub_id,
                            redact(subscription.destination), refused)
                state.delete(SUBSCRIPTION_KIND, sub_id)
                continue
            restored.append(subscription)
        with self._lock:
            for subscription in restored:
                self._subscriptions[subscription.id] = subscription
            # a new subscription never takes a kept one's id
            last = max((int(i) for i in self._subscriptions), default=0)
            self._sub_ids = itertools.count(last + 1)
        return len(restored)

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return sorted(self._subscriptions.values(), key=lambda s: int(s.id))

    def get(self, sub_id: str) -> Subscription | None:
        with self._lock:
            return self._subscriptions.get(sub_id)

    def unsubscribe(self, sub_id: str) -> bool:
        with self._lock:
            subscription = self._subscriptions.pop(sub_id, None)
            if subscription is not None and self._state is not None:
                self._state.delete(SUBSCRIPTION_KIND, sub_id)
        if subscription is None:
            return False
        subscription.terminated = True  # its queued pushes are dropped
        return True

    def _give_up(self, subscription: Subscription) -> None:
        """Every retry of a push failed: "TerminateAfterRetries" deletes the subscription."""
        if self.unsubscribe(subscription.id):
            self.terminated += 1
            log.warning("event subscription %s to %s terminated: delivery failed after %d "
                        "retries", subscription.id, redact(subscription.destination),
                        self.delivery_retry_attempts)

    # -- SSE ----------------------------------------------------------------------------------
    def open_stream(self, event_filter: EventFilter) -> EventStream:
        with self._lock:
            if len(self._streams) >= MAX_STREAMS:
                raise StreamLimitError(f"at most {MAX_STREAMS} event streams per BMC")
            stream = EventStream(event_filter)
            self._streams.append(stream)
            return stream

    @property
    def stream_count(self) -> int:
        with self._lock:
            return len(self._streams)

    def close_stream(self, stream: EventStream) -> None:
        with self._lock:
            if stream in self._streams:
                self._streams.remove(stream)

    # -- publishing ---------------------------------------------------------------------------
    def publish(self, record: EventRecord, context_override: str | None = None,
                only: Subscription | None = None) -> int:
        """Hand `record` to every matching subscription and stream; returns the event id."""
        event_id = next(self._event_ids)
        if not self.enabled:
            return event_id
        with self._lock:
            subscriptions = [only] if only else list(self._subscriptions.values())
            streams = [] if only else list(self._streams)
        for subscription in subscriptions:
            if only is None and not subscription.filter.matches(record):
                continue
            context = subscription.context if context_override is None else context_override
            body = event_body(event_id, record, context)
            self._deliverer.submit(subscription, json.dumps(body).encode(),
                                   retries=self.delivery_retry_attempts,
                                   interval=self.delivery_retry_interval,
                                   give_up=self._give_up)
        for stream in streams:
            if stream.filter.matches(record):
                try:
                    stream.queue.put_nowait((event_id, event_body(event_id, record, None)))
                except queue.Full:  # a stalled reader loses events, the BMC does not stall
                    stream.dropped += 1
        return event_id


def _saved(subscription: Subscription) -> dict[str, Any]:
    """A subscription as the state store keeps it (its delivery counters are not kept)."""
    f = subscription.filter
    return {"destination": subscription.destination, "context": subscription.context,
            "protocol": subscription.protocol, "http_headers": subscription.http_headers,
            "filter": {"registry_prefixes": f.registry_prefixes, "message_ids": f.message_ids,
                       "resource_types": f.resource_types,
                       "origin_resources": f.origin_resources,
                       "subordinate_resources": f.subordinate_resources}}


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of strings, not {value!r}")
    return value


def _from_saved(sub_id: str, saved: Any, policy: DestinationPolicy) -> Subscription:
    """The subscription `_saved` gave (KeyError, TypeError, ValueError if it makes no sense)."""
    if not sub_id.isdigit():
        raise ValueError(f"subscription id {sub_id!r} is not a number")
    destination, context, protocol = saved["destination"], saved["context"], saved["protocol"]
    headers, f = saved["http_headers"], saved["filter"]
    if not all(isinstance(v, str) for v in (destination, context, protocol)) \
            or not isinstance(headers, dict) \
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()) \
            or not isinstance(f["subordinate_resources"], bool):
        raise ValueError("expected strings, a map of strings and a boolean")
    event_filter = EventFilter(
        *(_strings(f[name]) for name in ("registry_prefixes", "message_ids", "resource_types",
                                         "origin_resources")), f["subordinate_resources"])
    return Subscription(sub_id, destination, context, protocol, event_filter, dict(headers),
                        policy)


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def event_body(event_id: int, record: EventRecord, context: str | None) -> dict[str, Any]:
    """A Redfish Event payload holding one EventRecord."""
    entry: dict[str, Any] = {
        "EventType": "Other",  # deprecated but still read by older receivers
        "EventId": str(event_id),
        "EventTimestamp": iso(record.timestamp),
        "Severity": record.severity,
        "MessageSeverity": record.severity,
        "Message": record.message,
        "MessageId": record.message_id,
        "MessageArgs": list(record.args),
    }
    if record.origin:
        entry["OriginOfCondition"] = {"@odata.id": record.origin}
    if record.log_entry:
        entry["LogEntry"] = {"@odata.id": record.log_entry}
    body: dict[str, Any] = {
        "@odata.type": EVENT_TYPE,
        "Id": str(event_id),
        "Name": "Event Array",
        "Events": [entry],
    }
    if context is not None:
        body["Context"] = context
    return body


def threshold_record(chassis: str, event: ThresholdEvent) -> EventRecord:
    """A sensor threshold crossing (or recovery) as a ResourceEvent; `chassis` is the URI of
    the node's Chassis."""
    from redfish.resources.sensors import sensor_id  # the URI the Sensors collection uses

    critical = "critical" in event.threshold or "recoverable" in event.threshold
    level = "Error" if critical else "Warning"
    reading = f"{event.sensor.name} reading"
    if event.asserted:
        key, severity = f"Resource{level}ThresholdExceeded", "Critical" if critical else "Warning"
        text = (f"The resource property {reading} has exceeded "
                f"{'error' if critical else 'its warning'} threshold of value "
                f"{event.threshold_value:g}.")
    else:
        key, severity = f"Resource{level}ThresholdCleared", "OK"
        text = (f"The resource property {reading} has cleared the "
                f"{'error' if critical else 'warning'} threshold of value "
                f"{event.threshold_value:g}.")
    return EventRecord(f"{RESOURCE_EVENT}.{key}", text, severity,
                       (reading, f"{event.threshold_value:g}"),
                       origin=f"{chassis}/Sensors/{sensor_id(event.sensor.name)}",
                       resource_type="Sensor", timestamp=event.timestamp)


_SERVICES: weakref.WeakKeyDictionary[Node, EventService] = weakref.WeakKeyDictionary()
_SERVICES_LOCK = threading.Lock()


def restore(node: Node, policy: DestinationPolicy) -> int:
    """At start: a node with saved subscriptions gets its EventService now, so that events
    reach them before any Redfish request; how many came back (StateError: unreadable)."""
    if node.state is None or not node.state.kinds() & {SUBSCRIPTION_KIND, SERVICE_KIND}:
        return 0
    return service(node).restore(policy)


def service(node: Node) -> EventService:
    """The node's EventService, made on first use (it starts listening to the node then)."""
    with _SERVICES_LOCK:
        found = _SERVICES.get(node)
        if found is None:
            found = _SERVICES[node] = EventService(node)
        return found
