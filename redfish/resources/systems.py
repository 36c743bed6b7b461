"""`/redfish/v1/Systems`, the node's ComputerSystem, its Reset action and boot override PATCH.

The system Id is the node name. Power and boot state are read from, and written to, the node
model only, so IPMI sees every change made here and vice versa.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, request

from backends.base import BootDevice
from bmc.node import Node, PowerAction
from redfish import context, odata, paths
from redfish.errors import Message, RedfishError, error
from redfish.odata import Body, link

log = logging.getLogger(__name__)

bp = Blueprint("systems", __name__)

RESET_ACTION = "#ComputerSystem.Reset"
RESET_TYPES = [action.value for action in PowerAction]
BOOT_TARGETS = [device.value for device in BootDevice]
BOOT_ENABLED = ["Disabled", "Once", "Continuous"]
BOOT_MODES = ["UEFI", "Legacy"]
#: writable members of `Boot`, with their acceptable values
BOOT_PROPERTIES = {
    "BootSourceOverrideTarget": BOOT_TARGETS,
    "BootSourceOverrideEnabled": BOOT_ENABLED,
    "BootSourceOverrideMode": BOOT_MODES,
}


def system_body(node: Node) -> Body:
    boot = node.boot_override
    identity = node.identity
    return odata.resource(
        "ComputerSystem", paths.system(node),
        Id=node.name,
        Name=node.name,
        Description=f"Simulated server {node.name}",
        SystemType="Physical",
        Manufacturer=identity.manufacturer,
        Model=identity.product,
        SerialNumber=identity.serial,
        UUID=node.uuid,
        PowerState=node.power_state.value,
        Status={"State": "Enabled", "Health": "OK"},
        Boot={
            "BootSourceOverrideEnabled": boot.enabled,
            "BootSourceOverrideEnabled@Redfish.AllowableValues": BOOT_ENABLED,
            "BootSourceOverrideTarget": boot.device.value,
            "BootSourceOverrideTarget@Redfish.AllowableValues": BOOT_TARGETS,
            "BootSourceOverrideMode": "UEFI" if boot.uefi else "Legacy",
            "BootSourceOverrideMode@Redfish.AllowableValues": BOOT_MODES,
        },
        Links={
            "Chassis": [link(paths.chassis(node))],
            "ManagedBy": [link(paths.MANAGER)],
        },
        Actions={
            RESET_ACTION: {
                "target": paths.system_reset(node),
                "ResetType@Redfish.AllowableValues": RESET_TYPES,
            },
        },
    )


def _system_node(system_id: str) -> Node:
    node = context.node()
    if system_id != node.name:
        raise context.missing()
    return node


@bp.get(paths.SYSTEMS)
def systems() -> Response:
    node = context.node()
    return odata.json_response(odata.collection(
        "ComputerSystemCollection", paths.SYSTEMS, "Computer System Collection",
        [paths.system(node)]))


@bp.get(f"{paths.SYSTEMS}/<system_id>")
def get_system(system_id: str) -> Response:
    return odata.json_response(system_body(_system_node(system_id)))


@bp.patch(f"{paths.SYSTEMS}/<system_id>")
def patch_system(system_id: str) -> Response:
    node = _system_node(system_id)
    context.require("ConfigureComponents")
    body = context.json_body()
    with context.state().write_lock:
        if_match = request.headers.get("If-Match", "").strip()
        if if_match:
            # the ETag the client saw must be the one of the resource as it is now
            current = odata.etag_of(odata.dumps(system_body(node)))
            if not odata.etag_matches(if_match, current):
                raise error(412, "PreconditionFailed")
        change = parse_system_patch(body)
        if change.changes_anything():
            node.set_boot_override(change.device, persistent=change.persistent,
                                   uefi=change.uefi)
            log.info("%s: boot override set to %s by %s", node.name, node.boot_override,
                     context.principal().user.name)
    return odata.json_response(system_body(node))


@dataclass
class BootChange:
    """What a PATCH asks of `Node.set_boot_override`; None leaves a field as it is."""

    device: BootDevice | None = None
    persistent: bool | None = None
    uefi: bool | None = None

    def changes_anything(self) -> bool:
        return (self.device, self.persistent, self.uefi) != (None, None, None)


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def parse_system_patch(body: dict[str, Any]) -> BootChange:
    """Validate a ComputerSystem PATCH body; every problem found is reported at once."""
    problems: list[Message] = []
    boot: dict[str, str] = {}
    # annotations (@odata.etag, ...) that clients echo back are not properties: skip them
    properties = {k: v for k, v in body.items() if not k.startswith("@")}
    if not properties:
        raise error(400, "EmptyJSON")
    for name, value in properties.items():
        if name != "Boot":
            message_id = "PropertyNotWritable" if name in _READ_ONLY else "PropertyUnknown"
            problems.append(Message(message_id, (name,), (f"#/{name}",)))
        elif not isinstance(value, dict):
            problems.append(Message("PropertyValueTypeError", (_show(value), "Boot"),
                                    ("#/Boot",)))
        else:
            problems.extend(_check_boot(value, boot))
    if problems:
        raise RedfishError(400, problems)
    return _boot_change(boot)


def _check_boot(value: dict[str, Any], boot: dict[str, str]) -> list[Message]:
    problems = []
    for name, member in value.items():
        where = f"Boot/{name}"
        if "@" in name:
            continue  # e.g. BootSourceOverrideTarget@Redfish.AllowableValues echoed back
        if name not in BOOT_PROPERTIES:
            problems.append(Message("PropertyUnknown", (where,), (f"#/{where}",)))
        elif not isinstance(member, str):
            problems.append(Message("PropertyValueTypeError", (_show(member), where),
                                    (f"#/{where}",)))
        elif member not in BOOT_PROPERTIES[name]:
            problems.append(Message("PropertyValueNotInList", (member, where), (f"#/{where}",)))
        else:
            boot[name] = member
    target, enabled = boot.get("BootSourceOverrideTarget"), boot.get("BootSourceOverrideEnabled")
    if enabled == "Disabled" and target not in (None, BootDevice.NONE.value):
        problems.append(Message(
            "PropertyValueConflict", ("Boot/BootSourceOverrideTarget",
                                      "Boot/BootSourceOverrideEnabled"),
            ("#/Boot/BootSourceOverrideTarget",)))
    return problems


def _boot_change(boot: dict[str, str]) -> BootChange:
    change = BootChange()
    target = boot.get("BootSourceOverrideTarget")
    enabled = boot.get("BootSourceOverrideEnabled")
    mode = boot.get("BootSourceOverrideMode")
    if target is not None:
        change.device = BootDevice(target)
    if enabled == "Disabled":
        # Redfish "Disabled" is the IPMI "no override": the device goes back to None
        change.device, change.persistent = BootDevice.NONE, False
    elif enabled is not None:
        change.persistent = enabled == "Continuous"
    if mode is not None:
        change.uefi = mode == "UEFI"
    return change


#: top-level ComputerSystem properties a client may read but not write
_READ_ONLY = frozenset({
    "Id", "Name", "Description", "SystemType", "Manufacturer", "Model", "SerialNumber", "UUID",
    "PowerState", "Status", "Links", "Actions",
})


@bp.post(f"{paths.SYSTEMS}/<system_id>/Actions/ComputerSystem.Reset")
def reset_system(system_id: str) -> Response:
    node = _system_node(system_id)
    context.require("ConfigureComponents")
    action = _reset_action(context.json_body())
    node.power(action)
    log.info("%s: %s by %s, power now %s", node.name, action.value,
             context.principal().user.name, node.power_state.value)
    return Response(status=204)


def _reset_action(body: dict[str, Any]) -> PowerAction:
    for name in body:
        if name != "ResetType" and "@" not in name:
            raise error(400, "ActionParameterUnknown", RESET_ACTION, name)
    if "ResetType" not in body:
        raise error(400, "ActionParameterMissing", RESET_ACTION, "ResetType")
    value = body["ResetType"]
    if not isinstance(value, str):
        raise error(400, "ActionParameterValueTypeError", _show(value), "ResetType",
                    RESET_ACTION)
    try:
        return PowerAction(value)
    except ValueError:
        raise error(400, "ActionParameterValueNotInList", value, "ResetType",
                    RESET_ACTION) from None
