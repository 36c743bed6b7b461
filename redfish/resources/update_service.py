"""UpdateService: the firmware inventory (BMC, BIOS) and `SimpleUpdate`, run as a task.

The image is not downloaded: the update is recorded as a task that ends after the node's
`firmware.update_seconds`, and the inventory (and BiosVersion, the Manager's FirmwareVersion,
IPMI Get Device ID) show the new version afterwards.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response

from bmc.firmware import TRANSFER_PROTOCOLS, Component
from bmc.node import Node
from bmc.virtual_media import ImageUrlError, redact
from redfish import context, odata, paths
from redfish.errors import error
from redfish.odata import link
from redfish.patching import Prop, parse_action
from redfish.resources.task_service import accepted

log = logging.getLogger(__name__)

bp = Blueprint("update_service", __name__)

UPDATE_ACTION = "#UpdateService.SimpleUpdate"
UPDATE_TARGET = f"{paths.UPDATE_SERVICE}/Actions/UpdateService.SimpleUpdate"
#: Redfish TransferProtocolType values (those we take are bmc.firmware.TRANSFER_PROTOCOLS)
ALL_PROTOCOLS = ("CIFS", "FTP", "SFTP", "HTTP", "HTTPS", "NSF", "SCP", "TFTP", "OEM", "NFS")


def component_uri(component: Component) -> str:
    return f"{paths.FIRMWARE_INVENTORY}/{component.id}"


@bp.get(paths.UPDATE_SERVICE)
def update_service() -> Response:
    return odata.json_response(odata.resource(
        "UpdateService", paths.UPDATE_SERVICE,
        Id="UpdateService",
        Name="Update Service",
        ServiceEnabled=True,
        FirmwareInventory=link(paths.FIRMWARE_INVENTORY),
        Status={"State": "Enabled", "Health": "OK"},
        Actions={UPDATE_ACTION: {
            "target": UPDATE_TARGET,
            "TransferProtocol@Redfish.AllowableValues": list(TRANSFER_PROTOCOLS),
        }},
    ))


@bp.get(paths.FIRMWARE_INVENTORY)
def firmware_inventory() -> Response:
    node = context.node()
    return odata.json_response(odata.collection(
        "SoftwareInventoryCollection", paths.FIRMWARE_INVENTORY, "Firmware Inventory",
        [component_uri(c) for c in node.firmware.components()]))


@bp.get(f"{paths.FIRMWARE_INVENTORY}/<component_id>")
def firmware_component(component_id: str) -> Response:
    node = context.node()
    component = context.find(node.firmware.components(), component_id)
    related = paths.MANAGER if component.id == "BMC" else paths.system(node)
    return odata.json_response(odata.resource(
        "SoftwareInventory", component_uri(component),
        Id=component.id,
        Name=component.name,
        Version=component.version,
        Updateable=component.updateable,
        SoftwareId=component.id,
        RelatedItem=[link(related)],
        Status={"State": "Enabled", "Health": "OK"},
    ))


def _target_ids(node: Node, targets: list[str]) -> list[str]:
    """Component Ids of SimpleUpdate `Targets` (inventory, system or manager URIs)."""
    ids = []
    for target in targets:
        uri = target.rstrip("/")
        if uri.startswith(f"{paths.FIRMWARE_INVENTORY}/"):
            ids.append(uri.rsplit("/", 1)[1])
        elif uri == paths.system(node):
            ids.append("BIOS")
        elif uri == paths.MANAGER:
            ids.append("BMC")
        else:
            raise error(400, "ActionParameterValueError", "Targets", UPDATE_ACTION,
                        related="#/Targets")
    return ids


@bp.post(f"{paths.UPDATE_SERVICE}/Actions/UpdateService.SimpleUpdate")
def simple_update() -> Response:
    context.require("ConfigureComponents")
    node = context.node()
    body = context.json_body()
    params = parse_action(body, UPDATE_ACTION, {
        "ImageURI": Prop(str, required=True, max_length=2048),
        "TransferProtocol": Prop(str, ALL_PROTOCOLS),
        "Targets": Prop(list, item=Prop(str)),
        "Username": Prop(str),
        "Password": Prop(str),
        "ForceUpdate": Prop(bool),
    })
    protocol = params.get("TransferProtocol")
    if protocol is not None and protocol not in TRANSFER_PROTOCOLS:
        raise error(400, "ActionParameterValueNotInList", protocol, "TransferProtocol",
                    UPDATE_ACTION, related="#/TransferProtocol")
    ids = _target_ids(node, params.get("Targets", []))
    # the task shows the request: never its secrets
    shown = {k: v for k, v in body.items() if k != "Password"}
    if isinstance(shown.get("ImageURI"), str):
        shown["ImageURI"] = redact(shown["ImageURI"])
    try:
        task = node.firmware.simple_update(params["ImageURI"], ids, protocol,
                                           target_uri=UPDATE_TARGET, body=shown)
    except ImageUrlError as exc:
        raise error(400, "ActionParameterValueFormatError", params["ImageURI"], "ImageURI",
                    UPDATE_ACTION, related="#/ImageURI",
                    text=f"The value '{params['ImageURI']}' for the parameter ImageURI in the "
                         f"action {UPDATE_ACTION} is not a format that the parameter can "
                         f"accept: {exc}.") from None
    except LookupError:
        raise error(400, "ActionParameterValueError", "Targets", UPDATE_ACTION,
                    related="#/Targets") from None
    except ValueError:
        raise error(400, "ActionParameterValueConflict", "TransferProtocol", str(protocol),
                    related="#/TransferProtocol") from None
    log.info("%s: firmware update task %s from %s by %s", node.name, task.id,
             redact(params["ImageURI"]), context.principal().user.name)
    return accepted(task)
