"""Redfish over real HTTP: one RedfishServer, two BMCs on two ports, driven with `requests`."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from backends.base import BootDevice, PowerState
from backends.memory import MemoryBackend
from bmc.node import BootOverride, Node, PowerAction
from redfish.server import RedfishServer

ADMIN = ("admin", "password")
TIMEOUT = 5


@dataclass
class Bmc:
    node: Node
    url: str

    @property
    def system(self) -> str:
        return f"{self.url}/redfish/v1/Systems/{self.node.name}"

    @property
    def reset(self) -> str:
        return f"{self.system}/Actions/ComputerSystem.Reset"

    @property
    def sessions(self) -> str:
        return f"{self.url}/redfish/v1/SessionService/Sessions"


def make_node(name: str, power_on: bool = False) -> Node:
    node = Node(name, MemoryBackend(power_on=power_on))
    node.users.add("admin", "password")
    return node


@pytest.fixture
def bmcs() -> Iterator[tuple[Bmc, Bmc]]:
    a, b = make_node("node-a"), make_node("node-b", power_on=True)
    server = RedfishServer([("127.0.0.1", 0, a), ("127.0.0.1", 0, b)], threads=4)
    server.start()
    try:
        port_a, port_b = server.ports
        yield Bmc(a, f"http://127.0.0.1:{port_a}"), Bmc(b, f"http://127.0.0.1:{port_b}")
    finally:
        server.stop()


def message_id(response: requests.Response) -> str:
    info = response.json()["error"]["@Message.ExtendedInfo"]
    return str(info[0]["MessageId"].rsplit(".", 1)[1])


# -- one BMC per port ---------------------------------------------------------------------------

def test_each_port_serves_only_its_own_node(bmcs: tuple[Bmc, Bmc]) -> None:
    for bmc, other in (bmcs, bmcs[::-1]):
        members = requests.get(f"{bmc.url}/redfish/v1/Systems", auth=ADMIN,
                               timeout=TIMEOUT).json()["Members"]
        assert members == [{"@odata.id": f"/redfish/v1/Systems/{bmc.node.name}"}]
        system = requests.get(bmc.system, auth=ADMIN, timeout=TIMEOUT).json()
        assert system["UUID"] == bmc.node.uuid
        assert system["PowerState"] == bmc.node.power_state.value
        chassis = requests.get(f"{bmc.url}/redfish/v1/Chassis", auth=ADMIN,
                               timeout=TIMEOUT).json()["Members"]
        assert chassis == [{"@odata.id": f"/redfish/v1/Chassis/{bmc.node.name}"}]
        # the other node's system is simply not there
        wrong = f"{bmc.url}/redfish/v1/Systems/{other.node.name}"
        assert requests.get(wrong, auth=ADMIN, timeout=TIMEOUT).status_code == 404
    roots = [requests.get(f"{b.url}/redfish/v1/", timeout=TIMEOUT).json() for b in bmcs]
    assert roots[0]["UUID"] != roots[1]["UUID"]


def test_actions_reach_only_the_addressed_node(bmcs: tuple[Bmc, Bmc]) -> None:
    a, b = bmcs
    response = requests.post(a.reset, json={"ResetType": "On"}, auth=ADMIN, timeout=TIMEOUT)
    assert response.status_code == 204
    assert a.node.power_state is PowerState.ON
    response = requests.post(b.reset, json={"ResetType": "ForceOff"}, auth=ADMIN,
                             timeout=TIMEOUT)
    assert response.status_code == 204
    assert (a.node.power_state, b.node.power_state) == (PowerState.ON, PowerState.OFF)
    response = requests.patch(b.system, json={"Boot": {"BootSourceOverrideTarget": "Pxe"}},
                              auth=ADMIN, timeout=TIMEOUT)
    assert response.status_code == 200
    assert a.node.boot_override == BootOverride()
    assert b.node.boot_override.device is BootDevice.PXE


def test_sessions_belong_to_one_bmc(bmcs: tuple[Bmc, Bmc]) -> None:
    a, b = bmcs
    response = requests.post(a.sessions, json={"UserName": "admin", "Password": "password"},
                             timeout=TIMEOUT)
    assert response.status_code == 201
    token = {"X-Auth-Token": response.headers["X-Auth-Token"]}
    assert requests.get(a.system, headers=token, timeout=TIMEOUT).status_code == 200
    assert requests.get(b.system, headers=token, timeout=TIMEOUT).status_code == 401


def test_users_are_per_node(bmcs: tuple[Bmc, Bmc]) -> None:
    a, b = bmcs
    a.node.users.add("alice", "secret")
    assert requests.get(a.system, auth=("alice", "secret"), timeout=TIMEOUT).status_code == 200
    assert requests.get(b.system, auth=("alice", "secret"), timeout=TIMEOUT).status_code == 401


def test_one_port_on_two_addresses_is_two_bmcs() -> None:
    # BMCs on IP aliases share a port number; only the local address tells them apart
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not usable here")
    port = probe.getsockname()[1]
    probe.close()
    a, b = make_node("node-a"), make_node("node-b")
    try:
        server = RedfishServer([("127.0.0.1", port, a), ("127.0.0.2", port, b)])
        server.start()
    except OSError:
        pytest.skip(f"port {port} was taken meanwhile")
    try:
        for address, node in (("127.0.0.1", a), ("127.0.0.2", b)):
            system = requests.get(f"http://{address}:{port}/redfish/v1/Systems", auth=ADMIN,
                                  timeout=TIMEOUT).json()
            assert system["Members"] == [{"@odata.id": f"/redfish/v1/Systems/{node.name}"}]
    finally:
        server.stop()


def test_many_concurrent_clients_get_the_right_node(bmcs: tuple[Bmc, Bmc]) -> None:
    def fetch(i: int) -> tuple[str, str]:
        bmc = bmcs[i % 2]
        with requests.Session() as http:
            body = http.get(bmc.system, auth=ADMIN, timeout=TIMEOUT).json()
        return bmc.node.name, body["Id"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(fetch, range(100)))
    assert all(expected == got for expected, got in results)


# -- state shared with the node model (what IPMI uses) ------------------------------------------

def test_redfish_changes_are_the_node_models_and_back(bmcs: tuple[Bmc, Bmc]) -> None:
    a, _ = bmcs
    boot = {"BootSourceOverrideTarget": "Cd", "BootSourceOverrideEnabled": "Continuous",
            "BootSourceOverrideMode": "UEFI"}
    assert requests.patch(a.system, json={"Boot": boot}, auth=ADMIN,
                          timeout=TIMEOUT).status_code == 200
    assert a.node.boot_override == BootOverride(BootDevice.CDROM, persistent=True, uefi=True)
    # the other way: a change through the node (as IPMI makes it) is what Redfish shows next
    a.node.set_boot_override(BootDevice.BIOS, persistent=False, uefi=False)
    a.node.power(PowerAction.ON)
    system = requests.get(a.system, auth=ADMIN, timeout=TIMEOUT).json()
    assert system["PowerState"] == "On"
    assert system["Boot"]["BootSourceOverrideTarget"] == "None"  # one-time: used by that boot
    assert a.node.backend.last_boot_device is BootDevice.BIOS  # type: ignore[attr-defined]


def test_password_change_applies_at_once(bmcs: tuple[Bmc, Bmc]) -> None:
    a, _ = bmcs
    user = a.node.users.by_name("admin")
    assert user is not None
    with requests.Session() as http:  # a kept-alive connection must not cache the old login
        http.auth = ADMIN
        assert http.get(a.system, timeout=TIMEOUT).status_code == 200
        user.password = "new-password"
        assert http.get(a.system, timeout=TIMEOUT).status_code == 401
        http.auth = ("admin", "new-password")
        assert http.get(a.system, timeout=TIMEOUT).status_code == 200


# -- sessions, auth and errors over the wire ----------------------------------------------------

def test_session_login_logout(bmcs: tuple[Bmc, Bmc]) -> None:
    a, _ = bmcs
    response = requests.post(a.sessions, json={"UserName": "admin", "Password": "password"},
                             timeout=TIMEOUT)
    assert response.status_code == 201
    token = response.headers["X-Auth-Token"]
    location = response.headers["Location"]
    assert response.json()["@odata.id"] == location
    headers = {"X-Auth-Token": token}
    assert requests.get(a.system, headers=headers, timeout=TIMEOUT).status_code == 200
    assert requests.get(a.url + location, headers=headers,
                        timeout=TIMEOUT).json()["UserName"] == "admin"
    assert requests.delete(a.url + location, headers=headers, timeout=TIMEOUT).status_code == 204
    response = requests.get(a.system, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 401 and message_id(response) == "NoValidSession"


def test_without_credentials_only_the_public_documents_answer(bmcs: tuple[Bmc, Bmc]) -> None:
    a, _ = bmcs
    for path in ("/redfish", "/redfish/v1", "/redfish/v1/", "/redfish/v1/odata",
                 "/redfish/v1/$metadata"):
        response = requests.get(a.url + path, timeout=TIMEOUT)
        assert response.status_code == 200, path
        assert response.headers["OData-Version"] == "4.0"
    assert requests.get(a.url + "/redfish/v1/$metadata",
                        timeout=TIMEOUT).headers["Content-Type"].startswith("application/xml")
    for path in ("/redfish/v1/Systems", "/redfish/v1/Managers/BMC", "/redfish/v1/Missing"):
        response = requests.get(a.url + path, timeout=TIMEOUT)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert message_id(response) == "NoValidSession"
    response = requests.get(a.system, auth=("admin", "wrong"), timeout=TIMEOUT)
    assert response.status_code == 401


@pytest.mark.parametrize(("method", "path", "body", "status", "expected"), [
    ("post", "reset", "{oops", 400, "MalformedJSON"),
    ("patch", "system", "{oops", 400, "MalformedJSON"),
    ("post", "reset", json.dumps({"ResetType": "Reboot"}), 400, "ActionParameterValueNotInList"),
    ("patch", "system", json.dumps({"Boot": {"BootSourceOverrideTarget": "Usb"}}), 400,
     "PropertyValueNotInList"),
    ("delete", "system", None, 405, "OperationNotAllowed"),
    ("get", "reset", None, 405, "OperationNotAllowed"),
    ("get", "/redfish/v1/Systems/nope", None, 404, "ResourceMissingAtURI"),
    ("get", "/redfish/v1/nope/nope/nope", None, 404, "ResourceMissingAtURI"),
])
def test_bad_requests(bmcs: tuple[Bmc, Bmc], method: str, path: str, body: str | None,
                      status: int, expected: str) -> None:
    a, _ = bmcs
    url = {"reset": a.reset, "system": a.system}.get(path, a.url + path)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    response = requests.request(method, url, data=body, headers=headers, auth=ADMIN,
                                timeout=TIMEOUT)
    assert response.status_code == status
    assert message_id(response) == expected
    assert response.headers["OData-Version"] == "4.0"
    if status == 405:
        assert response.headers["Allow"]
    assert a.node.power_state is PowerState.OFF
    assert a.node.boot_override == BootOverride()


def test_if_match_mismatch_is_412(bmcs: tuple[Bmc, Bmc]) -> None:
    a, _ = bmcs
    etag = requests.get(a.system, auth=ADMIN, timeout=TIMEOUT).headers["ETag"]
    a.node.power(PowerAction.ON)  # the resource changes under the client
    patch = {"Boot": {"BootSourceOverrideTarget": "Pxe"}}
    response = requests.patch(a.system, json=patch, auth=ADMIN, headers={"If-Match": etag},
                              timeout=TIMEOUT)
    assert response.status_code == 412 and message_id(response) == "PreconditionFailed"
    assert a.node.boot_override == BootOverride()
    etag = requests.get(a.system, auth=ADMIN, timeout=TIMEOUT).headers["ETag"]
    response = requests.patch(a.system, json=patch, auth=ADMIN, headers={"If-Match": etag},
                              timeout=TIMEOUT)
    assert response.status_code == 200
    assert a.node.boot_override.device is BootDevice.PXE


def test_oversized_bodies_are_413(bmcs: tuple[Bmc, Bmc]) -> None:
    a, _ = bmcs
    just_over = b'{"ResetType": "On", "x": "' + b"x" * (1024 * 1024) + b'"}'
    response = requests.post(a.reset, data=just_over, auth=ADMIN, timeout=TIMEOUT,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert message_id(response) == "GeneralError"
    huge = b"x" * (3 * 1024 * 1024)  # beyond what waitress even buffers
    response = requests.post(a.reset, data=huge, auth=ADMIN, timeout=TIMEOUT,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert a.node.power_state is PowerState.OFF
    assert requests.get(a.system, auth=ADMIN, timeout=TIMEOUT).status_code == 200


def test_garbage_on_the_wire_does_not_hurt_the_server(bmcs: tuple[Bmc, Bmc]) -> None:
    a, _ = bmcs
    port = int(a.url.rsplit(":", 1)[1])
    for junk in (b"\x00\xff" * 512 + b"\r\n\r\n", b"GET /redfish/v1 HTTP/9.9\r\n\r\n",
                 b"POST " + b"/" * 70000 + b" HTTP/1.1\r\n\r\n", b"\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
            raw.sendall(junk)
            raw.shutdown(socket.SHUT_WR)
            while raw.recv(65536):
                pass
    assert requests.get(a.system, auth=ADMIN, timeout=TIMEOUT).status_code == 200


def test_no_secret_is_logged(bmcs: tuple[Bmc, Bmc], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    a, _ = bmcs
    response = requests.post(a.sessions, json={"UserName": "admin", "Password": "password"},
                             timeout=TIMEOUT)
    token = response.headers["X-Auth-Token"]
    requests.post(a.sessions, json={"UserName": "admin", "Password": "hunter2"},
                  timeout=TIMEOUT)
    requests.post(a.reset, json={"ResetType": "On"}, headers={"X-Auth-Token": token},
                  timeout=TIMEOUT)
    requests.get(a.system, auth=ADMIN, timeout=TIMEOUT)
    text = caplog.text
    assert "session" in text  # the log did record what happened ...
    for secret in ("password", "hunter2", token):
        assert secret not in text  # ... without the secrets
