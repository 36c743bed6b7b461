"""Hardening of the Redfish front end (issue 11): hostile input gets a clear 4xx, never a 5xx,
an oversized error body, another user's sessions, a request to a forbidden address, or a leaked
secret."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backends.memory import MemoryBackend
from bmc.node import Node
from redfish import NODE_ENVIRON_KEY
from redfish.app import create_app

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
