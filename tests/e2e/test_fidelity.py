"""Details a real BMC gets right, checked with the real clients: sensors not scanned while the
server is off (ipmitool `na`, freeipmi `N/A`, a SEL without fan criticals), the DCMI MC ID
string (pyghmi), the manufacturer ID (bmc-info), Redfish 204s without a Content-Type, no
credentials echoed in error bodies, Secure Boot databases (sushy) and the WebSocket console
opened with a Redfish session token."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import requests
import sushy
from conftest import Emulator, Launcher
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from backends import create_backend
from backends.base import BootDevice
from bmc.node import Node
from redfish.console_ws import PATH as WS_PATH
from redfish.console_ws import ConsoleWebSocketServer
from redfish.server import RedfishServer

TIMEOUT = 30


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def ipmitool(bmc: Emulator, *command: str, node: int = 0) -> str:
    result = run(bmc.ipmitool(node, *command))
    assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    return result.stdout


def freeipmi(bmc: Emulator, program: str, *args: str, node: int = 0) -> str:
    target = bmc.nodes[node]
    cache: list[str] = []
    if program in ("ipmi-sensors", "ipmi-sel"):  # the SDR cache here, not in the user's home
        directory = bmc.workdir / "sdr-cache"
        directory.mkdir(exist_ok=True)
        cache = ["--sdr-cache-directory", str(directory), "--quiet-cache"]
    result = run([program, "-h", f"{target.ipmi_address}:{target.ipmi_port}",
                  "-u", bmc.username, "-p", bmc.password, "-D", "LAN_2_0", *cache, *args])
    assert result.returncode == 0, f"{program}: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def bmc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    launcher = Launcher(tmp_path_factory.mktemp("fidelity"))
    # node 3: a fan that only reaches 280 RPM, under its 600 RPM critical threshold
    weak = {"name": "weak", "sensors": [
        {"name": "FAN1", "kind": "fan", "on": 280, "off": 0,
         "thresholds": {"lower_critical": 600}},
        {"name": "Inlet Temp", "kind": "temperature", "on": 24, "off": 23,
         "scanning": "always", "entity": [0x37, 1]}]}
    yield launcher(nodes=[{}, {}, {}, weak])
    launcher.close()


# -- sensors and the SEL -------------------------------------------------------------------------
def sensor_line(output: str, name: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith(name))
    return [field.strip() for field in line.split("|")]


def test_sensors_not_scanned_while_off_and_the_sel_across_a_power_cycle(bmc: Emulator) -> None:
    ipmitool(bmc, "sel", "clear")
    off = ipmitool(bmc, "sensor", "list")
    fan = sensor_line(off, "FAN1")
    assert fan[1] == "na" and fan[3] == "na", fan  # reading and status
    assert sensor_line(off, "CPU1 Temp")[1] == "na"
    inlet = sensor_line(off, "Inlet Temp")
    assert float(inlet[1]) == pytest.approx(23, abs=1) and inlet[3] == "ok"
    ipmi_sensors = freeipmi(bmc, "ipmi-sensors", "--no-header-output", "--comma-separated")
    rows = {row.split(",")[1]: row.split(",") for row in ipmi_sensors.splitlines()}
    assert rows["FAN1"][3] == "N/A", rows["FAN1"]

    ipmitool(bmc, "power", "on")
    on = ipmitool(bmc, "sensor", "list")
    fan = sensor_line(on, "FAN1")
    assert 7000 <= float(fan[1]) <= 9000 and fan[3] == "ok", fan
    ipmitool(bmc, "power", "off")
    ipmitool(bmc, "power", "on")
    ipmitool(bmc, "power", "off")

    sel = ipmitool(bmc, "sel", "elist").splitlines()
    assert not [line for line in sel if "Fan" in line or "Lower Critical" in line], sel
    events = [line.split("|")[3:5] for line in sel]
    assert [" ".join(part.strip() for part in event) for event in events] == [
        "Event Logging Disabled Event Log Log area reset/cleared",
        "System ACPI Power State ACPI State S0/G0: working",
        "Power Unit Power Unit Power off/down",
        "System ACPI Power State ACPI State S0/G0: working",
        "Power Unit Power Unit Power off/down",
    ], sel


def test_a_fan_failing_while_the_server_runs_is_logged_and_decoded(bmc: Emulator) -> None:
    ipmitool(bmc, "power", "on", node=3)
    elist = ipmitool(bmc, "sel", "elist", node=3)
    # ipmitool decodes the event data: trigger reading and threshold (raw, M = 4, 10^1)
    assert re.search(r"Fan FAN1 \| Lower Critical going low\s+\| Asserted \| "
                     r"Reading 280 < Threshold 600 RPM", elist), elist
    sensors = freeipmi(bmc, "ipmi-sensors", node=3)
    assert re.search(r"\| FAN1\s+\| Fan\s+\| 280\.00\s+\| RPM\s+\| 'At or Below \(<=\) Lower "
                     r"Critical Threshold'", sensors), sensors
    sel = freeipmi(bmc, "ipmi-sel", node=3)
    assert re.search(r"\| FAN1\s+\| Fan\s+\| Lower Critical - going low", sel), sel
    ipmitool(bmc, "power", "off", node=3)
    fans = [line for line in ipmitool(bmc, "sel", "elist", node=3).splitlines() if "FAN1" in line]
    assert len(fans) == 1  # the power-off stops scanning: no deassertion, no new event


def test_reset_and_diag_leave_their_marks(bmc: Emulator) -> None:
    """`power reset` and `power diag` checked by what they do, not by their exit code."""
    ipmitool(bmc, "power", "on", node=1)
    ipmitool(bmc, "power", "reset", node=1)
    cause = ipmitool(bmc, "chassis", "restart_cause", node=1)
    assert cause.strip() == "System restart cause: chassis power control command"
    assert "Initiated by hard reset" in ipmitool(bmc, "sel", "elist", "last", "1", node=1)
    ipmitool(bmc, "power", "diag", node=1)
    last = ipmitool(bmc, "sel", "elist", "last", "1", node=1)
    assert "Critical Interrupt" in last and "NMI" in last, last
    assert "Chassis Power is on" in ipmitool(bmc, "power", "status", node=1)


# -- identity -------------------------------------------------------------------------------------
def test_the_manufacturer_id_is_a_documented_enterprise_number(bmc: Emulator) -> None:
    info = freeipmi(bmc, "bmc-info", "--get-device-id")
    found = re.search(r"Manufacturer ID\s*:\s*(.*)", info)
    assert found is not None, info
    assert found.group(1).strip() == "Example Enterprise Number for Documentation Use (32473)"
    assert "Manufacturer ID           : 32473" in ipmitool(bmc, "mc", "info")


PYGHMI = textwrap.dedent("""
    import json, sys
    from pyghmi.ipmi import command
    host, port, user, password, new = sys.argv[1:]
    client = command.Command(bmc=host, port=int(port), userid=user, password=password)
    try:
        before = client.get_mci()
        client.set_mci(new)
        after = client.get_mci()
    finally:
        client.ipmi_session.logout()
    print(json.dumps({"before": before, "after": after}))
""")


def test_dcmi_mc_id_string_with_pyghmi(bmc: Emulator) -> None:
    # one pyghmi Command per BMC per process: its session cache hangs on a second one
    node = bmc.nodes[2]
    new = "rack7-slot12.example.com-bmc"  # longer than one 15-byte chunk
    result = subprocess.run([sys.executable, "-c", PYGHMI, node.ipmi_address,
                             str(node.ipmi_port), bmc.username, bmc.password, new],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"before": node.name, "after": new}
    shown = ipmitool(bmc, "dcmi", "get_mc_id_string", node=2)
    assert new in shown, shown


# -- Redfish over HTTP ----------------------------------------------------------------------------
def test_no_content_answers_carry_no_content_type(bmc: Emulator) -> None:
    node = bmc.nodes[0]
    login = requests.post(f"{node.redfish_url}/redfish/v1/SessionService/Sessions",
                          json={"UserName": bmc.username, "Password": bmc.password},
                          timeout=TIMEOUT)
    assert login.status_code == 201
    token, session = login.headers["X-Auth-Token"], login.headers["Location"]
    reset = requests.post(
        f"{node.redfish_url}/redfish/v1/Systems/{node.name}/Actions/ComputerSystem.Reset",
        json={"ResetType": "On"}, headers={"X-Auth-Token": token}, timeout=TIMEOUT)
    assert reset.status_code == 204 and "Content-Type" not in reset.headers, reset.headers
    gone = requests.delete(f"{node.redfish_url}{session}", headers={"X-Auth-Token": token},
                           timeout=TIMEOUT)
    assert gone.status_code == 204 and "Content-Type" not in gone.headers, gone.headers


def test_error_bodies_never_echo_credentials(bmc: Emulator) -> None:
    node = bmc.nodes[0]
    auth = (bmc.username, bmc.password)
    insert = requests.post(
        f"{node.redfish_url}/redfish/v1/Managers/BMC/VirtualMedia/Cd/Actions/"
        "VirtualMedia.InsertMedia",
        json={"Image": "gopher://admin:s3cr3t-pw@images.example/x.iso"}, auth=auth,
        timeout=TIMEOUT)
    subscribe = requests.post(
        f"{node.redfish_url}/redfish/v1/EventService/Subscriptions",
        json={"Destination": "http://admin:s3cr3t-pw@receiver.example:99999/events"},
        auth=auth, timeout=TIMEOUT)
    for response in (insert, subscribe):
        assert response.status_code == 400, response.text
        assert "s3cr3t" not in response.text and "***@" in response.text, response.text


# -- Secure Boot databases through sushy ----------------------------------------------------------
@pytest.fixture
def redfish_node() -> Iterator[tuple[Node, str]]:
    backend = create_backend("process", {"env": {"BMC_SIM_SPEED": "0"}}, "node-ws")
    node = Node("node-ws", backend)
    node.users.add("admin", "password")
    server = RedfishServer([("127.0.0.1", 0, node)], threads=4)
    server.start()
    try:
        yield node, f"http://127.0.0.1:{server.ports[0]}"
    finally:
        server.stop()
        node.close()


def test_secure_boot_databases_with_sushy(redfish_node: tuple[Node, str]) -> None:
    node, url = redfish_node
    conn = sushy.Sushy(url, auth=sushy.auth.BasicAuth(username="admin", password="password"))
    secure_boot = conn.get_system(f"/redfish/v1/Systems/{node.name}").secure_boot
    databases = {db.identity: db for db in secure_boot.databases.get_members()}
    assert set(databases) == {"PK", "KEK", "db", "dbx", "PKDefault", "KEKDefault",
                              "dbDefault", "dbxDefault"}
    pk = databases["PK"]
    assert pk.database_id == sushy.SecureBootDatabaseId.PLATFORM_KEY
    assert databases["dbx"].database_id == sushy.SecureBootDatabaseId.DENIED_KEYS_DATABASE
    assert pk.get_allowed_reset_keys_values() == {
        sushy.SecureBootResetKeysType.RESET_ALL_KEYS_TO_DEFAULT,
        sushy.SecureBootResetKeysType.DELETE_ALL_KEYS}
    assert secure_boot.mode == sushy.SECURE_BOOT_MODE_DEPLOYED
    pk.reset_keys(sushy.SecureBootResetKeysType.DELETE_ALL_KEYS)
    secure_boot.refresh()
    assert secure_boot.mode == sushy.SECURE_BOOT_MODE_SETUP  # no platform key: setup mode
    assert not node.secure_boot.has_keys("PK") and node.secure_boot.has_keys("KEK")
    pk.reset_keys(sushy.SecureBootResetKeysType.RESET_ALL_KEYS_TO_DEFAULT)
    secure_boot.refresh()
    assert secure_boot.mode == sushy.SECURE_BOOT_MODE_DEPLOYED
    with pytest.raises(sushy.exceptions.MissingActionError):
        databases["PKDefault"].reset_keys(sushy.SecureBootResetKeysType.DELETE_ALL_KEYS)


# -- the WebSocket console with a Redfish session -----------------------------------------------
def test_websocket_console_takes_a_session_token(redfish_node: tuple[Node, str]) -> None:
    node, url = redfish_node
    console = ConsoleWebSocketServer([("127.0.0.1", 0, node)])
    console.start()
    try:
        ws_url = f"ws://127.0.0.1:{console.ports[0]}{WS_PATH}"
        login = requests.post(f"{url}/redfish/v1/SessionService/Sessions",
                              json={"UserName": "admin", "Password": "password"},
                              timeout=TIMEOUT)
        token = login.headers["X-Auth-Token"]
        node.backend.power_on(BootDevice.NONE)
        with connect(ws_url, additional_headers={"X-Auth-Token": token},
                     open_timeout=TIMEOUT) as ws:
            assert b"login:" in read_until(ws, b"login:")
        # a browser cannot set headers: the token as the subprotocol, which is selected
        with connect(ws_url, subprotocols=[token], open_timeout=TIMEOUT) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == token
            assert b"login:" in read_until(ws, b"login:")
        for headers, protocols in (({"X-Auth-Token": "not-a-session"}, None),
                                   ({}, ["not-a-session"])):
            with pytest.raises(InvalidStatus) as refused:
                connect(ws_url, additional_headers=headers, subprotocols=protocols,
                        open_timeout=TIMEOUT)
            assert refused.value.response.status_code == 401
        # a session logged out no longer opens the console
        requests.delete(f"{url}{login.headers['Location']}", headers={"X-Auth-Token": token},
                        timeout=TIMEOUT)
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, additional_headers={"X-Auth-Token": token}, open_timeout=TIMEOUT)
        assert refused.value.response.status_code == 401
        basic = base64.b64encode(b"admin:password").decode()
        with connect(ws_url, additional_headers={"Authorization": f"Basic {basic}"},
                     open_timeout=TIMEOUT):
            pass  # Basic still works
    finally:
        console.stop()


def read_until(ws: object, wanted: bytes) -> bytes:
    seen = b""
    for _ in range(200):
        seen += ws.recv(timeout=TIMEOUT)  # type: ignore[attr-defined]
        if wanted in seen:
            break
    return seen
