"""`Systems/<id>/Storage`: one RAID controller with its volumes and controller; the drives
are the chassis' (`Chassis/<id>/Drives`).

Volumes can be created (POST, `Immediate`) and deleted, as Ironic's RAID configuration does;
nothing is written anywhere, the controller only keeps the list (`bmc.inventory.VolumeStore`).
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, Response

from bmc.inventory import RAID_LEVELS, Drive, Volume, VolumeError
from bmc.node import Node
from redfish import context, odata, paths
from redfish.errors import error
from redfish.odata import Body, link
from redfish.patching import Prop, parse_action
from redfish.resources.chassis_base import chassis_node
from redfish.resources.systems import system_node

log = logging.getLogger(__name__)

bp = Blueprint("storage", __name__)

RAID_TYPES = tuple(RAID_LEVELS)

STORAGE_ID = "Storage0"
CONTROLLER_ID = "Controller0"
SETTINGS_TYPE = f"#Settings.{odata.EMBEDDED_SCHEMAS['Settings']}"
ROUTE = f"{paths.SYSTEMS}/<system_id>/Storage"
HEALTHY = {"State": "Enabled", "Health": "OK"}


def storage_uri(node: Node) -> str:
    return f"{paths.system(node)}/Storage/{STORAGE_ID}"


def drive_uri(node: Node, drive: Drive) -> str:
    # drives live in the chassis (DSP0266 deprecates them under Systems/.../Storage)
    return f"{paths.chassis(node)}/Drives/{drive.id}"


def volume_uri(node: Node, volume: Volume) -> str:
    return f"{storage_uri(node)}/Volumes/{volume.id}"


def _node(system_id: str, storage_id: str) -> Node:
    node = system_node(system_id)
    if storage_id != STORAGE_ID:
        raise context.missing()
    return node


@bp.get(ROUTE)
def storages(system_id: str) -> Response:
    node = system_node(system_id)
    return odata.json_response(odata.collection(
        "StorageCollection", f"{paths.system(node)}/Storage", "Storage Collection",
        [storage_uri(node)]))


@bp.get(f"{ROUTE}/<storage_id>")
def storage(system_id: str, storage_id: str) -> Response:
    node = _node(system_id, storage_id)
    uri = storage_uri(node)
    return odata.json_response(odata.resource(
        "Storage", uri,
        Id=STORAGE_ID,
        Name="RAID storage",
        Drives=[link(drive_uri(node, d)) for d in node.inventory.drives],
        Volumes=link(f"{uri}/Volumes"),
        Controllers=link(f"{uri}/Controllers"),
        Status=HEALTHY,
    ))


@bp.get(f"{paths.CHASSIS}/<chassis_id>/Drives")
def drives(chassis_id: str) -> Response:
    node = chassis_node(chassis_id)
    return odata.json_response(odata.collection(
        "DriveCollection", f"{paths.chassis(node)}/Drives", "Drive Collection",
        [drive_uri(node, d) for d in node.inventory.drives]))


@bp.get(f"{paths.CHASSIS}/<chassis_id>/Drives/<drive_id>")
def drive(chassis_id: str, drive_id: str) -> Response:
    node = chassis_node(chassis_id)
    disk = context.find(node.inventory.drives, drive_id)
    volumes = [link(volume_uri(node, v)) for v in node.inventory.volumes.all()
               if disk.id in v.drive_ids]
    return odata.json_response(odata.resource(
        "Drive", drive_uri(node, disk),
        Id=disk.id,
        Name=f"Drive {disk.id}",
        Model=disk.model,
        Manufacturer=disk.manufacturer,
        SerialNumber=disk.serial,
        Revision=disk.revision,
        CapacityBytes=disk.capacity_bytes,
        MediaType=disk.media_type,
        Protocol=disk.protocol,
        Status=HEALTHY,
        Links={"Volumes": volumes},
    ))


@bp.get(f"{ROUTE}/<storage_id>/Volumes")
def volumes(system_id: str, storage_id: str) -> Response:
    node = _node(system_id, storage_id)
    body = odata.collection(
        "VolumeCollection", f"{storage_uri(node)}/Volumes", "Volume Collection",
        [volume_uri(node, v) for v in node.inventory.volumes.all()])
    body["@Redfish.OperationApplyTimeSupport"] = {
        "@odata.type": f"{SETTINGS_TYPE}.OperationApplyTimeSupport",
        "SupportedValues": ["Immediate"],
    }
    return odata.json_response(body)


@bp.get(f"{ROUTE}/<storage_id>/Volumes/<volume_id>")
def volume(system_id: str, storage_id: str, volume_id: str) -> Response:
    node = _node(system_id, storage_id)
    return odata.json_response(volume_body(node, context.find(node.inventory.volumes.all(),
                                                              volume_id)))


def volume_body(node: Node, vol: Volume) -> Body:
    drives = {d.id: d for d in node.inventory.drives}
    return odata.resource(
        "Volume", volume_uri(node, vol),
        Id=vol.id,
        Name=vol.name,
        RAIDType=vol.raid_type,
        CapacityBytes=vol.capacity_bytes,
        Status=HEALTHY,
        Links={"Drives": [link(drive_uri(node, drives[i])) for i in vol.drive_ids]},
    )


@bp.get(f"{ROUTE}/<storage_id>/Controllers")
def controllers(system_id: str, storage_id: str) -> Response:
    node = _node(system_id, storage_id)
    uri = f"{storage_uri(node)}/Controllers"
    return odata.json_response(odata.collection(
        "StorageControllerCollection", uri, "Storage Controller Collection",
        [f"{uri}/{CONTROLLER_ID}"]))


@bp.get(f"{ROUTE}/<storage_id>/Controllers/<controller_id>")
def controller(system_id: str, storage_id: str, controller_id: str) -> Response:
    node = _node(system_id, storage_id)
    if controller_id != CONTROLLER_ID:
        raise context.missing()
    inventory = node.inventory
    return odata.json_response(odata.resource(
        "StorageController", f"{storage_uri(node)}/Controllers/{CONTROLLER_ID}",
        Id=CONTROLLER_ID,
        Name=inventory.controller_model,
        Model=inventory.controller_model,
        SupportedRAIDTypes=list(inventory.supported_raid_types),
        SupportedControllerProtocols=["PCIe"],
        SupportedDeviceProtocols=sorted({d.protocol for d in inventory.drives}),
        Status=HEALTHY,
    ))


VOLUME_PARAMS: dict[str, Prop] = {
    "Name": Prop(str, max_length=64),
    "RAIDType": Prop(str, RAID_TYPES, required=True),
    "CapacityBytes": Prop(int, minimum=1),
    "Links": Prop(dict, required=True),
    "VolumeType": Prop(str),  # deprecated by RAIDType; older clients still send it
}


@bp.post(f"{ROUTE}/<storage_id>/Volumes")
def create_volume(system_id: str, storage_id: str) -> Response:
    node = _node(system_id, storage_id)
    context.require("ConfigureComponents")
    body = context.json_body()
    params = parse_action(body, "Volume", VOLUME_PARAMS)  # annotations are skipped
    drive_links = params["Links"].get("Drives")
    prefix = f"{paths.chassis(node)}/Drives/"
    if not isinstance(drive_links, list) or not all(
            isinstance(d, dict) and str(d.get("@odata.id", "")).startswith(prefix)
            for d in drive_links):
        raise error(400, "PropertyValueFormatError", json.dumps(params["Links"]),
                    "Links/Drives", related="#/Links/Drives")
    drive_ids = [d["@odata.id"].removeprefix(prefix) for d in drive_links]
    try:
        vol = node.inventory.volumes.create(params.get("Name") or f"{params['RAIDType']} volume",
                                            params["RAIDType"], drive_ids,
                                            params.get("CapacityBytes"))
    except VolumeError as exc:
        raise error(400, "PropertyValueConflict", "Links/Drives", "RAIDType",
                    related="#/Links/Drives", text=f"The volume cannot be built: {exc}.") from None
    log.info("%s: volume %s (%s on %s) created by %s", node.name, vol.id, vol.raid_type,
             ", ".join(vol.drive_ids), context.principal().user.name)
    return odata.json_response(volume_body(node, vol), 201, {"Location": volume_uri(node, vol)})


@bp.delete(f"{ROUTE}/<storage_id>/Volumes/<volume_id>")
def delete_volume(system_id: str, storage_id: str, volume_id: str) -> Response:
    node = _node(system_id, storage_id)
    context.require("ConfigureComponents")
    if not node.inventory.volumes.delete(volume_id):
        raise context.missing()
    log.info("%s: volume %s deleted by %s", node.name, volume_id, context.principal().user.name)
    return Response(status=204)
