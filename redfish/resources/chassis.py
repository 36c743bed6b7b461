"""`/redfish/v1/Chassis` and the node's chassis (its Id is the node name, like the system's)."""

from __future__ import annotations

from flask import Blueprint, Response

from redfish import context, odata, paths
from redfish.odata import link
from redfish.resources.sensors import rolled_up_status

bp = Blueprint("chassis", __name__)


@bp.get(paths.CHASSIS)
def chassis_collection() -> Response:
    node = context.node()
    return odata.json_response(odata.collection(
        "ChassisCollection", paths.CHASSIS, "Chassis Collection", [paths.chassis(node)]))


@bp.get(f"{paths.CHASSIS}/<chassis_id>")
def chassis(chassis_id: str) -> Response:
    node = context.node()
    if chassis_id != node.name:
        raise context.missing()
    identity = node.identity
    uri = paths.chassis(node)
    return odata.json_response(odata.resource(
        "Chassis", uri,
        Id=node.name,
        Name=f"Chassis of {node.name}",
        ChassisType="RackMount",
        Manufacturer=identity.manufacturer,
        Model=identity.product,
        SerialNumber=identity.serial,
        PowerState=node.power_state.value,
        UUID=node.uuid,
        Status=rolled_up_status(node),
        Power=link(f"{uri}/Power"),
        Thermal=link(f"{uri}/Thermal"),
        PowerSubsystem=link(f"{uri}/PowerSubsystem"),
        ThermalSubsystem=link(f"{uri}/ThermalSubsystem"),
        Sensors=link(f"{uri}/Sensors"),
        Drives=link(f"{uri}/Drives"),
        Links={
            "ComputerSystems": [link(paths.system(node))],
            "ManagedBy": [link(paths.MANAGER)],
        },
    ))
