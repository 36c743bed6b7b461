"""Chassis power: the legacy `Power` resource (PowerControl, PowerSupplies, Voltages) and the
newer `PowerSubsystem` with its `PowerSupplies`, from the node's sensors (`bmc.sensors`).
"""

from __future__ import annotations

from flask import Blueprint, Response

from bmc.node import Node
from bmc.sensors import HEALTH_ORDER, Sensor, SensorKind, rollup
from redfish import context, odata, paths
from redfish.odata import Body, link
from redfish.resources.chassis_base import chassis_node
from redfish.resources.sensors import LEGACY_THRESHOLDS, analog, reading_range, sensor_id, status

bp = Blueprint("power", __name__)

PSU_CAPACITY_WATTS = 800
LINE_INPUT_VOLTS = 230


def _supplies(node: Node) -> list[Sensor]:
    return [s for s in node.sensors.readings() if s.kind is SensorKind.PSU]


def _electrical(node: Node) -> list[Sensor]:
    """The power and voltage readings (one read)."""
    return [s for _, s in analog(node) if s.kind in (SensorKind.POWER, SensorKind.VOLTAGE)]


def _health(sensors: list[Sensor], supplies: list[Sensor]) -> str:
    """The worst of the scanned sensors' health and the power supplies' health."""
    worst = [rollup(sensors), *(_psu_status(p)["Health"] for p in supplies)]
    return max(worst, key=HEALTH_ORDER.index)


def _psu_status(psu: Sensor) -> Body:
    present = "present" in psu.states
    failed = "failed" in psu.states
    return {"State": "Enabled" if present else "Absent",
            "Health": "Critical" if failed else "OK"}


def _psu_name(psu: Sensor) -> str:
    return psu.name.removesuffix(" Status")


def power_body(node: Node) -> Body:
    uri = f"{paths.chassis(node)}/Power"
    sensors = _electrical(node)
    meters = [s for s in sensors if s.kind is SensorKind.POWER]
    consumed = meters[0].value if meters else None
    supplies = _supplies(node)
    working = [p for p in supplies if "present" in p.states and "failed" not in p.states]
    share = round(consumed / len(working), 1) if consumed is not None and working else 0.0
    voltages = []
    for spec, sensor in analog(node):
        if sensor.kind is SensorKind.VOLTAGE:
            low, high = reading_range(spec)
            voltages.append({
                "@odata.id": f"{uri}#/Voltages/{len(voltages)}",
                "MemberId": str(len(voltages)),
                "Name": sensor.name,
                "SensorNumber": sensor.number,
                "ReadingVolts": sensor.value,
                "MinReadingRange": low,
                "MaxReadingRange": high,
                "PhysicalContext": "VoltageRegulator",
                "Status": status(sensor),
                **{LEGACY_THRESHOLDS[n]: v for n, v in sensor.thresholds.items()},
            })
    return odata.resource(
        "Power", uri,
        Id="Power",
        Name="Power",
        PowerControl=[{
            "@odata.id": f"{uri}#/PowerControl/0",
            "MemberId": "0",
            "Name": "System Power Control",
            "PowerConsumedWatts": consumed,
            "PowerCapacityWatts": PSU_CAPACITY_WATTS * len(supplies),
            "Status": {"State": "Enabled", "Health": rollup(meters)},
        }],
        PowerSupplies=[{
            "@odata.id": f"{uri}#/PowerSupplies/{i}",
            "MemberId": str(i),
            "Name": _psu_name(psu),
            "PowerSupplyType": "AC",
            "LineInputVoltage": LINE_INPUT_VOLTS,
            "PowerCapacityWatts": PSU_CAPACITY_WATTS,
            "LastPowerOutputWatts": share if psu in working else 0.0,
            "Manufacturer": "bmc-emulator",
            "Model": "PSU-800W",
            "SerialNumber": f"PSU-{node.uuid[:4].upper()}-{i}",
            "Status": _psu_status(psu),
        } for i, psu in enumerate(supplies)],
        Voltages=voltages,
    )


@bp.get(f"{paths.CHASSIS}/<chassis_id>/Power")
def power(chassis_id: str) -> Response:
    return odata.json_response(power_body(chassis_node(chassis_id)))


def _subsystem_uri(node: Node) -> str:
    return f"{paths.chassis(node)}/PowerSubsystem"


@bp.get(f"{paths.CHASSIS}/<chassis_id>/PowerSubsystem")
def power_subsystem(chassis_id: str) -> Response:
    node = chassis_node(chassis_id)
    uri = _subsystem_uri(node)
    supplies = _supplies(node)
    health = _health(_electrical(node), supplies)
    return odata.json_response(odata.resource(
        "PowerSubsystem", uri,
        Id="PowerSubsystem",
        Name="Power Subsystem",
        CapacityWatts=PSU_CAPACITY_WATTS * len(supplies),
        PowerSupplies=link(f"{uri}/PowerSupplies"),
        Status={"State": "Enabled", "Health": health},
    ))


@bp.get(f"{paths.CHASSIS}/<chassis_id>/PowerSubsystem/PowerSupplies")
def power_supplies(chassis_id: str) -> Response:
    node = chassis_node(chassis_id)
    uri = f"{_subsystem_uri(node)}/PowerSupplies"
    return odata.json_response(odata.collection(
        "PowerSupplyCollection", uri, "Power Supply Collection",
        [f"{uri}/{sensor_id(_psu_name(p))}" for p in _supplies(node)]))


@bp.get(f"{paths.CHASSIS}/<chassis_id>/PowerSubsystem/PowerSupplies/<psu_id>")
def power_supply(chassis_id: str, psu_id: str) -> Response:
    node = chassis_node(chassis_id)
    for i, psu in enumerate(_supplies(node)):
        if sensor_id(_psu_name(psu)) == psu_id:
            return odata.json_response(odata.resource(
                "PowerSupply", f"{_subsystem_uri(node)}/PowerSupplies/{psu_id}",
                Id=psu_id,
                Name=_psu_name(psu),
                PowerSupplyType="AC",
                PowerCapacityWatts=PSU_CAPACITY_WATTS,
                Manufacturer="bmc-emulator",
                Model="PSU-800W",
                SerialNumber=f"PSU-{node.uuid[:4].upper()}-{i}",
                Status=_psu_status(psu),
            ))
    raise context.missing()
