"""`/redfish/v1/Systems`, the node's ComputerSystem, its Reset action and boot override PATCH.

The system Id is the node name. Power and boot state are read from, and written to, the node
model only, so IPMI sees every change made here and vice versa.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response

from backends.base import BootDevice
from bmc.node import DEFAULT_IDENTIFY_SECONDS, IdentifyState, Node, PowerAction
from redfish import context, odata, paths
from redfish.errors import Message, RedfishError, error
from redfish.odata import Body, link
from redfish.patching import Prop, Shape, check_if_match, parse_patch, with_ignored

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


INDICATOR_LEDS = [state.value for state in IdentifyState]


def system_body(node: Node) -> Body:
    boot = node.boot_override
    identity = node.identity
    inventory = node.inventory
    uri = paths.system(node)
    identify = node.identify
    cpu = inventory.processors[0] if inventory.processors else None
    return odata.resource(
        "ComputerSystem", uri,
        Id=node.name,
        Name=node.name,
        Description=f"Simulated server {node.name}",
        SystemType="Physical",
        Manufacturer=identity.manufacturer,
        Model=identity.product,
        SerialNumber=identity.serial,
        UUID=node.uuid,
        BiosVersion=node.firmware.bios_version,
        PowerState=node.power_state.value,
        IndicatorLED=identify.state.value,
        LocationIndicatorActive=identify.active,
        Status={"State": "Enabled", "Health": "OK"},
        ProcessorSummary={
            "Count": len(inventory.processors),
            "CoreCount": inventory.total_cores,
            "LogicalProcessorCount": inventory.total_threads,
            "Model": cpu.model if cpu else None,
        },
        MemorySummary={
            "TotalSystemMemoryGiB": inventory.total_memory_gib,
        },
        Boot={
            "BootSourceOverrideEnabled": boot.enabled,
            "BootSourceOverrideEnabled@Redfish.AllowableValues": BOOT_ENABLED,
            "BootSourceOverrideTarget": boot.device.value,
            "BootSourceOverrideTarget@Redfish.AllowableValues": BOOT_TARGETS,
            "BootSourceOverrideMode": "UEFI" if boot.uefi else "Legacy",
            "BootSourceOverrideMode@Redfish.AllowableValues": BOOT_MODES,
        },
        Bios=link(f"{uri}/Bios"),
        SecureBoot=link(f"{uri}/SecureBoot"),
        Processors=link(f"{uri}/Processors"),
        Memory=link(f"{uri}/Memory"),
        EthernetInterfaces=link(f"{uri}/EthernetInterfaces"),
        SimpleStorage=link(f"{uri}/SimpleStorage"),
        Storage=link(f"{uri}/Storage"),
        LogServices=link(f"{uri}/LogServices"),
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


def system_node(system_id: str) -> Node:
    """The request's node if `system_id` names its system; 404 otherwise."""
    node = context.node()
    if system_id != node.name:
        raise context.missing()
    return node


_system_node = system_node


@bp.get(paths.SYSTEMS)
def systems() -> Response:
    node = context.node()
    return odata.json_response(odata.collection(
        "ComputerSystemCollection", paths.SYSTEMS, "Computer System Collection",
        [paths.system(node)]))


@bp.get(f"{paths.SYSTEMS}/<system_id>")
def get_system(system_id: str) -> Response:
    return odata.json_response(system_body(_system_node(system_id)))


#: what a client may write in a ComputerSystem
SHAPE: Shape = {
    "Boot": {name: Prop(str, tuple(values)) for name, values in BOOT_PROPERTIES.items()},
    "IndicatorLED": Prop(str, tuple(INDICATOR_LEDS)),
    "LocationIndicatorActive": Prop(bool),
}


@bp.patch(f"{paths.SYSTEMS}/<system_id>")
def patch_system(system_id: str) -> Response:
    node = _system_node(system_id)
    context.require("ConfigureComponents")
    body = context.json_body()
    with context.state().write_lock:
        current = system_body(node)
        # the ETag the client saw must be the one of the resource as it is now
        check_if_match(current)
        patch = parse_patch(body, SHAPE, current)
        change = _boot_change(patch.changes.get("Boot", {}))
        _check_conflict(patch.changes.get("Boot", {}))
        if change.changes_anything():
            node.set_boot_override(change.device, persistent=change.persistent,
                                   uefi=change.uefi)
            log.info("%s: boot override set to %s by %s", node.name, node.boot_override,
                     context.principal().user.name)
        _set_identify(node, patch.changes)
    return odata.json_response(with_ignored(system_body(node), patch))


def _set_identify(node: Node, changes: dict[str, Any]) -> None:
    led = changes.get("IndicatorLED")
    active = changes.get("LocationIndicatorActive")
    if led == IdentifyState.ON.value or (led is None and active is True):
        node.set_identify(None)  # lit until turned off
    elif led == IdentifyState.TIMED.value:
        node.set_identify(DEFAULT_IDENTIFY_SECONDS)
    elif led == IdentifyState.OFF.value or active is False:
        node.set_identify(0)


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


def _check_conflict(boot: dict[str, str]) -> None:
    target, enabled = boot.get("BootSourceOverrideTarget"), boot.get("BootSourceOverrideEnabled")
    if enabled == "Disabled" and target not in (None, BootDevice.NONE.value):
        raise RedfishError(400, [Message(
            "PropertyValueConflict", ("Boot/BootSourceOverrideTarget",
                                      "Boot/BootSourceOverrideEnabled"),
            ("#/Boot/BootSourceOverrideTarget",))])


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
