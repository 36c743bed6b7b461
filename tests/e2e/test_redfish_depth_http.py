"""Redfish protocol details and the newer services over real HTTP, driven with `requests`.

ETags and If-Match, Allow and 405, $select/$expand, error bodies for bad input, accounts and
lockout, logs, the EventService (a local HTTP receiver on 127.0.0.1 gets the pushes) and the
SSE stream. One in-process RedfishServer on a free loopback port per test.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from backends.memory import MemoryBackend
from bmc.lockout import AccountLockout
from bmc.node import Node, PowerAction
from redfish import event_service
from redfish.server import RedfishServer

ADMIN = ("admin", "password")
TIMEOUT = 5
V1 = "/redfish/v1"
SYSTEM = f"{V1}/Systems/node-a"


@dataclass
class Bmc:
    node: Node
    url: str

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, auth=kwargs.pop("auth", ADMIN), timeout=TIMEOUT,
                            **kwargs)

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path, auth=kwargs.pop("auth", ADMIN),
                                timeout=TIMEOUT, **kwargs)


@pytest.fixture
def bmc() -> Iterator[Bmc]:
    node = Node("node-a", MemoryBackend(power_on=True))
    node.users.add("admin", "password")
    server = RedfishServer([("127.0.0.1", 0, node)], threads=6,
                           app_options={"sse_heartbeat": 0.2, "sse_max_seconds": 5.0})
    server.start()
    try:
        yield Bmc(node, f"http://127.0.0.1:{server.ports[0]}")
    finally:
        server.stop()


def message_ids(response: requests.Response) -> list[str]:
    assert response.headers["Content-Type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"}, body
    return [i["MessageId"].rsplit(".", 1)[1] for i in body["error"]["@Message.ExtendedInfo"]]


# -- ETags, Allow, queries ----------------------------------------------------------------------

@pytest.mark.parametrize(("path", "body"), [
    (f"{SYSTEM}/Bios/Settings", {"Attributes": {"ProcTurboMode": "Disabled"}}),
    (f"{SYSTEM}/SecureBoot", {"SecureBootEnable": False}),
    (f"{V1}/AccountService", {"AccountLockoutThreshold": 7}),
    (f"{V1}/AccountService/Accounts/2", {"Password": "password"}),
    (f"{V1}/EventService", {"DeliveryRetryAttempts": 1}),
    (f"{V1}/Managers/BMC/VirtualMedia/Cd", {"WriteProtected": True}),
    (SYSTEM, {"IndicatorLED": "Lit"}),
])
def test_patch_honours_if_match(bmc: Bmc, path: str, body: dict[str, Any]) -> None:
    got = bmc.get(path)
    etag = got.headers["ETag"]
    assert got.json()["@odata.etag"] == etag  # the payload names the same ETag
    stale = bmc.send("PATCH", path, json=body, headers={"If-Match": '"0000"'})
    assert stale.status_code == 412 and message_ids(stale) == ["PreconditionFailed"]
    assert bmc.get(path).headers["ETag"] == etag  # nothing changed
    ok = bmc.send("PATCH", path, json=body, headers={"If-Match": etag})
    assert ok.status_code == 200, ok.text
    assert ok.headers["ETag"] == bmc.get(path).headers["ETag"]


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PATCH", f"{SYSTEM}/Bios", "GET, HEAD"),
    ("DELETE", f"{SYSTEM}/Bios/Settings", "GET, HEAD, PATCH"),
    ("GET", f"{SYSTEM}/Bios/Actions/Bios.ResetBios", "POST"),
    ("POST", f"{V1}/TaskService/Tasks", "GET, HEAD"),
    ("PUT", f"{V1}/AccountService/Accounts/2", "DELETE, GET, HEAD, PATCH"),
    ("DELETE", f"{V1}/UpdateService", "GET, HEAD"),
])
def test_wrong_method_is_405_with_allow(bmc: Bmc, method: str, path: str, allow: str) -> None:
    response = bmc.send(method, path, json={})
    assert response.status_code == 405
    assert message_ids(response) == ["OperationNotAllowed"]
    assert response.headers["Allow"] == allow


def test_every_get_has_allow_link_and_etag(bmc: Bmc) -> None:
    for path in (f"{V1}/", SYSTEM, f"{SYSTEM}/Bios", f"{V1}/AccountService/Accounts/2",
                 f"{V1}/Chassis/node-a/Thermal"):
        response = bmc.get(path)
        assert response.status_code == 200
        assert "GET" in response.headers["Allow"]
        version = response.json()["@odata.type"].split(".")[1]
        assert response.links["describedby"]["url"].endswith(f".{version}.json")
        assert response.headers["ETag"]


def test_select_and_expand(bmc: Bmc) -> None:
    root = bmc.get(f"{V1}/").json()
    features = root["ProtocolFeaturesSupported"]
    assert features["SelectQuery"] and features["ExpandQuery"]["ExpandAll"]
    selected = bmc.get(SYSTEM, params={"$select": "PowerState,Boot/BootSourceOverrideMode"})
    body = selected.json()
    assert set(body) - {"@odata.id", "@odata.type", "@odata.context", "@odata.etag"} == \
        {"PowerState", "Boot"}
    assert set(body["Boot"]) == {"BootSourceOverrideMode"}
    assert selected.headers["ETag"] == bmc.get(SYSTEM).headers["ETag"]  # the resource's ETag
    expanded = bmc.get(f"{SYSTEM}/Processors", params={"$expand": "."}).json()
    assert [m["Id"] for m in expanded["Members"]] == ["CPU0", "CPU1"]
    # "~" expands Links only; "*" both; levels bound the depth
    links = bmc.get(SYSTEM, params={"$expand": "~"}).json()
    assert links["Links"]["Chassis"][0]["Id"] == "node-a"
    assert set(links["Bios"]) == {"@odata.id"}
    deep = bmc.get(f"{V1}/Systems", params={"$expand": "*($levels=2)"}).json()
    assert deep["Members"][0]["Bios"]["Id"] == "Bios"
    # the public service root expands only for a caller who may read what it links to
    anonymous = requests.get(f"{bmc.url}{V1}/", params={"$expand": "*"}, timeout=TIMEOUT)
    assert anonymous.json()["Systems"] == {"@odata.id": f"{V1}/Systems"}
    everything = bmc.get(f"{V1}/", params={"$expand": "*($levels=3)"})
    assert everything.json()["Systems"]["Members"][0]["Id"] == "node-a"
    assert bmc.get(f"{V1}/", params={"$expand": "*($levels=9)"}).status_code == 400
    assert bmc.get(f"{V1}/", params={"$expand": "Systems"}).status_code == 400
    unknown = bmc.get(f"{V1}/", params={"$top": "1"})
    assert unknown.status_code == 501 and message_ids(unknown) == ["QueryParameterUnsupported"]
    assert bmc.get(f"{V1}/", params={"ignored": "x"}).status_code == 200


def test_odata_documents_list_everything_served(bmc: Bmc) -> None:
    service = requests.get(f"{bmc.url}{V1}/odata", timeout=TIMEOUT).json()
    names = {v["name"] for v in service["value"]}
    assert {"Systems", "EventService", "Tasks", "UpdateService", "JsonSchemas"} <= names
    metadata = requests.get(f"{bmc.url}{V1}/$metadata", timeout=TIMEOUT).text
    for namespace in ("Bios.v1_2_0", "VirtualMedia.v1_6_0", "Task.v1_7_0", "Sensor.v1_9_0"):
        assert f'Namespace="{namespace}"' in metadata
    schemas = bmc.get(f"{V1}/JsonSchemas").json()
    assert f"{V1}/JsonSchemas/Bios.v1_2_0" in [m["@odata.id"] for m in schemas["Members"]]
    bios_schema = bmc.get(f"{V1}/JsonSchemas/Bios.v1_2_0").json()
    assert bios_schema["Location"][0]["PublicationUri"].endswith("/Bios.v1_2_0.json")


# -- bad input: the right status and a Redfish error body, never a 500 --------------------------

@pytest.mark.parametrize(("path", "data", "status", "expected"), [
    (f"{SYSTEM}/Bios/Settings", b"{not json", 400, ["MalformedJSON"]),
    (f"{SYSTEM}/Bios/Settings", b"[1, 2]", 400, ["UnrecognizedRequestBody"]),
    (f"{SYSTEM}/Bios/Settings", b'{"Attributes": "x"}', 400, ["PropertyValueTypeError"]),
    (f"{SYSTEM}/Bios/Settings", b'{"Attributes": {"MemTest": "yes"}}', 400,
     ["PropertyValueTypeError"]),
    (f"{SYSTEM}/Bios/Settings", b'{"Attributes": {"SystemModelName": "x"}}', 400,
     ["PropertyNotWritable"]),
    (f"{SYSTEM}/SecureBoot", b'{"SecureBootEnable": "yes"}', 400, ["PropertyValueTypeError"]),
    (f"{SYSTEM}/SecureBoot", b'{"Bogus": 1}', 400, ["PropertyUnknown"]),
    (f"{SYSTEM}/SecureBoot", b'{"SecureBootMode": "SetupMode"}', 400, ["PropertyNotWritable"]),
    (f"{SYSTEM}/SecureBoot", b'{"@odata.id": "x"}', 400, ["NoOperation"]),
    (f"{SYSTEM}/SecureBoot", b"{}", 400, ["EmptyJSON"]),
    (f"{V1}/AccountService", b'{"AccountLockoutThreshold": -1}', 400,
     ["PropertyValueOutOfRange"]),
    (f"{V1}/AccountService", b'{"MaxPasswordLength": 30}', 400, ["PropertyNotWritable"]),
    (f"{V1}/AccountService/Accounts/2", b'{"RoleId": "Root"}', 400, ["PropertyValueNotInList"]),
    (f"{V1}/AccountService/Accounts/2", b'{"Password": "short"}', 400,
     ["PasswordIncorrectLength"]),
])
def test_bad_patch_bodies(bmc: Bmc, path: str, data: bytes, status: int,
                          expected: list[str]) -> None:
    before = bmc.get(path).headers["ETag"]
    response = bmc.send("PATCH", path, data=data, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert message_ids(response) == expected
    assert bmc.get(path).headers["ETag"] == before


def test_partly_unknown_patch_is_applied_and_says_what_was_ignored(bmc: Bmc) -> None:
    response = bmc.send("PATCH", f"{V1}/AccountService/Accounts/2",
                        json={"Password": "new-password", "BogusProp": "foo"})
    assert response.status_code == 200
    infos = response.json()["@Message.ExtendedInfo"]
    assert [i["MessageId"].rsplit(".", 1)[1] for i in infos] == ["PropertyUnknown"]
    assert bmc.get(SYSTEM, auth=("admin", "new-password")).status_code == 200


def test_oversized_body_is_413(bmc: Bmc) -> None:
    response = bmc.send("PATCH", SYSTEM, data=b'{"x": "' + b"a" * (1024 * 1024) + b'"}',
                        headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert message_ids(response) == ["GeneralError"]


def test_garbage_never_makes_a_500(bmc: Bmc) -> None:
    """Every writable URI and action gets a few wrong bodies: 4XX each time."""
    targets = [
        ("PATCH", SYSTEM), ("PATCH", f"{SYSTEM}/Bios/Settings"), ("PATCH", f"{SYSTEM}/SecureBoot"),
        ("POST", f"{SYSTEM}/Bios/Actions/Bios.ResetBios"),
        ("POST", f"{SYSTEM}/Bios/Actions/Bios.ChangePassword"),
        ("POST", f"{SYSTEM}/SecureBoot/Actions/SecureBoot.ResetKeys"),
        ("POST", f"{V1}/Managers/BMC/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia"),
        ("POST", f"{V1}/Managers/BMC/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia"),
        ("PATCH", f"{V1}/Managers/BMC/VirtualMedia/Cd"),
        ("POST", f"{V1}/AccountService/Accounts"), ("PATCH", f"{V1}/AccountService/Accounts/2"),
        ("PATCH", f"{V1}/AccountService"), ("PATCH", f"{V1}/EventService"),
        ("POST", f"{V1}/EventService/Subscriptions"),
        ("POST", f"{V1}/EventService/Actions/EventService.SubmitTestEvent"),
        ("POST", f"{V1}/UpdateService/Actions/UpdateService.SimpleUpdate"),
        ("POST", f"{SYSTEM}/Storage/Storage0/Volumes"),
        ("POST", f"{SYSTEM}/LogServices/Log/Actions/LogService.ClearLog"),
    ]
    bodies: list[bytes] = [b"null", b'"x"', b"1e999", b'{"Image": [], "ImageURI": {}}',
                           b'{"Attributes": {"BootMode": null}, "Destination": 5}',
                           b'{"Links": {"Drives": [1]}, "RAIDType": "RAID1"}',
                           b'{"ResetKeysType": null, "PasswordName": "AdminPassword"}',
                           b"\xff\xfe", b'{"UserName": "a:b", "Password": 12, "RoleId": []}']
    for method, path in targets:
        for data in bodies:
            response = bmc.send(method, path, data=data,
                                headers={"Content-Type": "application/json"})
            assert 400 <= response.status_code < 500, (method, path, data, response.text)
            assert response.json()["error"]["@Message.ExtendedInfo"]


# -- accounts, roles, lockout -------------------------------------------------------------------

def test_accounts_are_the_node_users(bmc: Bmc) -> None:
    service = bmc.get(f"{V1}/AccountService").json()
    assert (service["MinPasswordLength"], service["MaxPasswordLength"]) == (8, 20)
    roles = bmc.get(f"{V1}/AccountService/Roles").json()
    assert [m["@odata.id"].rsplit("/", 1)[1] for m in roles["Members"]] == \
        ["Administrator", "Operator", "ReadOnly"]
    created = bmc.send("POST", f"{V1}/AccountService/Accounts",
                       json={"UserName": "ops", "Password": "ops-password", "RoleId": "Operator"})
    assert created.status_code == 201, created.text
    uri = created.headers["Location"]
    user = bmc.node.users.by_name("ops")
    assert user is not None and user.privilege.redfish_role == "Operator"
    assert bmc.send("POST", f"{V1}/AccountService/Accounts",
                    json={"UserName": "ops", "Password": "ops-password",
                          "RoleId": "Operator"}).status_code == 409
    # an operator may not manage accounts, but may change its own password
    ops = ("ops", "ops-password")
    assert bmc.send("PATCH", uri, json={"RoleId": "Administrator"}, auth=ops).status_code == 403
    assert bmc.send("PATCH", uri, json={"Password": "ops-password-2"}, auth=ops).status_code == 200
    assert bmc.node.users.authenticate("ops", "ops-password-2") is not None
    renamed = bmc.send("PATCH", uri, json={"UserName": "operator", "Enabled": False})
    assert renamed.status_code == 200 and renamed.json()["UserName"] == "operator"
    assert bmc.node.users.by_name("operator").enabled is False  # type: ignore[union-attr]
    assert bmc.send("DELETE", uri).status_code == 204
    assert bmc.node.users.by_name("operator") is None
    # the last administrator stays
    last = bmc.send("PATCH", f"{V1}/AccountService/Accounts/2", json={"RoleId": "ReadOnly"})
    assert last.status_code == 400
    assert bmc.send("DELETE", f"{V1}/AccountService/Accounts/2").status_code == 400


def test_account_lockout(bmc: Bmc) -> None:
    # the lockout's clock is stepped, not slept through: on a loaded machine three failed
    # logins could otherwise outlast a 1 s lock, or the reset window, before the check
    now = [1000.0]
    bmc.node.build_features()
    bmc.node.lockout = AccountLockout(clock=lambda: now[0])
    patched = bmc.send("PATCH", f"{V1}/AccountService",
                       json={"AccountLockoutThreshold": 3, "AccountLockoutDuration": 1,
                             "AccountLockoutCounterResetAfter": 1})
    assert patched.status_code == 200, patched.text
    bmc.node.users.add("victim", "victim-password", bmc.node.users.all()[0].privilege)
    for _ in range(3):
        assert bmc.get(SYSTEM, auth=("victim", "guess")).status_code == 401
    # locked: even the right password is refused, over Basic and for a session
    assert bmc.get(SYSTEM, auth=("victim", "victim-password")).status_code == 401
    login = bmc.send("POST", f"{V1}/SessionService/Sessions",
                     json={"UserName": "victim", "Password": "victim-password"}, auth=None)
    assert login.status_code == 401
    account = next(a for a in (bmc.get(m["@odata.id"]).json() for m in
                               bmc.get(f"{V1}/AccountService/Accounts").json()["Members"])
                   if a["UserName"] == "victim")
    assert account["Locked"] is True
    now[0] += 1.1  # past AccountLockoutDuration
    assert bmc.get(SYSTEM, auth=("victim", "victim-password")).status_code == 200
    # an administrator can unlock at once
    for _ in range(3):
        bmc.get(SYSTEM, auth=("victim", "guess"))
    assert bmc.get(SYSTEM, auth=("victim", "victim-password")).status_code == 401
    unlocked = bmc.send("PATCH", account["@odata.id"], json={"Locked": False})
    assert unlocked.status_code == 200 and unlocked.json()["Locked"] is False
    assert bmc.get(SYSTEM, auth=("victim", "victim-password")).status_code == 200


# -- logs ---------------------------------------------------------------------------------------

def test_system_log_and_sel(bmc: Bmc) -> None:
    bmc.send("POST", f"{SYSTEM}/Actions/ComputerSystem.Reset", json={"ResetType": "ForceOff"})
    bmc.send("POST", f"{SYSTEM}/Actions/ComputerSystem.Reset", json={"ResetType": "On"})
    entries = bmc.get(f"{SYSTEM}/LogServices/Log/Entries").json()["Members"]
    assert [e["MessageId"].rsplit(".", 1)[1] for e in entries] == \
        ["ResourcePoweredOff", "ResourcePoweredOn"]
    sel = bmc.get(f"{V1}/Managers/BMC/LogServices/SEL/Entries").json()["Members"]
    assert [e["Message"] for e in sel] == [e.message for e in bmc.node.sel.entries()]
    assert [e["Id"] for e in sel] == [str(e.record_id) for e in bmc.node.sel.entries()]
    one = bmc.get(sel[-1]["@odata.id"]).json()
    assert one["EntryType"] == "SEL" and one["Message"] == sel[-1]["Message"]
    clear = f"{V1}/Managers/BMC/LogServices/SEL/Actions/LogService.ClearLog"
    assert bmc.send("POST", clear, json={}).status_code == 204
    assert len(bmc.node.sel.entries()) <= 1  # IPMI keeps a "log cleared" entry
    assert bmc.send("POST", f"{SYSTEM}/LogServices/Log/Actions/LogService.ClearLog"
                    ).status_code == 204
    assert bmc.get(f"{SYSTEM}/LogServices/Log/Entries").json()["Members"] == []


# -- events -------------------------------------------------------------------------------------

class Receiver:
    """A local HTTP server that collects what the BMC POSTs to it."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[dict[str, str], dict[str, Any]]] = queue.Queue()
        received = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                received.put((dict(self.headers), json.loads(self.rfile.read(length))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def next(self, timeout: float = 5.0) -> tuple[dict[str, str], dict[str, Any]]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_subscriptions_get_events(bmc: Bmc, receiver: Receiver) -> None:
    created = bmc.send("POST", f"{V1}/EventService/Subscriptions", json={
        "Destination": receiver.url, "Context": "ironic-42", "Protocol": "Redfish",
        "RegistryPrefixes": ["ResourceEvent"], "MessageIds": ["ResourcePoweredOff"],
        "HttpHeaders": [{"X-Receiver-Token": "s3cret"}]})
    assert created.status_code == 201, created.text
    sub_uri = created.headers["Location"]
    assert bmc.get(sub_uri).json()["HttpHeaders"] == []  # never shown back
    # a power change made over Redfish reaches the receiver, from a background thread
    reset = bmc.send("POST", f"{SYSTEM}/Actions/ComputerSystem.Reset",
                     json={"ResetType": "ForceOff"})
    assert reset.status_code == 204
    headers, event = receiver.next()
    assert headers["X-Receiver-Token"] == "s3cret"
    assert event["Context"] == "ironic-42"
    record = event["Events"][0]
    assert record["MessageId"].startswith("ResourceEvent.") and \
        record["MessageId"].endswith(".ResourcePoweredOff")
    assert record["OriginOfCondition"]["@odata.id"] == SYSTEM
    # the test event goes to every subscription
    test = bmc.send("POST", f"{V1}/EventService/Actions/EventService.SubmitTestEvent",
                    json={"MessageId": "ResourceEvent.1.4.3.TestMessage", "Message": "hi"})
    assert test.status_code == 204
    assert receiver.next()[1]["Events"][0]["MessageId"].endswith(".TestMessage")
    assert bmc.send("DELETE", sub_uri).status_code == 204
    bmc.node.power(PowerAction.ON)
    with pytest.raises(queue.Empty):
        while True:  # drain what was queued before the DELETE
            receiver.next(timeout=0.5)


def test_a_dead_receiver_blocks_nothing(bmc: Bmc) -> None:
    # nothing listens on port 9 (discard) here: pushes fail in the background
    bmc.send("POST", f"{V1}/EventService/Subscriptions",
             json={"Destination": "http://127.0.0.1:9/nowhere"})
    started = time.monotonic()
    for reset in ("ForceOff", "On", "ForceRestart"):
        response = bmc.send("POST", f"{SYSTEM}/Actions/ComputerSystem.Reset",
                            json={"ResetType": reset})
        assert response.status_code == 204
    assert time.monotonic() - started < 2.0


def _sse_lines(response: requests.Response) -> Iterator[str]:
    for raw in response.iter_lines(chunk_size=1, decode_unicode=True):
        yield raw or ""


def test_sse_stream(bmc: Bmc) -> None:
    service = bmc.get(f"{V1}/EventService").json()
    sse_uri = service["ServerSentEventUri"]
    response = requests.get(bmc.url + sse_uri, auth=ADMIN, stream=True, timeout=TIMEOUT,
                            params={"$filter": "RegistryPrefix eq ResourceEvent and "
                                               "MessageId eq ResourcePoweredOff"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    lines = _sse_lines(response)
    assert next(lines).startswith(":")  # the opening comment
    assert event_service.service(bmc.node).stream_count == 1
    bmc.node.power(PowerAction.FORCE_OFF)  # over "IPMI": the node model
    data = None
    for line in lines:
        if line.startswith("data: "):
            data = json.loads(line[6:])
            break
    assert data is not None
    assert data["Events"][0]["MessageId"].endswith("ResourcePoweredOff")
    # heartbeats keep coming while nothing happens
    assert any(line.startswith(": keep-alive") for line, _ in zip(lines, range(6), strict=False))
    response.close()  # the client goes away: the stream ends at the next heartbeat
    deadline = time.monotonic() + 3
    while event_service.service(bmc.node).stream_count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert event_service.service(bmc.node).stream_count == 0
    bad = bmc.get(sse_uri, params={"$filter": "Nonsense gt 3"})
    assert bad.status_code == 400


def test_sse_streams_are_capped(bmc: Bmc) -> None:
    streams = [requests.get(f"{bmc.url}{V1}/EventService/SSE", auth=ADMIN, stream=True,
                            timeout=TIMEOUT) for _ in range(4)]
    try:
        assert [s.status_code for s in streams] == [200] * 4
        refused = bmc.get(f"{V1}/EventService/SSE")
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        # other requests are still served while the streams are open
        assert bmc.get(SYSTEM).status_code == 200
    finally:
        for stream in streams:
            stream.close()
