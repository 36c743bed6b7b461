"""Chassis cooling: the legacy `Thermal` resource (what Ironic and sushy read) and the newer
`ThermalSubsystem` with its `Fans` and `ThermalMetrics`. Every value comes from the node's
sensors (`bmc.sensors`), as IPMI's SDR reports them.
"""

from __future__ import annotations

from flask import Blueprint, Response

from bmc.node import Node
from bmc.sensors import Sensor, SensorKind, SensorSpec, rollup
from redfish import context, odata, paths
from redfish.odata import Body, link
from redfish.resources.chassis_base import chassis_node
from redfish.resources.sensors import (
    LEGACY_THRESHOLDS,
    analog,
    physical_context,
    reading_range,
    sensor_id,
    sensor_uri,
    status,
)

bp = Blueprint("thermal", __name__)

#: what a fan's SpeedPercent is a percentage of
MAX_FAN_RPM = 12000.0


def _legacy_thresholds(sensor: Sensor) -> Body:
    return {LEGACY_THRESHOLDS[name]: value for name, value in sensor.thresholds.items()}


def thermal_body(node: Node) -> Body:
    uri = f"{paths.chassis(node)}/Thermal"
    temperatures, fans = [], []
    for spec, sensor in analog(node):
        low, high = reading_range(spec)
        if sensor.kind is SensorKind.TEMPERATURE:
            temperatures.append({
                "@odata.id": f"{uri}#/Temperatures/{len(temperatures)}",
                "MemberId": str(len(temperatures)),
                "Name": sensor.name,
                "SensorNumber": sensor.number,
                "ReadingCelsius": sensor.value,
                "MinReadingRangeTemp": low,
                "MaxReadingRangeTemp": high,
                "PhysicalContext": physical_context(spec),
                "Status": status(sensor),
                **_legacy_thresholds(sensor),
            })
        elif sensor.kind is SensorKind.FAN:
            fans.append({
                "@odata.id": f"{uri}#/Fans/{len(fans)}",
                "MemberId": str(len(fans)),
                "Name": sensor.name,
                "SensorNumber": sensor.number,
                "Reading": None if sensor.value is None else int(sensor.value),
                "ReadingUnits": "RPM",
                "MinReadingRange": int(low),
                "MaxReadingRange": int(high),
                "PhysicalContext": "Fan",
                "SerialNumber": f"FAN-{node.uuid[:4].upper()}-{len(fans)}",
                "Status": status(sensor),
                **{k: int(v) for k, v in _legacy_thresholds(sensor).items()},
            })
    return odata.resource(
        "Thermal", uri,
        Id="Thermal",
        Name="Thermal",
        Temperatures=temperatures,
        Fans=fans,
        Status={"State": "Enabled", "Health": rollup(s for _, s in analog(node))},
    )


@bp.get(f"{paths.CHASSIS}/<chassis_id>/Thermal")
def thermal(chassis_id: str) -> Response:
    return odata.json_response(thermal_body(chassis_node(chassis_id)))


def _subsystem_uri(node: Node) -> str:
    return f"{paths.chassis(node)}/ThermalSubsystem"


def _fans(node: Node) -> list[tuple[SensorSpec, Sensor]]:
    return [(spec, s) for spec, s in analog(node) if s.kind is SensorKind.FAN]


@bp.get(f"{paths.CHASSIS}/<chassis_id>/ThermalSubsystem")
def thermal_subsystem(chassis_id: str) -> Response:
    node = chassis_node(chassis_id)
    uri = _subsystem_uri(node)
    return odata.json_response(odata.resource(
        "ThermalSubsystem", uri,
        Id="ThermalSubsystem",
        Name="Thermal Subsystem",
        Fans=link(f"{uri}/Fans"),
        ThermalMetrics=link(f"{uri}/ThermalMetrics"),
        Status={"State": "Enabled", "Health": rollup(s for _, s in analog(node))},
    ))


@bp.get(f"{paths.CHASSIS}/<chassis_id>/ThermalSubsystem/Fans")
def fans(chassis_id: str) -> Response:
    node = chassis_node(chassis_id)
    uri = f"{_subsystem_uri(node)}/Fans"
    return odata.json_response(odata.collection(
        "FanCollection", uri, "Fan Collection",
        [f"{uri}/{sensor_id(s.name)}" for _, s in _fans(node)]))


@bp.get(f"{paths.CHASSIS}/<chassis_id>/ThermalSubsystem/Fans/<fan_id>")
def fan(chassis_id: str, fan_id: str) -> Response:
    node = chassis_node(chassis_id)
    for _, sensor in _fans(node):
        if sensor_id(sensor.name) == fan_id:
            rpm = sensor.value
            return odata.json_response(odata.resource(
                "Fan", f"{_subsystem_uri(node)}/Fans/{fan_id}",
                Id=fan_id,
                Name=sensor.name,
                PhysicalContext="Fan",
                SpeedPercent={
                    "DataSourceUri": sensor_uri(node, sensor),
                    "Reading": None if rpm is None else round(100.0 * rpm / MAX_FAN_RPM, 1),
                    "SpeedRPM": rpm,
                },
                Status=status(sensor),
            ))
    raise context.missing()


@bp.get(f"{paths.CHASSIS}/<chassis_id>/ThermalSubsystem/ThermalMetrics")
def thermal_metrics(chassis_id: str) -> Response:
    node = chassis_node(chassis_id)
    temperatures = [(spec, s) for spec, s in analog(node)
                    if s.kind is SensorKind.TEMPERATURE]
    summary: Body = {}
    for spec, sensor in temperatures:
        context_name = physical_context(spec)
        if context_name == "Intake" and "Intake" not in summary:
            summary["Intake"] = {"DataSourceUri": sensor_uri(node, sensor),
                                 "Reading": sensor.value}
        elif context_name == "SystemBoard" and "Internal" not in summary:
            summary["Internal"] = {"DataSourceUri": sensor_uri(node, sensor),
                                   "Reading": sensor.value}
    return odata.json_response(odata.resource(
        "ThermalMetrics", f"{_subsystem_uri(node)}/ThermalMetrics",
        Id="ThermalMetrics",
        Name="Thermal Metrics",
        TemperatureSummaryCelsius=summary,
        TemperatureReadingsCelsius=[{
            "DataSourceUri": sensor_uri(node, sensor),
            "DeviceName": sensor.name,
            "PhysicalContext": physical_context(spec),
            "Reading": sensor.value,
        } for spec, sensor in temperatures],
    ))
