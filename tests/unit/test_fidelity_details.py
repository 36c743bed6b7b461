"""Small fidelity details without sockets: the DCMI MC ID string and capabilities, Redfish 204
answers without a Content-Type, credentials redacted from error bodies, Secure Boot
databases."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from backends.memory import MemoryBackend
from bmc.node import Node, PowerAction
from ipmi.commands import NETFN_GROUP, Context, IpmiError, load_all
from redfish import NODE_ENVIRON_KEY
from redfish.app import create_app
from redfish.errors import error, redact_urls

AUTH = ("admin", "password")
SYSTEM = "/redfish/v1/Systems/n1"


@pytest.fixture
def node() -> Node:
    node = Node("n1", MemoryBackend())
    node.users.add(*AUTH)
    return node


@pytest.fixture
def client(node: Node) -> FlaskClient:
    client = create_app().test_client()
    client.environ_base[NODE_ENVIRON_KEY] = node
    return client


def dcmi(node: Node, cmd: int, data: bytes) -> tuple[int, bytes]:
    entry = load_all()[(NETFN_GROUP, cmd)]
    try:
        return 0, entry.handler(Context(node, data, None, None, NETFN_GROUP, cmd))
    except IpmiError as exc:
        return exc.code, b""


# -- DCMI ---------------------------------------------------------------------------------------
def test_mc_id_string_get_and_set(node: Node) -> None:
    assert dcmi(node, 0x09, b"\xdc\x00\x00") == (0, b"\xdc\x02")  # "n1": 2 bytes, none asked
    assert dcmi(node, 0x09, b"\xdc\x00\x10") == (0, b"\xdc\x02n1")
    # set in chunks, as pyghmi and ipmitool do, the null terminator last
    text = b"bmc-of-rack-7-slot-12"
    assert dcmi(node, 0x0A, b"\xdc\x00\x10" + text[:16]) == (0, b"\xdc\x10")
    assert dcmi(node, 0x0A, b"\xdc\x10\x06" + text[16:] + b"\x00") == (0, b"\xdc\x16")
    assert dcmi(node, 0x09, b"\xdc\x00\x10") == (0, b"\xdc\x15" + text[:16])
    assert dcmi(node, 0x09, b"\xdc\x10\x10") == (0, b"\xdc\x15" + text[16:])
    # a shorter name replaces the longer one (offset 0 starts a new string)
    assert dcmi(node, 0x0A, b"\xdc\x00\x04bmc\x00") == (0, b"\xdc\x04")
    assert dcmi(node, 0x09, b"\xdc\x00\x10") == (0, b"\xdc\x03bmc")
    assert dcmi(node, 0x09, b"\xdc\x00\x11")[0] == 0xC9  # more than 16 bytes at once
    assert dcmi(node, 0x0A, b"\xdc\x3c\x05abcde")[0] == 0xC9  # past the 64 bytes
    assert dcmi(node, 0x0A, b"\xdc\x00\x05abc")[0] == 0xC7  # fewer bytes than announced
    assert dcmi(node, 0x09, b"\xdd\x00\x00")[0] == 0xCC  # not the DCMI group


def test_capabilities_claim_no_power_management(node: Node) -> None:
    code, data = dcmi(node, 0x01, b"\xdc\x01")
    # mandatory capabilities, no optional ones (no power limiting), primary LAN channel
    assert code == 0 and data[4:] == b"\x0f\x00\x08"
    for cmd in (0x03, 0x04, 0x05):  # Get/Set/Activate Power Limit: not implemented
        assert (NETFN_GROUP, cmd) not in load_all()


def test_dcmi_temperatures_leave_out_sensors_not_scanned(node: Node) -> None:
    code, data = dcmi(node, 0x10, b"\xdc\x01\x41\x00\x01")  # CPU temperatures
    assert code == 0 and data[1:3] == b"\x02\x00"  # two CPUs, none readable while off
    node.power(PowerAction.ON)
    code, data = dcmi(node, 0x10, b"\xdc\x01\x41\x00\x01")
    assert code == 0 and data[1:3] == b"\x02\x02" and data[4] == 1 and data[6] == 2


# -- Redfish --------------------------------------------------------------------------------------
def test_204_answers_have_no_content_type(client: FlaskClient) -> None:
    response = client.post(f"{SYSTEM}/Actions/ComputerSystem.Reset", json={"ResetType": "On"},
                           auth=AUTH)
    assert response.status_code == 204
    assert "Content-Type" not in response.headers and response.data == b""


@pytest.mark.parametrize(("text", "shown"), [
    ("http://user:pw@host/x.iso", "http://***@host/x.iso"),
    ("ftp://user:p@ss/w0rd@host:21/x", "ftp://***@host:21/x"),  # a raw '@' and '/' in it
    ("'nfs://a:b@h/x' and https://c:d@h2/", "'nfs://***@h/x' and https://***@h2/"),
    ("http://host/x.iso", "http://host/x.iso"),
    ("mail me at root@example.com", "mail me at root@example.com"),  # no URL: untouched
])
def test_redact_urls(text: str, shown: str) -> None:
    assert redact_urls(text) == shown


def test_error_bodies_redact_urls_in_args_and_text() -> None:
    body = error(400, "PropertyValueFormatError", "https://u:secret@h/x", "Destination",
                 ).body()
    info = body["error"]["@Message.ExtendedInfo"][0]
    assert "secret" not in repr(body)
    assert info["MessageArgs"] == ["https://***@h/x", "Destination"]
    custom = error(400, "GeneralError", text="cannot fetch https://u:secret@h/x").body()
    assert "secret" not in repr(custom) and "https://***@h/x" in repr(custom)


def test_secure_boot_databases(client: FlaskClient, node: Node) -> None:
    uri = f"{SYSTEM}/SecureBoot/SecureBootDatabases"
    secure_boot = client.get(f"{SYSTEM}/SecureBoot", auth=AUTH).get_json()
    assert secure_boot["SecureBootDatabases"] == {"@odata.id": uri}
    collection = client.get(uri, auth=AUTH).get_json()
    assert collection["@odata.type"] == "#SecureBootDatabaseCollection." \
                                        "SecureBootDatabaseCollection"
    assert [m["@odata.id"].rsplit("/", 1)[1] for m in collection["Members"]] == [
        "PK", "KEK", "db", "dbx", "PKDefault", "KEKDefault", "dbDefault", "dbxDefault"]
    db = client.get(f"{uri}/db", auth=AUTH).get_json()
    assert db["@odata.type"] == "#SecureBootDatabase.v1_0_3.SecureBootDatabase"
    assert db["DatabaseId"] == "db" and "factory keys" in db["Description"]
    action = db["Actions"]["#SecureBootDatabase.ResetKeys"]
    assert action["ResetKeysType@Redfish.AllowableValues"] == ["ResetAllKeysToDefault",
                                                               "DeleteAllKeys"]
    assert client.post(action["target"], json={"ResetKeysType": "DeleteAllKeys"},
                       auth=AUTH).status_code == 204
    assert "no keys" in client.get(f"{uri}/db", auth=AUTH).get_json()["Description"]
    assert node.secure_boot.mode == "DeployedMode"  # db is not the platform key
    assert client.post(f"{uri}/PK/Actions/SecureBootDatabase.ResetKeys",
                       json={"ResetKeysType": "DeleteAllKeys"}, auth=AUTH).status_code == 204
    assert node.secure_boot.mode == "SetupMode"
    refused = client.post(f"{uri}/PKDefault/Actions/SecureBootDatabase.ResetKeys",
                          json={"ResetKeysType": "DeleteAllKeys"}, auth=AUTH)
    assert refused.status_code == 400
    assert refused.get_json()["error"]["code"].endswith("ActionNotSupported")
    assert client.post(f"{uri}/PK/Actions/SecureBootDatabase.ResetKeys",
                       json={"ResetKeysType": "DeletePK"}, auth=AUTH).status_code == 400
    assert client.get(f"{uri}/dbr", auth=AUTH).status_code == 404
    # SecureBoot.ResetKeys restores every database
    client.post(f"{SYSTEM}/SecureBoot/Actions/SecureBoot.ResetKeys",
                json={"ResetKeysType": "ResetAllKeysToDefault"}, auth=AUTH)
    assert node.secure_boot.has_keys("PK") and node.secure_boot.has_keys("db")
