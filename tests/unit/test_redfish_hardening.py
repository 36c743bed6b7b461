"""Hardening of the Redfish front end (issue 11): hostile input gets a clear 4xx, never a 5xx,
an oversized error body, another user's sessions, a request to a forbidden address, or a leaked
secret."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.memory import MemoryBackend
from bmc.node import Node
from redfish import NODE_ENVIRON_KEY
from redfish.app import create_app
from redfish.destinations import DestinationPolicy
from redfish.event_service import Deliverer, EventRecord, EventService

SYSTEM = "/redfish/v1/Systems/node-1"
ACCOUNTS = "/redfish/v1/AccountService/Accounts"
SESSIONS = "/redfish/v1/SessionService/Sessions"


def basic(user: str = "admin", password: str = "password") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def make_node() -> Node:
    node = Node("node-1", MemoryBackend())
    node.users.add("admin", "password")
    return node


def client_for(node: Node, **app_options: Any) -> FlaskClient:
    client = create_app(**app_options).test_client()
    client.environ_base[NODE_ENVIRON_KEY] = node
    return client


@pytest.fixture
def node() -> Node:
    return make_node()


@pytest.fixture
def client(node: Node) -> FlaskClient:
    return client_for(node)


def message_ids(body: dict[str, Any]) -> list[str]:
    return [info["MessageId"].rsplit(".", 1)[1] for info in body["error"]["@Message.ExtendedInfo"]]


# -- 4: lone UTF-16 surrogates ------------------------------------------------------------------

# json.dumps (ensure_ascii) writes a lone surrogate as the escape \ud800, as a hostile client would
SURROGATE_BODIES = [
    ("POST", ACCOUNTS, {"UserName": "\ud800", "Password": "passw0rd12", "RoleId": "ReadOnly"}),
    ("PATCH", SYSTEM, {"Boot": {"BootSourceOverrideTarget": "\ud800"}}),
    ("PATCH", SYSTEM, {"\udfff": 1}),  # in a property name, which PropertyUnknown echoes
    ("POST", SESSIONS, {"UserName": "admin\udc00", "Password": "password"}),
    ("POST", f"{SYSTEM}/Actions/ComputerSystem.Reset", {"ResetType": ["x", {"a": "\ud83d"}]}),
    ("PATCH", "/redfish/v1/Managers/BMC/VirtualMedia/Cd", {"Image": "http://h/\ud800.iso"}),
    ("POST", "/redfish/v1/EventService/Subscriptions",
     {"Destination": "http://127.0.0.1:9/\ud800", "Context": "\ud800"}),
]


@pytest.mark.parametrize(("method", "path", "body"), SURROGATE_BODIES)
def test_lone_surrogate_is_a_400_not_a_500(client: FlaskClient, method: str, path: str,
                                           body: dict[str, Any],
                                           caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.open(path, method=method, data=json.dumps(body),
                               headers={**basic(), "Content-Type": "application/json"})
    assert response.status_code == 400, response.get_data()
    assert message_ids(response.get_json()) == ["MalformedJSON"]
    assert "surrogate" in response.get_json()["error"]["@Message.ExtendedInfo"][0]["Resolution"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_valid_surrogate_pair_is_an_ordinary_character(client: FlaskClient,
                                                         node: Node) -> None:
    # "\ud83d\ude00" in JSON is one emoji, which must keep working
    data = '{"UserName": "smile\\ud83d\\ude00", "Password": "passw0rd12", "RoleId": "ReadOnly"}'
    response = client.post(ACCOUNTS, data=data,
                           headers={**basic(), "Content-Type": "application/json"})
    assert response.status_code == 201, response.get_data()
    assert node.users.by_name("smile\U0001f600") is not None


SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff", "\udc00\ud800"])
TEXT = st.one_of(st.text(max_size=12),
                 st.tuples(st.text(max_size=4), SURROGATES, st.text(max_size=4)).map("".join))
NAMES = st.one_of(st.sampled_from([
    "Boot", "BootSourceOverrideTarget", "BootSourceOverrideEnabled", "BootSourceOverrideMode",
    "AssetTag", "UserName", "Password", "RoleId", "Enabled", "Locked", "Destination", "Context",
    "EventTypes", "Protocol", "Image", "Inserted", "WriteProtected", "TransferProtocolType",
    "ResetType", "Attributes", "SecureBootEnable", "ImageURI", "Targets", "CapacityBytes",
    "AccountLockoutThreshold", "ServiceEnabled", "HttpHeaders", "MessageId", "Name",
    "IndicatorLED", "LocationIndicatorActive", "@odata.etag"]), TEXT)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=8)
BODIES = st.dictionaries(NAMES, JSON, max_size=4)

TARGETS = [
    ("PATCH", SYSTEM), ("POST", f"{SYSTEM}/Actions/ComputerSystem.Reset"),
    ("POST", SESSIONS), ("PATCH", "/redfish/v1/AccountService"), ("POST", ACCOUNTS),
    ("PATCH", f"{ACCOUNTS}/2"), ("PATCH", f"{SYSTEM}/Bios/Settings"),
    ("POST", f"{SYSTEM}/Bios/Actions/Bios.ChangePassword"), ("PATCH", f"{SYSTEM}/SecureBoot"),
    ("POST", f"{SYSTEM}/SecureBoot/Actions/SecureBoot.ResetKeys"),
    ("PATCH", "/redfish/v1/Managers/BMC/VirtualMedia/Cd"),
    ("POST", "/redfish/v1/Managers/BMC/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia"),
    ("POST", f"{SYSTEM}/Storage/Storage0/Volumes"),
    ("PATCH", "/redfish/v1/EventService"), ("POST", "/redfish/v1/EventService/Subscriptions"),
    ("POST", "/redfish/v1/EventService/Actions/EventService.SubmitTestEvent"),
    ("POST", "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate"),
]

_SHARED: dict[str, Any] = {}


def shared_client() -> FlaskClient:
    # one app and node for all examples: state left by one body is input to the next
    if "client" not in _SHARED:
        _SHARED["client"] = client_for(make_node())
    return _SHARED["client"]  # type: ignore[no-any-return]


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(target=st.sampled_from(TARGETS), body=BODIES)
def test_no_json_body_gives_a_5xx(target: tuple[str, str], body: dict[str, Any]) -> None:
    method, path = target
    response = shared_client().open(path, method=method, data=json.dumps(body),
                                     headers={**basic(), "Content-Type": "application/json"})
    assert response.status_code < 500, (target, body, response.get_data())
    if response.status_code >= 400:
        assert "error" in json.loads(response.get_data())  # a Redfish error body


# -- 9: the size of an error body ---------------------------------------------------------------


def patch(client: FlaskClient, path: str, body: dict[str, Any]) -> Any:
    return client.patch(path, data=json.dumps(body),
                        headers={**basic(), "Content-Type": "application/json"})


def test_fifty_thousand_unknown_properties_get_a_small_answer(client: FlaskClient) -> None:
    body = {f"P{i}": 0 for i in range(50_000)}  # ~0.5 MiB of request
    assert len(json.dumps(body)) > 500_000
    response = patch(client, SYSTEM, body)
    assert response.status_code == 400
    assert len(response.get_data()) < 20_000  # was 20 MB: ~400 bytes an entry
    infos = response.get_json()["error"]["@Message.ExtendedInfo"]
    assert [i["MessageId"].rsplit(".", 1)[1] for i in infos] == ["PropertyUnknown"] * 20 + [
        "GeneralError"]
    assert infos[0]["MessageArgs"] == ["P0"]
    assert "49980 more" in infos[-1]["Message"]


def test_a_partial_patch_caps_its_ignored_messages_too(client: FlaskClient, node: Node) -> None:
    body = {"LocationIndicatorActive": True, **{f"P{i}": 0 for i in range(1000)}}
    response = patch(client, SYSTEM, body)
    assert response.status_code == 200, response.get_data()
    assert response.get_json()["LocationIndicatorActive"] is True
    infos = response.get_json()["@Message.ExtendedInfo"]
    assert len(infos) == 21 and "980 more" in infos[-1]["Message"]


def test_twenty_messages_are_all_shown(client: FlaskClient) -> None:
    response = patch(client, SYSTEM, {f"P{i}": 0 for i in range(20)})
    infos = response.get_json()["error"]["@Message.ExtendedInfo"]
    assert [i["MessageArgs"] for i in infos] == [[f"P{i}"] for i in range(20)]


# -- 8: one user's logins never end another user's sessions -------------------------------------


def login(client: FlaskClient, user: str, password: str = "password") -> Any:
    return client.post(SESSIONS, json={"UserName": user, "Password": password})


def alive(client: FlaskClient, token: str) -> bool:
    status: int = client.get(SYSTEM, headers={"X-Auth-Token": token}).status_code
    assert status in (200, 401)
    return status == 200


def test_a_users_logins_never_evict_another_users_sessions(node: Node) -> None:
    node.users.add("alice", "password")
    node.users.add("bob", "password")
    client = client_for(node, session_limit=8, session_user_limit=4)
    bob = [login(client, "bob").headers["X-Auth-Token"] for _ in range(2)]
    # alice logs in 50 times (a client that never logs out): she churns her own 4 sessions
    alice = [login(client, "alice").headers["X-Auth-Token"] for _ in range(50)]
    assert all(alive(client, token) for token in bob)
    assert [alive(client, token) for token in alice[-5:]] == [False, True, True, True, True]
    ids = {s["@odata.id"] for s in client.get(SESSIONS, headers=basic()).get_json()["Members"]}
    assert len(ids) == 2 + 4


def test_a_user_past_its_share_loses_its_own_least_recently_used(node: Node) -> None:
    client = client_for(node, session_limit=8, session_user_limit=3)
    tokens = [login(client, "admin").headers["X-Auth-Token"] for _ in range(3)]
    assert alive(client, tokens[0])  # now tokens[1] is the least recently used
    fourth = login(client, "admin").headers["X-Auth-Token"]
    assert [alive(client, t) for t in (*tokens, fourth)] == [True, False, True, True]


def test_a_full_service_refuses_a_new_user_instead_of_evicting(node: Node) -> None:
    for name in ("u1", "u2", "u3"):
        node.users.add(name, "password")
    client = client_for(node, session_limit=4, session_user_limit=2)
    held = [login(client, user).headers["X-Auth-Token"] for user in ("u1", "u1", "u2", "u2")]
    response = login(client, "u3")
    assert response.status_code == 503
    assert message_ids(response.get_json()) == ["CreateLimitReachedForResource"]
    assert "X-Auth-Token" not in response.headers
    assert all(alive(client, token) for token in held)
    # a user who already holds sessions when the service is full swaps out its own oldest
    again = login(client, "u1")
    assert again.status_code == 201
    assert [alive(client, t) for t in held] == [False, True, True, True]
    # and once a slot frees up, the refused user gets in
    client.delete(again.headers["Location"], headers={"X-Auth-Token": held[1]})
    assert login(client, "u3").status_code == 201


def test_the_default_share_is_a_quarter_of_the_limit(node: Node) -> None:
    node.users.add("other", "password")
    client = client_for(node)  # 64 sessions, 16 a user
    other = login(client, "other").headers["X-Auth-Token"]
    for _ in range(100):
        assert login(client, "admin").status_code == 201
    assert alive(client, other)
    members = client.get(SESSIONS, headers=basic()).get_json()["Members"]
    assert len(members) == 17


# -- 10: where events may be pushed --------------------------------------------------------------


class Receiver:
    """A real HTTP receiver on all addresses; `redirect_to` makes it answer 302 there."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((self.command, dict(self.headers)))
                self.send_response(302 if redirect_to else 200)
                if redirect_to:
                    self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = _answer  # noqa: N815 - the http.server API

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def subscribe(client: FlaskClient, destination: str, **extra: Any) -> Any:
    return client.post("/redfish/v1/EventService/Subscriptions", headers=basic(),
                       json={"Destination": destination, **extra})


@pytest.mark.parametrize("destination", [
    "http://169.254.169.254/latest/meta-data/",        # the cloud metadata service
    "http://user:s3cret@169.254.1.1:8080/e",
    "https://[fe80::1]/events", "http://[fe80::1%25eth0]:80/e",
    "http://[::ffff:169.254.169.254]/",                # the same, as an IPv4-mapped address
    "http://0.0.0.0:9/e", "http://224.0.0.1/e",
    "http://127.0.0.1:80/redfish/v1/EventService/Actions/EventService.SubmitTestEvent",
    "http://localhost/e",                              # the BMC itself (the test client: :80)
])
def test_forbidden_destinations_are_refused(client: FlaskClient, destination: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        response = subscribe(client, destination)
    assert response.status_code == 400, response.get_data()
    info = response.get_json()["error"]["@Message.ExtendedInfo"][0]
    assert info["MessageId"].endswith("PropertyValueNotInList")
    assert info["MessageArgs"][1] == "Destination"
    assert info["RelatedProperties"] == ["#/Destination"]
    assert "s3cret" not in response.get_data(as_text=True) + caplog.text
    assert client.get("/redfish/v1/EventService/Subscriptions",
                      headers=basic()).get_json()["Members"] == []


def test_a_loopback_receiver_on_another_port_is_allowed(client: FlaskClient,
                                                        receiver: Receiver) -> None:
    assert subscribe(client, receiver.url).status_code == 201
    assert subscribe(client, f"http://localhost:{receiver.port}/e").status_code == 201


def test_an_allow_list_replaces_the_default(node: Node) -> None:
    client = client_for(node, event_destinations=["10.0.0.0/8", "169.254.0.0/16"])
    assert subscribe(client, "http://10.1.2.3:8080/e").status_code == 201
    assert subscribe(client, "http://169.254.10.10/e").status_code == 201  # named: allowed
    assert subscribe(client, "http://127.0.0.1:9/e").status_code == 400
    assert subscribe(client, "http://192.168.1.1/e").status_code == 400


def push_one(events: EventService, deliverer: Deliverer) -> None:
    events.publish(EventRecord("ResourceEvent.1.4.3.ResourceChanged", "changed"))
    assert deliverer.wait_idle(10.0)


def test_a_host_name_is_checked_where_it_resolves_at_each_push(receiver: Receiver) -> None:
    # the machine's own name resolves (e.g. /etc/hosts) to one of its addresses, where the
    # receiver listens: allowed by default, refused by an allow list that does not hold it
    url = f"http://{socket.gethostname()}:{receiver.port}/events"
    node = make_node()
    deliverer = Deliverer(workers=1, timeout=2.0)
    events = EventService(node, deliverer)
    events.delivery_retry_attempts = 0
    events.subscribe(url, policy=DestinationPolicy.from_networks(["192.0.2.0/24"]))
    push_one(events, deliverer)
    assert receiver.requests == []
    events.subscribe(url, policy=DestinationPolicy())
    push_one(events, deliverer)
    assert [method for method, _ in receiver.requests] == ["POST"]


def test_a_push_does_not_follow_redirects(receiver: Receiver) -> None:
    redirector = Receiver(redirect_to=f"http://127.0.0.1:{receiver.port}/stolen")
    try:
        deliverer = Deliverer(workers=1, timeout=2.0)
        events = EventService(make_node(), deliverer)
        events.delivery_retry_attempts = 0
        events.subscribe(redirector.url, http_headers={"Authorization": "Bearer receiver-tok"},
                         policy=DestinationPolicy())
        push_one(events, deliverer)
        assert [method for method, _ in redirector.requests] == ["POST"]
        assert receiver.requests == []  # the token was not carried to where it pointed
    finally:
        redirector.close()


# -- 5: credentials in URLs are never shown or logged -------------------------------------------

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize("role", ["ReadOnly", "Operator", "Administrator"])
def test_url_credentials_are_shown_to_nobody(node: Node, role: str,
                                             receiver: Receiver) -> None:
    client = client_for(node)
    created = client.post(ACCOUNTS, headers=basic(), json={
        "UserName": "viewer", "Password": "viewer-pw1", "RoleId": role})
    assert created.status_code == 201, created.get_data()
    made = subscribe(client, f"http://hook:{SECRET}@127.0.0.1:{receiver.port}/e")
    assert made.status_code == 201
    cd = "/redfish/v1/Managers/BMC/VirtualMedia/Cd"
    inserted = client.post(f"{cd}/Actions/VirtualMedia.InsertMedia", headers=basic(),
                           json={"Image": f"http://img:{SECRET}@images.example/boot.iso"})
    assert inserted.status_code == 204, inserted.get_data()
    assert node.virtual_media.get("Cd").image.endswith(f"{SECRET}@images.example/boot.iso")
    viewer = basic("viewer", "viewer-pw1")
    for path in (made.headers["Location"], cd):
        shown = client.get(f"{path}?$expand=.", headers=viewer)
        assert shown.status_code == 200
        assert SECRET not in shown.get_data(as_text=True)
        assert "***@" in shown.get_data(as_text=True)
    image = client.get(cd, headers=viewer).get_json()["Image"]
    assert image == "http://***@images.example/boot.iso"


def test_tracebacks_in_logs_are_redacted(client: FlaskClient,
                                         caplog: pytest.LogCaptureFixture) -> None:
    client.get("/redfish/v1/")  # the app is made: its loggers carry the filter
    url = f"http://hook:{SECRET}@169.254.1.1/e"
    for name in ("redfish.event_service", "redfish.app", "redfish.resources.virtual_media"):
        try:
            raise ValueError(f"unknown url type: {url!r}")
        except ValueError:
            logging.getLogger(name).exception("pushing an event to %s failed", url)
    assert caplog.text.count("Traceback") == 3
    assert "unknown url type" in caplog.text and "***@169.254.1.1" in caplog.text
    assert SECRET not in caplog.text

