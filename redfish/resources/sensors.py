"""`Chassis/<id>/Sensors`: every analog sensor of the node, the same readings IPMI's SDR
reports (`bmc.sensors`), with the same thresholds.

Also the helpers the legacy `Thermal`/`Power` resources and the newer subsystems share.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response

from bmc.node import Node
from bmc.sensors import Sensor, SensorKind, SensorSpec, rollup
from redfish import context, odata, paths
from redfish.odata import Body
from redfish.resources.chassis_base import chassis_node

bp = Blueprint("sensors", __name__)

READING_TYPES = {SensorKind.TEMPERATURE: "Temperature", SensorKind.FAN: "Rotational",
                 SensorKind.VOLTAGE: "Voltage", SensorKind.POWER: "Power"}
#: IPMI entity ID -> Redfish PhysicalContext
CONTEXTS = {0x03: "CPU", 0x07: "SystemBoard", 0x0A: "PowerSupply", 0x13: "PowerSupply",
            0x1D: "Fan", 0x37: "Intake", 0x20: "Memory"}
#: IPMI threshold -> Redfish Thresholds member
THRESHOLDS = {"lower_non_critical": "LowerCaution", "lower_critical": "LowerCritical",
              "lower_non_recoverable": "LowerFatal", "upper_non_critical": "UpperCaution",
              "upper_critical": "UpperCritical", "upper_non_recoverable": "UpperFatal"}
#: IPMI threshold -> the legacy Thermal/Power property suffix
LEGACY_THRESHOLDS = {"lower_non_critical": "LowerThresholdNonCritical",
                     "lower_critical": "LowerThresholdCritical",
                     "lower_non_recoverable": "LowerThresholdFatal",
                     "upper_non_critical": "UpperThresholdNonCritical",
                     "upper_critical": "UpperThresholdCritical",
                     "upper_non_recoverable": "UpperThresholdFatal"}


def sensor_id(name: str) -> str:
    """A URI-safe Id from an IPMI sensor name: "CPU1 Temp" -> "CPU1Temp", "3.3V" -> "3_3V"."""
    return re.sub(r"[^A-Za-z0-9_-]+", "", name.replace(".", "_")) or "Sensor"


def sensor_uri(node: Node, sensor: Sensor) -> str:
    return f"{paths.chassis(node)}/Sensors/{sensor_id(sensor.name)}"


def physical_context(spec: SensorSpec) -> str:
    return CONTEXTS.get(spec.entity[0], "SystemBoard")


def status(sensor: Sensor) -> Body:
    """A sensor's Status. One on the server's main power is not scanned while the server is
    off: "StandbyOffline" with no Health (it has none to tell), as real BMCs show it."""
    if not sensor.scanning:
        return {"State": "StandbyOffline"}
    return {"State": "Enabled", "Health": sensor.health}


def rolled_up_status(node: Node) -> Body:
    """The Status of a resource whose health is its sensors' (Chassis, ComputerSystem): the
    worst Health of the sensors being scanned, the same rollup Thermal and Power show."""
    health = rollup(node.sensors.readings())
    return {"State": "Enabled", "Health": health, "HealthRollup": health}


def reading_range(spec: SensorSpec) -> tuple[float, float]:
    """The range a sensor's 8-bit reading can span (IPMI's linear conversion)."""
    assert spec.scale is not None
    ends = (spec.scale.from_raw(-128 if spec.scale.signed else 0),
            spec.scale.from_raw(127 if spec.scale.signed else 255))
    return min(ends), max(ends)


def analog(node: Node) -> list[tuple[SensorSpec, Sensor]]:
    """The analog sensors, read now (one read: every value of one answer is consistent)."""
    sensors = node.sensors
    return [(spec, s) for s in sensors.readings() if (spec := sensors.spec(s.name)).analog]


def sensor_body(node: Node, spec: SensorSpec, sensor: Sensor) -> Body:
    low, high = reading_range(spec)
    body = odata.resource(
        "Sensor", sensor_uri(node, sensor),
        Id=sensor_id(sensor.name),
        Name=sensor.name,
        ReadingType=READING_TYPES[sensor.kind],
        Reading=sensor.value,
        ReadingUnits=sensor.unit,
        ReadingRangeMin=low,
        ReadingRangeMax=high,
        PhysicalContext=physical_context(spec),
        Status=status(sensor),
        Thresholds={THRESHOLDS[name]: {"Reading": value}
                    for name, value in sensor.thresholds.items()},
    )
    if sensor.kind is SensorKind.FAN:
        body["SpeedRPM"] = sensor.value
    return body


@bp.get(f"{paths.CHASSIS}/<chassis_id>/Sensors")
def sensors(chassis_id: str) -> Response:
    node = chassis_node(chassis_id)
    uri = f"{paths.chassis(node)}/Sensors"
    return odata.json_response(odata.collection(
        "SensorCollection", uri, "Sensor Collection",
        [sensor_uri(node, s) for _, s in analog(node)]))


@bp.get(f"{paths.CHASSIS}/<chassis_id>/Sensors/<wanted>")
def sensor(chassis_id: str, wanted: str) -> Response:
    node = chassis_node(chassis_id)
    for spec, reading in analog(node):
        if sensor_id(reading.name) == wanted:
            return odata.json_response(sensor_body(node, spec, reading))
    raise context.missing()
