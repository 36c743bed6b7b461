"""Redfish driven by the real `sushy` client (what Ironic/Metal3 use), session and Basic auth."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import sushy
from sushy import auth as sushy_auth
from sushy.connector import Connector

from backends.base import BootDevice, PowerState
from backends.memory import MemoryBackend
from bmc.node import BootOverride, Node, PowerAction
from redfish.server import RedfishServer

TIMEOUT = 5
# sushy retries failures with multi-second sleeps by default; a test should fail fast instead
FAST = {"server_side_retries": 1, "server_side_retries_delay": 0.01, "read_timeout": TIMEOUT}


def make_node(name: str, power_on: bool = False) -> Node:
    node = Node(name, MemoryBackend(power_on=power_on))
    node.users.add("admin", "password")
    return node


@pytest.fixture
def nodes() -> Iterator[tuple[tuple[Node, str], tuple[Node, str]]]:
    a, b = make_node("node-a", power_on=True), make_node("node-b", power_on=True)
    server = RedfishServer([("127.0.0.1", 0, a), ("127.0.0.1", 0, b)], threads=4)
    server.start()
    try:
        port_a, port_b = server.ports
        yield (a, f"http://127.0.0.1:{port_a}"), (b, f"http://127.0.0.1:{port_b}")
    finally:
        server.stop()


def connect(url: str, auth: sushy_auth.AuthBase,
            seen: list[requests.Response] | None = None) -> sushy.Sushy:
    """A sushy client; every response it gets is appended to `seen`."""
    connector = Connector(url, response_callback=seen.append if seen is not None else None,
                          server_side_retries=1, server_side_retries_delay=0.01,
                          default_request_timeout=TIMEOUT)
    return sushy.Sushy(url, auth=auth, connector=connector)


def assert_if_match_was_honoured(seen: list[requests.Response]) -> None:
    # sushy quietly retries a PATCH without If-Match after a 412: make sure it never had to
    patches = [r for r in seen if r.request.method == "PATCH"]
    assert patches and all(r.request.headers.get("If-Match") for r in patches)
    assert [r.status_code for r in patches] == [200] * len(patches)


def drive(conn: sushy.Sushy, node: Node) -> None:
    """What a provisioning tool does: find the system, power it off, set PXE, power on."""
    system = conn.get_system()  # the one member of /Systems
    assert system.identity == node.name
    assert system.uuid == node.uuid
    assert system.power_state == sushy.POWER_STATE_ON
    assert sushy.RESET_FORCE_OFF in system.get_allowed_reset_system_values()
    assert sushy.BOOT_SOURCE_TARGET_PXE in system.get_allowed_system_boot_source_values()

    system.reset_system(sushy.RESET_FORCE_OFF)
    assert node.power_state is PowerState.OFF
    system.refresh()
    assert system.power_state == sushy.POWER_STATE_OFF

    system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_PXE,
                                   enabled=sushy.BOOT_SOURCE_ENABLED_CONTINUOUS,
                                   mode=sushy.BOOT_SOURCE_MODE_UEFI)
    assert node.boot_override == BootOverride(BootDevice.PXE, persistent=True, uefi=True)
    system.refresh()
    assert system.boot.target == sushy.BOOT_SOURCE_TARGET_PXE
    assert system.boot.enabled == sushy.BOOT_SOURCE_ENABLED_CONTINUOUS
    assert system.boot.mode == sushy.BOOT_SOURCE_MODE_UEFI

    system.reset_system(sushy.RESET_ON)
    assert node.power_state is PowerState.ON
    assert node.backend.last_boot_device is BootDevice.PXE  # type: ignore[attr-defined]

    # links both ways, as sushy follows them
    (manager,) = system.managers
    assert manager.identity == "BMC"
    (chassis,) = system.chassis
    assert chassis.identity == node.name
    assert conn.get_manager().identity == "BMC"
    assert conn.get_chassis().identity == node.name


def test_sushy_session_auth(nodes: tuple[tuple[Node, str], tuple[Node, str]]) -> None:
    (a, url_a), (b, _) = nodes
    auth = sushy_auth.SessionAuth(username="admin", password="password")
    seen: list[requests.Response] = []
    conn = connect(url_a, auth, seen)
    try:
        token, session_uri = auth.get_session_key(), auth.get_session_resource_id()
        assert token and session_uri.startswith("/redfish/v1/SessionService/Sessions/")
        drive(conn, a)
        assert_if_match_was_honoured(seen)
        assert conn.get_session_service().session_timeout > 0
        assert conn.get_session(session_uri).username == "admin"
        # the other BMC was not touched
        assert b.power_state is PowerState.ON and b.boot_override == BootOverride()
    finally:
        auth.close()  # DELETEs the session
    response = requests.get(f"{url_a}/redfish/v1/Systems", headers={"X-Auth-Token": token},
                            timeout=TIMEOUT)
    assert response.status_code == 401


def test_sushy_basic_auth(nodes: tuple[tuple[Node, str], tuple[Node, str]]) -> None:
    (a, _), (b, url_b) = nodes
    seen: list[requests.Response] = []
    conn = connect(url_b, sushy_auth.BasicAuth(username="admin", password="password"), seen)
    drive(conn, b)
    assert_if_match_was_honoured(seen)
    assert all(r.status_code < 400 for r in seen)
    assert a.power_state is PowerState.ON and a.boot_override == BootOverride()
    # nothing the Basic client did opened a session
    sessions = requests.get(f"{url_b}/redfish/v1/SessionService/Sessions",
                            auth=("admin", "password"), timeout=TIMEOUT).json()
    assert sessions["Members"] == []


def test_sushy_default_auth_and_state_from_the_node(
        nodes: tuple[tuple[Node, str], tuple[Node, str]]) -> None:
    (a, url_a), _ = nodes
    conn = sushy.Sushy(url_a, username="admin", password="password", **FAST)
    try:
        check_node_changes_show(conn, a)
    finally:
        conn._auth.close()  # end the session while the server is still up


def check_node_changes_show(conn: sushy.Sushy, a: Node) -> None:
    system = conn.get_system(f"/redfish/v1/Systems/{a.name}")
    # changed through the node model (the IPMI path): sushy sees it on refresh
    a.power(PowerAction.FORCE_OFF)
    a.set_boot_override(BootDevice.DISK, persistent=False, uefi=False)
    system.refresh()
    assert system.power_state == sushy.POWER_STATE_OFF
    assert system.boot.target == sushy.BOOT_SOURCE_TARGET_HDD
    assert system.boot.enabled == sushy.BOOT_SOURCE_ENABLED_ONCE
    assert system.boot.mode == sushy.BOOT_SOURCE_MODE_BIOS


def test_sushy_wrong_password(nodes: tuple[tuple[Node, str], tuple[Node, str]]) -> None:
    (_, url_a), _ = nodes
    with pytest.raises(sushy.exceptions.AccessError):
        connect(url_a, sushy_auth.SessionAuth(username="admin", password="nope"))
    conn = connect(url_a, sushy_auth.BasicAuth(username="admin", password="nope"))
    with pytest.raises(sushy.exceptions.AccessError):
        conn.get_system()


def test_sushy_bad_values_are_client_errors(
        nodes: tuple[tuple[Node, str], tuple[Node, str]]) -> None:
    (a, url_a), _ = nodes
    conn = connect(url_a, sushy_auth.BasicAuth(username="admin", password="password"))
    system = conn.get_system()
    # sushy validates against the advertised values before sending anything
    with pytest.raises(sushy.exceptions.InvalidParameterValueError):
        system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_UEFI_HTTP)
    # sent anyway (raw), the service says why with a Redfish error body
    with pytest.raises(sushy.exceptions.BadRequestError) as caught:
        conn._conn.post(system._get_reset_action_element().target_uri,
                        data={"ResetType": "Bogus"})
    assert "ActionParameterValueNotInList" in str(caught.value)
    assert a.power_state is PowerState.ON
