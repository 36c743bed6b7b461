"""Sensors on the server's main power are not scanned while it is off, as on a real BMC: no
reading (IPMI "unavailable", Redfish null), no threshold events in the SEL, and no part in the
health rollups, which every resource derives the same way from the sensors."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from backends.memory import MemoryBackend
from bmc.node import Node, PowerAction
from bmc.sensors import SensorKind, SensorModel, SensorSpec, Thresholds, profile_from_config
from ipmi.commands import NETFN_SENSOR, Context, IpmiError, load_all
from redfish import NODE_ENVIRON_KEY
from redfish.app import create_app

CHASSIS = "/redfish/v1/Chassis/n1"
AUTH = ("admin", "password")


def sensor_reading(node: Node, number: int) -> bytes:
    entry = load_all()[(NETFN_SENSOR, 0x2D)]
    try:
        return entry.handler(Context(node, bytes((number,)), None, None, NETFN_SENSOR, 0x2D))
    except IpmiError as exc:  # pragma: no cover - only on failure
        raise AssertionError(f"completion code {exc.code:#04x}") from None


def make_node(**kwargs: Any) -> Node:
    node = Node("n1", MemoryBackend(**kwargs))
    node.users.add(*AUTH)
    return node


def client_for(node: Node) -> FlaskClient:
    client = create_app().test_client()
    client.environ_base[NODE_ENVIRON_KEY] = node
    return client


def get(client: FlaskClient, uri: str) -> dict[str, Any]:
    response = client.get(uri, auth=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


# -- the SEL --------------------------------------------------------------------------------------
def test_the_sel_across_power_cycles_holds_the_power_records_only() -> None:
    node = make_node(power_on=True)  # running at start-up: the sensors start scanning
    for action in (PowerAction.FORCE_OFF, PowerAction.ON, PowerAction.POWER_CYCLE,
                   PowerAction.GRACEFUL_SHUTDOWN, PowerAction.ON, PowerAction.FORCE_OFF):
        node.power(action)
    node.sensors.readings()
    assert [e.message for e in node.sel.entries()] == [
        "Power Unit: Power off/down, asserted (ForceOff)",
        "ACPI State: S0/G0: working, asserted (On)",
        "Power Unit: Power cycle, asserted (PowerCycle)",
        "ACPI State: S5/G2: soft-off, asserted (GracefulShutdown)",
        "ACPI State: S0/G0: working, asserted (On)",
        "Power Unit: Power off/down, asserted (ForceOff)",
    ]


def test_a_node_starting_off_logs_nothing() -> None:
    node = make_node()
    node.sensors.readings()
    assert node.sel.entries() == []


def test_thresholds_rearm_when_scanning_resumes() -> None:
    # a CPU that runs hot: asserted while on, silently dropped at power-off, asserted again
    hot = SensorSpec("CPU", SensorKind.TEMPERATURE, on=99.0, off=25.0,
                     thresholds=Thresholds(upper_critical=90.0))
    node = Node("n1", MemoryBackend(), sensors=[hot])
    node.power(PowerAction.ON)
    node.power(PowerAction.FORCE_OFF)
    node.power(PowerAction.ON)
    cpu = [(e.event_text, e.asserted) for e in node.sel.entries() if e.sensor_name == "CPU"]
    assert cpu == [("Upper Critical - going high", True)] * 2


# -- the model and its configuration --------------------------------------------------------------
def test_default_profile_scanning() -> None:
    specs = {s.name: s.scanning for s in SensorModel(powered=lambda: False).specs}
    assert specs["Inlet Temp"] == "always" and specs["Total Power"] == "always"
    assert specs["PSU1 Status"] == "always"
    for name in ("CPU1 Temp", "CPU2 Temp", "FAN1", "FAN4", "12V", "5V", "3.3V"):
        assert specs[name] == "powered", name


def test_scanning_from_the_config() -> None:
    (spec,) = profile_from_config([{"name": "Inlet", "kind": "temperature", "on": 25,
                                    "off": 22, "scanning": "always"}])
    model = SensorModel([spec], powered=lambda: False)
    assert model.reading("Inlet").value == 22.0
    with pytest.raises(ValueError, match="scanning must be one of always, powered"):
        profile_from_config([{"name": "x", "kind": "fan", "scanning": "sometimes"}])


# -- IPMI -----------------------------------------------------------------------------------------
def test_ipmi_reading_unavailable_while_off_and_back_when_on() -> None:
    node = make_node()
    fan = node.sensors.spec("FAN1").number
    inlet = node.sensors.spec("Inlet Temp").number
    # byte 2: events and scanning enabled (C0h) as configured, reading unavailable (20h)
    assert sensor_reading(node, fan) == bytes((0x00, 0xE0, 0xC0, 0x80))
    assert sensor_reading(node, inlet)[1] == 0xC0  # scanned: 23 C, raw 23 at 1 C a count
    assert sensor_reading(node, inlet)[0] == 23
    node.power(PowerAction.ON)
    data = sensor_reading(node, fan)
    assert data[1] == 0xC0 and 7000 <= data[0] * 40 <= 9000


# -- Redfish ---------------------------------------------------------------------------------------
def test_redfish_shows_no_reading_and_standby_offline_while_off() -> None:
    node = make_node()
    client = client_for(node)
    fan = get(client, f"{CHASSIS}/Sensors/FAN1")
    assert fan["Reading"] is None and fan["SpeedRPM"] is None
    assert fan["Status"] == {"State": "StandbyOffline"}
    thermal = get(client, f"{CHASSIS}/Thermal")
    fans = {f["Name"]: f for f in thermal["Fans"]}
    assert fans["FAN1"]["Reading"] is None
    assert fans["FAN1"]["Status"] == {"State": "StandbyOffline"}
    temps = {t["Name"]: t for t in thermal["Temperatures"]}
    assert temps["CPU1 Temp"]["ReadingCelsius"] is None
    assert temps["Inlet Temp"]["ReadingCelsius"] == 23.0
    assert temps["Inlet Temp"]["Status"] == {"State": "Enabled", "Health": "OK"}
    speed = get(client, f"{CHASSIS}/ThermalSubsystem/Fans/FAN1")["SpeedPercent"]
    assert speed["Reading"] is None and speed["SpeedRPM"] is None
    volts = {v["Name"]: v for v in get(client, f"{CHASSIS}/Power")["Voltages"]}
    assert volts["12V"]["ReadingVolts"] is None
    node.power(PowerAction.ON)
    fan = get(client, f"{CHASSIS}/Sensors/FAN1")
    assert fan["Reading"] > 7000 and fan["Status"] == {"State": "Enabled", "Health": "OK"}


HEALTH_URIS = {
    "Chassis": (CHASSIS, ("Status", "Health")),
    "ChassisRollup": (CHASSIS, ("Status", "HealthRollup")),
    "System": ("/redfish/v1/Systems/n1", ("Status", "Health")),
    "Thermal": (f"{CHASSIS}/Thermal", ("Status", "Health")),
    "ThermalSubsystem": (f"{CHASSIS}/ThermalSubsystem", ("Status", "Health")),
    "PowerSubsystem": (f"{CHASSIS}/PowerSubsystem", ("Status", "Health")),
}


def healths(client: FlaskClient) -> dict[str, str]:
    found = {}
    for name, (uri, (status, key)) in HEALTH_URIS.items():
        found[name] = get(client, uri)[status][key]
    found["PowerControl"] = get(client, f"{CHASSIS}/Power")["PowerControl"][0]["Status"][
        "Health"]
    return found


def test_health_rollups_agree_and_ignore_sensors_not_scanned() -> None:
    node = make_node()
    client = client_for(node)
    # off: the stopped fans are not scanned, so they are not "Critical"
    assert set(healths(client).values()) == {"OK"}


def test_a_critical_sensor_makes_every_rollup_critical() -> None:
    specs = [SensorSpec("FAN1", SensorKind.FAN, on=300.0, off=0.0,
                        thresholds=Thresholds(lower_critical=600.0)),
             SensorSpec("Total Power", SensorKind.POWER, on=500.0, off=8.0,
                        thresholds=Thresholds(upper_non_critical=420.0), scanning="always"),
             SensorSpec("PSU1 Status", SensorKind.PSU, scanning="always")]
    node = Node("n1", MemoryBackend(), sensors=specs)
    node.users.add(*AUTH)
    client = client_for(node)
    assert set(healths(client).values()) == {"OK"}  # off: the fan is not scanned
    node.power(PowerAction.ON)
    found = healths(client)
    assert found.pop("PowerControl") == "Warning"  # the power meter is over its caution
    assert found.pop("PowerSubsystem") == "Warning"
    assert set(found.values()) == {"Critical"}  # the fan is under its critical threshold
