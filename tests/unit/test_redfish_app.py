"""The Redfish Flask app through Werkzeug's test client (no sockets): resources, auth, errors."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from collections import deque
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from backends.base import BackendError, BootDevice, PowerState
from backends.memory import MemoryBackend
from bmc.node import BootOverride, Node, PowerAction, RestartCause
from bmc.users import Privilege
from redfish import NODE_ENVIRON_KEY
from redfish.app import create_app

ADMIN = ("admin", "password")
SYSTEM = "/redfish/v1/Systems/node-1"
RESET = f"{SYSTEM}/Actions/ComputerSystem.Reset"


@pytest.fixture
def node() -> Node:
    node = Node("node-1", MemoryBackend())
    node.users.add("admin", "password")
    return node


def client_for(node: Node, **app_options: Any) -> FlaskClient:
    client = create_app(**app_options).test_client()
    client.environ_base[NODE_ENVIRON_KEY] = node  # what RedfishServer does per socket
    return client


@pytest.fixture
def client(node: Node) -> FlaskClient:
    return client_for(node)


def message_ids(response: TestResponse) -> list[str]:
    body = response.get_json()
    assert set(body) == {"error"}, body
    infos = body["error"]["@Message.ExtendedInfo"]
    for info in infos:
        assert {"MessageId", "Message", "Severity", "MessageSeverity", "Resolution"} <= set(info)
    return [info["MessageId"].rsplit(".", 1)[1] for info in infos]


def assert_error(response: TestResponse, status: int, message_id: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["OData-Version"] == "4.0"
    assert message_ids(response) == [message_id]
    error: dict[str, Any] = response.get_json()["error"]
    assert error["code"].startswith("Base.1.") and error["code"].endswith(message_id)
    return error


# -- public documents ---------------------------------------------------------------------------

def test_service_root_needs_no_credentials(client: FlaskClient, node: Node) -> None:
    for path in ("/redfish/v1", "/redfish/v1/"):
        response = client.get(path)
        assert response.status_code == 200
        root = response.get_json()
        assert root["@odata.id"] == "/redfish/v1/"
        assert root["@odata.type"].startswith("#ServiceRoot.v1_")
        version = tuple(int(part) for part in root["RedfishVersion"].split("."))
        assert version >= (1, 6, 0)
        assert len(root["UUID"]) == 36 and root["UUID"] != node.uuid
        for name in ("Systems", "Managers", "Chassis", "SessionService", "AccountService"):
            assert root[name]["@odata.id"] == f"/redfish/v1/{name}"
        assert root["Links"]["Sessions"]["@odata.id"] == "/redfish/v1/SessionService/Sessions"
        assert response.headers["OData-Version"] == "4.0"
        assert response.headers["ETag"].startswith('"')
        assert response.content_type == "application/json; charset=utf-8"


def test_version_document_and_odata_service_document(client: FlaskClient) -> None:
    assert client.get("/redfish").get_json() == {"v1": "/redfish/v1/"}
    document = client.get("/redfish/v1/odata").get_json()
    urls = {entry["url"] for entry in document["value"]}
    assert {"/redfish/v1/", "/redfish/v1/Systems", "/redfish/v1/Managers",
            "/redfish/v1/Chassis", "/redfish/v1/SessionService"} <= urls
    for url in urls:
        assert client.get(url, auth=ADMIN).status_code == 200, url


def odata_ids(value: Any) -> list[str]:
    """Every @odata.id of a resource inside a JSON value (not `#/Fans/0` array members)."""
    if isinstance(value, dict):
        return [v for k, item in value.items()
                for v in ([item] if k == "@odata.id" and isinstance(item, str)
                          and "#" not in item else odata_ids(item))]
    if isinstance(value, list):
        return [v for item in value for v in odata_ids(item)]
    return []


def crawl(client: FlaskClient) -> dict[str, TestResponse]:
    """GET every resource reachable from the service root by @odata.id links."""
    seen: dict[str, TestResponse] = {}
    todo = deque(["/redfish/v1/"])
    while todo:
        path = todo.popleft()
        if path in seen:
            continue
        seen[path] = response = client.get(path, auth=ADMIN)
        assert response.status_code == 200, path
        todo.extend(odata_ids(response.get_json()))
    return seen


def test_every_resource_is_a_proper_odata_resource(client: FlaskClient) -> None:
    client.post("/redfish/v1/SessionService/Sessions", json={"UserName": "admin",
                                                             "Password": "password"})
    resources = crawl(client)
    # all the resource kinds the service has, sessions and accounts included
    types = {r.get_json()["@odata.type"].split(".")[0] for r in resources.values()}
    assert {"#ServiceRoot", "#ComputerSystemCollection", "#ComputerSystem",
            "#ManagerCollection", "#Manager", "#ChassisCollection", "#Chassis",
            "#SessionService", "#SessionCollection", "#Session", "#AccountService",
            "#ManagerAccountCollection", "#ManagerAccount"} <= types
    metadata = ET.fromstring(client.get("/redfish/v1/$metadata").get_data())
    edmx = "{http://docs.oasis-open.org/odata/ns/edmx}"
    namespaces = {inc.get("Namespace") for inc in metadata.iter(f"{edmx}Include")}
    for path, response in resources.items():
        body = response.get_json()
        assert body["@odata.id"] == path
        odata_type = body["@odata.type"]
        schema = odata_type.lstrip("#").rsplit(".", 1)[0]
        assert schema in namespaces, f"{odata_type} not in $metadata"
        assert body["@odata.context"].startswith("/redfish/v1/$metadata#")
        assert response.headers["OData-Version"] == "4.0"
        assert response.headers["ETag"]
        assert "GET" in response.headers["Allow"]
        if "Members" in body:
            assert body["Members@odata.count"] == len(body["Members"])


def test_metadata_is_xml(client: FlaskClient) -> None:
    response = client.get("/redfish/v1/$metadata")
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    root = ET.fromstring(response.get_data())
    assert root.tag == "{http://docs.oasis-open.org/odata/ns/edmx}Edmx"
    uris = [ref.get("Uri") for ref in root.iter("{http://docs.oasis-open.org/odata/ns/edmx}Reference")]
    assert "http://redfish.dmtf.org/schemas/v1/ComputerSystem_v1.xml" in uris


# -- resources ----------------------------------------------------------------------------------

def test_system_resource(client: FlaskClient, node: Node) -> None:
    assert client.get("/redfish/v1/Systems", auth=ADMIN).get_json()["Members"] == [
        {"@odata.id": SYSTEM}]
    system = client.get(SYSTEM, auth=ADMIN).get_json()
    assert system["@odata.type"] == "#ComputerSystem.v1_20_0.ComputerSystem"
    assert system["Id"] == "node-1"
    assert system["PowerState"] == "Off"
    assert system["UUID"] == node.uuid
    assert system["SerialNumber"] == node.identity.serial
    assert system["Manufacturer"] == node.identity.manufacturer
    assert system["Model"] == node.identity.product
    assert system["Status"]["State"] == "Enabled"
    boot = system["Boot"]
    assert boot["BootSourceOverrideTarget"] == "None"
    assert boot["BootSourceOverrideEnabled"] == "Disabled"
    assert boot["BootSourceOverrideMode"] == "Legacy"
    assert {"None", "Pxe", "Hdd", "Cd", "BiosSetup"} <= set(
        boot["BootSourceOverrideTarget@Redfish.AllowableValues"])
    reset = system["Actions"]["#ComputerSystem.Reset"]
    assert reset["target"] == RESET
    assert reset["ResetType@Redfish.AllowableValues"] == [
        "On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi",
        "PushPowerButton", "PowerCycle"]
    assert client.get(SYSTEM, auth=ADMIN).headers["Allow"] == "GET, HEAD, PATCH"


def test_system_chassis_and_manager_link_both_ways(client: FlaskClient) -> None:
    system = client.get(SYSTEM, auth=ADMIN).get_json()
    chassis_uri = system["Links"]["Chassis"][0]["@odata.id"]
    manager_uri = system["Links"]["ManagedBy"][0]["@odata.id"]
    assert manager_uri == "/redfish/v1/Managers/BMC"
    chassis = client.get(chassis_uri, auth=ADMIN).get_json()
    manager = client.get(manager_uri, auth=ADMIN).get_json()
    assert chassis["Id"] == "node-1"
    assert chassis["Links"]["ComputerSystems"] == [{"@odata.id": SYSTEM}]
    assert chassis["Links"]["ManagedBy"] == [{"@odata.id": manager_uri}]
    assert manager["ManagerType"] == "BMC"
    assert manager["Links"]["ManagerForServers"] == [{"@odata.id": SYSTEM}]
    assert manager["Links"]["ManagerForChassis"] == [{"@odata.id": chassis_uri}]


def test_state_changed_on_the_node_shows_at_once(client: FlaskClient, node: Node) -> None:
    # what IPMI does goes through the same node model
    node.set_boot_override(BootDevice.CDROM, persistent=True, uefi=True)
    node.power(PowerAction.ON)
    system = client.get(SYSTEM, auth=ADMIN).get_json()
    assert system["PowerState"] == "On"
    assert system["Boot"]["BootSourceOverrideTarget"] == "Cd"
    assert system["Boot"]["BootSourceOverrideEnabled"] == "Continuous"
    assert system["Boot"]["BootSourceOverrideMode"] == "UEFI"
    chassis = client.get("/redfish/v1/Chassis/node-1", auth=ADMIN).get_json()
    assert chassis["PowerState"] == "On"


def test_trailing_slash_is_the_same_resource(client: FlaskClient) -> None:
    assert client.get(f"{SYSTEM}/", auth=ADMIN).get_json()["@odata.id"] == SYSTEM


def test_if_none_match_gives_304(client: FlaskClient) -> None:
    etag = client.get(SYSTEM, auth=ADMIN).headers["ETag"]
    response = client.get(SYSTEM, auth=ADMIN, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.get_data() == b""


# -- authentication -----------------------------------------------------------------------------

PROTECTED = ["/redfish/v1/Systems", SYSTEM, "/redfish/v1/Managers", "/redfish/v1/Managers/BMC",
             "/redfish/v1/Chassis", "/redfish/v1/Chassis/node-1", "/redfish/v1/SessionService",
             "/redfish/v1/SessionService/Sessions", "/redfish/v1/AccountService",
             "/redfish/v1/AccountService/Accounts", "/redfish/v1/NoSuchThing"]


@pytest.mark.parametrize("path", PROTECTED)
def test_resources_need_credentials(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert_error(response, 401, "NoValidSession")
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")


@pytest.mark.parametrize("credentials", [("admin", "wrong"), ("nobody", "password"),
                                         ("", ""), ("admin", "")])
def test_bad_basic_credentials(client: FlaskClient, credentials: tuple[str, str]) -> None:
    assert_error(client.get(SYSTEM, auth=credentials), 401, "NoValidSession")


def test_garbage_authorization_headers(client: FlaskClient) -> None:
    for value in ("Basic !!!notbase64", "Basic", "Bearer abc", "Digest x=y", "Basic " + "A" * 5000):
        response = client.get(SYSTEM, headers={"Authorization": value})
        assert_error(response, 401, "NoValidSession")
    assert_error(client.get(SYSTEM, headers={"X-Auth-Token": "forged"}), 401, "NoValidSession")


def test_password_is_checked_against_the_live_user_store(client: FlaskClient,
                                                          node: Node) -> None:
    user = node.users.by_name("admin")
    assert user is not None
    user.password = "changed"  # as an IPMI Set User Password would
    assert client.get(SYSTEM, auth=ADMIN).status_code == 401
    assert client.get(SYSTEM, auth=("admin", "changed")).status_code == 200
    user.enabled = False
    assert client.get(SYSTEM, auth=("admin", "changed")).status_code == 401


def test_no_access_user_cannot_log_in(client: FlaskClient, node: Node) -> None:
    node.users.add("locked", "pw", privilege=Privilege.NO_ACCESS)
    assert client.get(SYSTEM, auth=("locked", "pw")).status_code == 401
    response = client.post("/redfish/v1/SessionService/Sessions",
                           json={"UserName": "locked", "Password": "pw"})
    assert response.status_code == 401


def test_roles_limit_what_a_user_may_do(client: FlaskClient, node: Node) -> None:
    node.users.add("viewer", "pw", privilege=Privilege.USER)
    node.users.add("operator", "pw", privilege=Privilege.OPERATOR)
    viewer, operator = ("viewer", "pw"), ("operator", "pw")
    assert client.get(SYSTEM, auth=viewer).status_code == 200
    assert_error(client.post(RESET, json={"ResetType": "On"}, auth=viewer), 403,
                 "InsufficientPrivilege")
    assert_error(client.patch(SYSTEM, json={"Boot": {"BootSourceOverrideTarget": "Pxe"}},
                              auth=viewer), 403, "InsufficientPrivilege")
    assert node.power_state is PowerState.OFF
    assert client.post(RESET, json={"ResetType": "On"}, auth=operator).status_code == 204
    assert node.power_state is PowerState.ON
    # accounts: administrators see all, others only themselves
    members = client.get("/redfish/v1/AccountService/Accounts", auth=viewer).get_json()
    assert len(members["Members"]) == 1
    members = client.get("/redfish/v1/AccountService/Accounts", auth=ADMIN).get_json()
    assert len(members["Members"]) == 3


def test_accounts_never_show_passwords(client: FlaskClient) -> None:
    accounts = crawl(client)
    for path, response in accounts.items():
        if "/Accounts/" in path:
            body = response.get_json()
            assert body["UserName"] == "admin"
            assert body["RoleId"] == "Administrator"
            assert body["Password"] is None
        assert b'"password"' not in response.get_data()


# -- sessions -----------------------------------------------------------------------------------

def login(client: FlaskClient, user: str = "admin", password: str = "password") -> TestResponse:
    return client.post("/redfish/v1/SessionService/Sessions",
                       json={"UserName": user, "Password": password})


def test_session_login_use_and_logout(client: FlaskClient) -> None:
    response = login(client)
    assert response.status_code == 201
    token = response.headers["X-Auth-Token"]
    location = response.headers["Location"]
    body = response.get_json()
    assert location == body["@odata.id"]
    assert location.startswith("/redfish/v1/SessionService/Sessions/")
    assert body["UserName"] == "admin"
    assert token not in json.dumps(body)
    auth = {"X-Auth-Token": token}
    assert client.get(SYSTEM, headers=auth).status_code == 200
    assert client.get(location, headers=auth).get_json()["Id"] == body["Id"]
    members = client.get("/redfish/v1/SessionService/Sessions", headers=auth).get_json()
    assert members["Members"] == [{"@odata.id": location}]
    assert client.delete(location, headers=auth).status_code == 204
    assert_error(client.get(SYSTEM, headers=auth), 401, "NoValidSession")
    assert client.get(location, auth=ADMIN).status_code == 404


def test_session_login_errors(client: FlaskClient) -> None:
    assert_error(login(client, password="nope"), 401, "NoValidSession")
    sessions = "/redfish/v1/SessionService/Sessions"
    assert_error(client.post(sessions, json={"UserName": "admin"}), 400, "PropertyMissing")
    response = client.post(sessions, json={"UserName": "admin", "Password": 12345678})
    assert_error(response, 400, "PropertyValueTypeError")
    assert b"12345678" not in response.get_data()  # never echo a password, even a bad one
    assert_error(client.post(sessions, data="{", content_type="application/json"), 400,
                 "MalformedJSON")


def test_session_ends_when_its_user_goes(client: FlaskClient, node: Node) -> None:
    token = login(client).headers["X-Auth-Token"]
    user = node.users.by_name("admin")
    assert user is not None
    node.users.remove(user.user_id)
    assert client.get(SYSTEM, headers={"X-Auth-Token": token}).status_code == 401
    node.users.add("admin", "password")  # same name again: the old session stays dead
    assert client.get(SYSTEM, headers={"X-Auth-Token": token}).status_code == 401


def test_session_expires_when_idle(node: Node) -> None:
    client = client_for(node, session_timeout=0)
    token = login(client).headers["X-Auth-Token"]
    assert client.get(SYSTEM, headers={"X-Auth-Token": token}).status_code == 401


def test_sessions_of_others_are_hidden_from_non_administrators(client: FlaskClient,
                                                               node: Node) -> None:
    node.users.add("operator", "pw", privilege=Privilege.OPERATOR)
    admin_session = login(client).headers["Location"]
    operator_token = login(client, "operator", "pw").headers["X-Auth-Token"]
    auth = {"X-Auth-Token": operator_token}
    assert client.get(admin_session, headers=auth).status_code == 404
    assert client.delete(admin_session, headers=auth).status_code == 404
    members = client.get("/redfish/v1/SessionService/Sessions", headers=auth).get_json()
    assert len(members["Members"]) == 1
    members = client.get("/redfish/v1/SessionService/Sessions", auth=ADMIN).get_json()
    assert len(members["Members"]) == 2
    assert client.get(admin_session, auth=ADMIN).status_code == 200


def test_secrets_never_reach_the_logs(client: FlaskClient, caplog: pytest.LogCaptureFixture
                                      ) -> None:
    caplog.set_level(logging.DEBUG)
    token = login(client).headers["X-Auth-Token"]
    login(client, password="wrong-secret")
    client.get(SYSTEM, auth=ADMIN)
    client.post(RESET, json={"ResetType": "On"}, headers={"X-Auth-Token": token})
    assert "login refused" in caplog.text and "session" in caplog.text
    for secret in ("password", "wrong-secret", token):
        assert secret not in caplog.text


# -- Reset action -------------------------------------------------------------------------------

@pytest.mark.parametrize(("start_on", "reset_type", "power_after", "logged", "cause"), [
    (False, "On", "On", "ACPI State: S0/G0: working", RestartCause.CHASSIS_CONTROL),
    (True, "ForceOff", "Off", "Power Unit: Power off/down", RestartCause.UNKNOWN),
    (True, "GracefulShutdown", "Off", "ACPI State: S5/G2: soft-off", RestartCause.UNKNOWN),
    (False, "PushPowerButton", "On", "ACPI State: S0/G0: working", RestartCause.POWER_BUTTON),
    (True, "PushPowerButton", "Off", "ACPI State: S5/G2: soft-off", RestartCause.UNKNOWN),
    (True, "ForceRestart", "On", "Sys Restart: Initiated by hard reset",
     RestartCause.CHASSIS_CONTROL),
    (True, "GracefulRestart", "On", "Sys Restart: Initiated by warm reset",
     RestartCause.CHASSIS_CONTROL),
    (False, "GracefulRestart", "On", "ACPI State: S0/G0: working", RestartCause.CHASSIS_CONTROL),
    (True, "PowerCycle", "On", "Power Unit: Power cycle", RestartCause.CHASSIS_CONTROL),
    (False, "PowerCycle", "On", "ACPI State: S0/G0: working", RestartCause.CHASSIS_CONTROL),
    (True, "Nmi", "On", "NMI: Front panel NMI / diagnostic interrupt", RestartCause.UNKNOWN),
])
def test_reset_types(start_on: bool, reset_type: str, power_after: str, logged: str,
                     cause: RestartCause) -> None:
    backend = MemoryBackend(power_on=start_on)
    node = Node("node-1", backend)
    node.users.add("admin", "password")
    client = client_for(node)
    response = client.post(RESET, json={"ResetType": reset_type}, auth=ADMIN)
    assert response.status_code == 204
    assert node.power_state.value == power_after
    assert client.get(SYSTEM, auth=ADMIN).get_json()["PowerState"] == power_after
    # the reset happened (a restart from On ends On either way): the SEL and the cause say so
    assert node.sel.entries()[-1].message.startswith(logged)
    assert node.restart_cause is cause
    if reset_type == "Nmi":
        assert backend.nmi_count == 1


def test_reset_consumes_a_one_time_boot_override(client: FlaskClient, node: Node) -> None:
    node.set_boot_override(BootDevice.PXE, persistent=False)
    client.post(RESET, json={"ResetType": "On"}, auth=ADMIN)
    assert node.backend.last_boot_device is BootDevice.PXE  # type: ignore[attr-defined]
    assert node.boot_override.device is BootDevice.NONE


@pytest.mark.parametrize(("body", "message_id"), [
    ({"ResetType": "Explode"}, "ActionParameterValueNotInList"),
    ({"ResetType": "forceoff"}, "ActionParameterValueNotInList"),
    ({}, "ActionParameterMissing"),
    ({"ResetType": 1}, "ActionParameterValueTypeError"),
    ({"ResetType": None}, "ActionParameterValueTypeError"),
    ({"ResetType": "On", "Force": True}, "ActionParameterUnknown"),
])
def test_reset_bad_parameters(client: FlaskClient, node: Node, body: dict[str, Any],
                              message_id: str) -> None:
    assert_error(client.post(RESET, json=body, auth=ADMIN), 400, message_id)
    assert node.power_state is PowerState.OFF


@pytest.mark.parametrize(("data", "message_id"), [
    ("{not json", "MalformedJSON"),
    ("", "MalformedJSON"),
    ("\xff", "MalformedJSON"),
    ("[1, 2]", "UnrecognizedRequestBody"),
    ('"On"', "UnrecognizedRequestBody"),
    ("[" * 100000, "MalformedJSON"),
])
def test_reset_malformed_bodies(client: FlaskClient, data: str, message_id: str) -> None:
    response = client.post(RESET, data=data.encode("latin-1"), auth=ADMIN,
                           content_type="application/json")
    assert_error(response, 400, message_id)


def test_unsupported_content_type_is_415(client: FlaskClient) -> None:
    response = client.post(RESET, data="ResetType=On", auth=ADMIN,
                           content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "GeneralError")
    # no Content-Type at all is tolerated: plenty of tools leave it out
    response = client.post(RESET, data=b'{"ResetType": "On"}', auth=ADMIN)
    assert response.status_code == 204


def test_oversized_body_is_413(client: FlaskClient) -> None:
    body = json.dumps({"ResetType": "On", "Pad": "x" * (1024 * 1024)})
    response = client.post(RESET, data=body, auth=ADMIN, content_type="application/json")
    assert_error(response, 413, "GeneralError")


# -- PATCH boot override ------------------------------------------------------------------------

def patch_boot(client: FlaskClient, **boot: Any) -> TestResponse:
    return client.patch(SYSTEM, json={"Boot": boot}, auth=ADMIN)


@pytest.mark.parametrize(("before", "boot", "after"), [
    (BootOverride(), {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"},
     BootOverride(BootDevice.PXE, persistent=False)),
    (BootOverride(), {"BootSourceOverrideTarget": "Hdd",
                      "BootSourceOverrideEnabled": "Continuous"},
     BootOverride(BootDevice.DISK, persistent=True)),
    (BootOverride(), {"BootSourceOverrideTarget": "BiosSetup"},
     BootOverride(BootDevice.BIOS, persistent=False)),
    (BootOverride(BootDevice.DISK, persistent=True), {"BootSourceOverrideTarget": "Cd"},
     BootOverride(BootDevice.CDROM, persistent=True)),
    (BootOverride(BootDevice.PXE, persistent=True, uefi=True),
     {"BootSourceOverrideEnabled": "Disabled"}, BootOverride(BootDevice.NONE, uefi=True)),
    (BootOverride(BootDevice.PXE, persistent=True), {"BootSourceOverrideTarget": "None"},
     BootOverride(BootDevice.NONE, persistent=True)),
    (BootOverride(BootDevice.PXE), {"BootSourceOverrideEnabled": "Continuous"},
     BootOverride(BootDevice.PXE, persistent=True)),
    (BootOverride(BootDevice.PXE), {"BootSourceOverrideMode": "UEFI"},
     BootOverride(BootDevice.PXE, uefi=True)),
    (BootOverride(uefi=True), {"BootSourceOverrideMode": "Legacy"}, BootOverride()),
    (BootOverride(), {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled":
                      "Continuous", "BootSourceOverrideMode": "UEFI"},
     BootOverride(BootDevice.PXE, persistent=True, uefi=True)),
])
def test_patch_boot(client: FlaskClient, node: Node, before: BootOverride,
                    boot: dict[str, str], after: BootOverride) -> None:
    node.set_boot_override(before.device, persistent=before.persistent, uefi=before.uefi)
    response = patch_boot(client, **boot)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert node.boot_override == after
    # the answer is the updated resource, with the ETag a GET now gives
    shown = response.get_json()["Boot"]
    assert shown["BootSourceOverrideTarget"] == after.device.value
    assert shown["BootSourceOverrideEnabled"] == after.enabled
    assert response.headers["ETag"] == client.get(SYSTEM, auth=ADMIN).headers["ETag"]


@pytest.mark.parametrize(("body", "expected"), [
    ({"Boot": {"BootSourceOverrideTarget": "Tape"}}, ["PropertyValueNotInList"]),
    ({"Boot": {"BootSourceOverrideTarget": "pxe"}}, ["PropertyValueNotInList"]),
    ({"Boot": {"BootSourceOverrideEnabled": "Always"}}, ["PropertyValueNotInList"]),
    ({"Boot": {"BootSourceOverrideMode": "BIOS"}}, ["PropertyValueNotInList"]),
    ({"Boot": {"BootSourceOverrideTarget": 3}}, ["PropertyValueTypeError"]),
    ({"Boot": "Pxe"}, ["PropertyValueTypeError"]),
    ({"Boot": {"Unknown": "x"}}, ["PropertyUnknown"]),
    ({"Nonsense": 1}, ["PropertyUnknown"]),
    ({"PowerState": "On"}, ["PropertyNotWritable"]),
    ({}, ["EmptyJSON"]),
    ({"Boot": {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Disabled"}},
     ["PropertyValueConflict"]),
    ({"Boot": {"BootSourceOverrideTarget": "Tape", "BootSourceOverrideMode": "UEFI"},
      "UUID": "x"}, ["PropertyValueNotInList", "PropertyNotWritable"]),
])
def test_patch_bad_values_change_nothing(client: FlaskClient, node: Node,
                                         body: dict[str, Any], expected: list[str]) -> None:
    response = client.patch(SYSTEM, json=body, auth=ADMIN)
    assert response.status_code == 400
    assert sorted(message_ids(response)) == sorted(expected)
    if len(expected) > 1:
        assert response.get_json()["error"]["code"].endswith("GeneralError")
    else:
        info = response.get_json()["error"]["@Message.ExtendedInfo"][0]
        if "Boot" in body and isinstance(body["Boot"], dict):
            assert info["RelatedProperties"][0].startswith("#/Boot")
    assert node.boot_override == BootOverride()


def test_patch_ignores_echoed_annotations(client: FlaskClient, node: Node) -> None:
    system = client.get(SYSTEM, auth=ADMIN).get_json()
    boot = dict(system["Boot"], BootSourceOverrideTarget="Cd", BootSourceOverrideEnabled="Once")
    response = client.patch(SYSTEM, json={"@odata.id": SYSTEM, "Boot": boot}, auth=ADMIN)
    assert response.status_code == 200
    assert node.boot_override.device is BootDevice.CDROM


def test_patch_if_match(client: FlaskClient, node: Node) -> None:
    etag = client.get(SYSTEM, auth=ADMIN).headers["ETag"]
    stale = '"0123456789abcdef"'
    response = client.patch(SYSTEM, json={"Boot": {"BootSourceOverrideTarget": "Pxe"}},
                            auth=ADMIN, headers={"If-Match": stale})
    assert_error(response, 412, "PreconditionFailed")
    assert node.boot_override == BootOverride()
    response = client.patch(SYSTEM, json={"Boot": {"BootSourceOverrideTarget": "Pxe"}},
                            auth=ADMIN, headers={"If-Match": etag})
    assert response.status_code == 200
    # the ETag we used is now stale: the resource changed
    response = client.patch(SYSTEM, json={"Boot": {"BootSourceOverrideTarget": "Hdd"}},
                            auth=ADMIN, headers={"If-Match": etag})
    assert response.status_code == 412
    # any-match, weak form and a list naming the current tag all pass
    for template in ("*", "W/{}", '"nope", {}'):
        if_match = template.format(client.get(SYSTEM, auth=ADMIN).headers["ETag"])
        mode = "UEFI" if node.boot_override.uefi is False else "Legacy"
        response = client.patch(SYSTEM, json={"Boot": {"BootSourceOverrideMode": mode}},
                                auth=ADMIN, headers={"If-Match": if_match})
        assert response.status_code == 200, if_match


def test_change_on_the_node_invalidates_the_etag(client: FlaskClient, node: Node) -> None:
    etag = client.get(SYSTEM, auth=ADMIN).headers["ETag"]
    node.power(PowerAction.ON)  # e.g. IPMI chassis power on
    response = client.patch(SYSTEM, json={"Boot": {"BootSourceOverrideTarget": "Pxe"}},
                            auth=ADMIN, headers={"If-Match": etag})
    assert response.status_code == 412


# -- routing errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/redfish/v1/Systems/node-2", "/redfish/v1/Managers/1",
                                  "/redfish/v1/Chassis/1", "/redfish/v1/Nope", "/",
                                  "/redfish/v2", "/redfish/v1/SessionService/Sessions/abc",
                                  "/redfish/v1/AccountService/Accounts/99",
                                  "/redfish/v1/Systems/node-2/Actions/ComputerSystem.Reset"])
def test_unknown_resources_are_404(client: FlaskClient, path: str) -> None:
    method = client.post if path.endswith("Reset") else client.get
    kwargs: dict[str, Any] = {"json": {"ResetType": "On"}} if path.endswith("Reset") else {}
    error = assert_error(method(path, auth=ADMIN, **kwargs), 404, "ResourceMissingAtURI")
    assert path in error["message"]


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("delete", SYSTEM, "GET, HEAD, PATCH"),
    ("put", SYSTEM, "GET, HEAD, PATCH"),
    ("get", RESET, "POST"),
    ("patch", "/redfish/v1/Systems", "GET, HEAD"),
    ("post", "/redfish/v1", "GET, HEAD"),
    ("delete", "/redfish/v1/SessionService/Sessions", "GET, HEAD, POST"),
])
def test_wrong_method_is_405_with_allow(client: FlaskClient, method: str, path: str,
                                        allow: str) -> None:
    response = getattr(client, method)(path, auth=ADMIN, json={})
    assert_error(response, 405, "OperationNotAllowed")
    assert response.headers["Allow"] == allow


def test_backend_failure_is_a_503_and_the_rest_still_answers() -> None:
    class UnplugedBackend(MemoryBackend):
        def power_state(self) -> PowerState:
            raise BackendError("libvirt domain vanished")

    node = Node("node-1", UnplugedBackend())
    node.users.add("admin", "password")
    client = client_for(node)
    system = client.get(SYSTEM, auth=ADMIN)
    assert system.status_code == 200 and system.get_json()["Status"]["Health"] == "Critical"
    error = assert_error(client.post(RESET, json={"ResetType": "On"}, auth=ADMIN), 503,
                         "ServiceTemporarilyUnavailable")
    assert "vanished" in error["message"]
    assert client.get("/redfish/v1/Managers/BMC", auth=ADMIN).status_code == 200
    node.close()


def test_request_without_a_node_is_an_internal_error() -> None:
    client = create_app().test_client()
    assert_error(client.get("/redfish/v1"), 500, "InternalError")


def test_head_gives_the_headers_of_get(client: FlaskClient) -> None:
    get = client.get(SYSTEM, auth=ADMIN)
    head = client.head(SYSTEM, auth=ADMIN)
    assert head.status_code == 200 and head.get_data() == b""
    assert head.headers["ETag"] == get.headers["ETag"]
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
