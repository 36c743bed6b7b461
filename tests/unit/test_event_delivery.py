"""Event delivery keeps the EventService's promises: DeliveryRetryAttempts and
DeliveryRetryIntervalSeconds are what a failing push gets, TerminateAfterRetries ends the
subscription, and what the service does not do (SSE subscriptions by POST, other retry
policies) is refused rather than silently replaced."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flask.testing import FlaskClient

from backends.memory import MemoryBackend
from bmc.node import Node
from redfish import NODE_ENVIRON_KEY
from redfish.app import create_app
from redfish.event_service import Deliverer, EventRecord, EventService, service

AUTH = ("admin", "password")
SUBSCRIPTIONS = "/redfish/v1/EventService/Subscriptions"


class Receiver:
    """An HTTP event receiver on loopback that fails the first `failures` pushes (503)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.times: list[float] = []  # monotonic time of every push received
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.times.append(time.monotonic())
                status = 503 if len(outer.times) <= outer.failures else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def node() -> Node:
    node = Node("n1", MemoryBackend())
    node.users.add(*AUTH)
    return node


@pytest.fixture
def deliverer() -> Deliverer:
    return Deliverer(workers=1, timeout=2.0)


def make_receiver(failures: int) -> Iterator[Receiver]:
    receiver = Receiver(failures)
    yield receiver
    receiver.close()


@pytest.fixture
def flaky() -> Iterator[Receiver]:
    yield from make_receiver(2)


@pytest.fixture
def dead() -> Iterator[Receiver]:
    yield from make_receiver(1000)


def test_a_failed_push_is_retried_as_configured(node: Node, deliverer: Deliverer,
                                                flaky: Receiver) -> None:
    events = EventService(node, deliverer)
    events.delivery_retry_attempts, events.delivery_retry_interval = 2, 0.3
    subscription = events.subscribe(flaky.url)
    events.publish(EventRecord("ResourceEvent.1.4.3.ResourceChanged", "changed"))
    assert deliverer.wait_idle(10)
    assert len(flaky.times) == 3 and subscription.delivered == 1  # 2 refused, the 3rd taken
    gaps = [b - a for a, b in zip(flaky.times, flaky.times[1:], strict=False)]
    assert all(gap >= 0.29 for gap in gaps), gaps  # the interval is honoured
    assert events.get(subscription.id) is subscription


def test_after_the_last_retry_the_subscription_is_terminated(node: Node, deliverer: Deliverer,
                                                             dead: Receiver) -> None:
    events = EventService(node, deliverer)
    events.delivery_retry_attempts, events.delivery_retry_interval = 1, 0.05
    subscription = events.subscribe(dead.url)
    events.publish(EventRecord("ResourceEvent.1.4.3.ResourceChanged", "changed"))
    assert deliverer.wait_idle(10)
    assert len(dead.times) == 2  # the attempt and one retry
    assert subscription.failed == 1 and events.get(subscription.id) is None
    assert events.terminated == 1


def test_zero_retries_means_one_attempt(node: Node, deliverer: Deliverer,
                                        dead: Receiver) -> None:
    events = EventService(node, deliverer)
    events.delivery_retry_attempts = 0
    events.subscribe(dead.url)
    events.publish(EventRecord("ResourceEvent.1.4.3.ResourceChanged", "changed"))
    assert deliverer.wait_idle(10)
    assert len(dead.times) == 1


def test_a_retry_does_not_hold_a_worker(node: Node, deliverer: Deliverer, dead: Receiver,
                                        flaky: Receiver) -> None:
    # one worker: a long retry interval for one receiver must not delay another's events
    events = EventService(node, deliverer)
    events.delivery_retry_attempts, events.delivery_retry_interval = 1, 30.0
    events.subscribe(dead.url)
    events.publish(EventRecord("ResourceEvent.1.4.3.ResourceChanged", "one"))
    deadline = time.monotonic() + 5
    while not dead.times and time.monotonic() < deadline:
        time.sleep(0.01)
    flaky.failures = 0
    other = EventService(node, deliverer)
    other.subscribe(flaky.url)
    other.publish(EventRecord("ResourceEvent.1.4.3.ResourceChanged", "two"))
    while not flaky.times and time.monotonic() < deadline:
        time.sleep(0.01)
    assert flaky.times and len(dead.times) == 1


def client_for(node: Node) -> FlaskClient:
    client = create_app().test_client()
    client.environ_base[NODE_ENVIRON_KEY] = node
    return client


def test_what_the_service_does_not_do_is_refused(node: Node) -> None:
    client = client_for(node)
    for extra in ({"SubscriptionType": "SSE"},
                  {"DeliveryRetryPolicy": "RetryForever"},
                  {"DeliveryRetryPolicy": "SuspendRetries"}):
        response = client.post(SUBSCRIPTIONS, auth=AUTH,
                               json={"Destination": "http://127.0.0.1:9/e", **extra})
        assert response.status_code == 400, extra
        (info,) = response.get_json()["error"]["@Message.ExtendedInfo"]
        assert info["MessageId"].endswith(".PropertyValueNotInList")
        assert info["RelatedProperties"] == [f"#/{next(iter(extra))}"]
    assert service(node).subscriptions() == []
    created = client.post(SUBSCRIPTIONS, auth=AUTH, json={
        "Destination": "http://127.0.0.1:9/e", "SubscriptionType": "RedfishEvent",
        "DeliveryRetryPolicy": "TerminateAfterRetries"})
    assert created.status_code == 201
    assert created.get_json()["DeliveryRetryPolicy"] == "TerminateAfterRetries"


def test_patched_retry_settings_are_the_ones_used(node: Node) -> None:
    client = client_for(node)
    response = client.patch("/redfish/v1/EventService", auth=AUTH, json={
        "DeliveryRetryAttempts": 5, "DeliveryRetryIntervalSeconds": 7})
    assert response.status_code == 200
    events = service(node)
    assert (events.delivery_retry_attempts, events.delivery_retry_interval) == (5, 7)
    sent: list[tuple[int, float]] = []

    class Recording(Deliverer):
        def submit(self, subscription, payload, *, retries=0, interval=0.0,  # type: ignore[no-untyped-def]
                   give_up=lambda _s: None) -> bool:
            sent.append((retries, interval))
            return True

    events._deliverer = Recording()
    events.subscribe("http://127.0.0.1:9/e")
    events.publish(EventRecord("ResourceEvent.1.4.3.ResourceChanged", "changed"))
    assert sent == [(5, 7)]


def test_the_node_model_does_not_import_redfish() -> None:
    import ast
    from pathlib import Path

    # serve.py starts both front ends: the one module of bmc/ that knows they exist
    for path in (Path(__file__).resolve().parents[2] / "bmc").glob("*.py"):
        if path.name in ("serve.py", "cli.py"):
            continue
        tree = ast.parse(path.read_text())
        for item in ast.walk(tree):
            names = ([a.name for a in item.names] if isinstance(item, ast.Import)
                     else [item.module or ""] if isinstance(item, ast.ImportFrom) else [])
            assert not any(n == "redfish" or n.startswith("redfish.") for n in names), path
