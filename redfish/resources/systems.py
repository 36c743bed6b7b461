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

from backends.base import BackendError, BootDevice, PowerState
from bmc.node import DEFAULT_IDENTIFY_SECONDS, IdentifyState, Node, PowerAction
from bmc.power import BackendUnavailable, NodeBusy
from redfish import context, odata, paths
from redfish.errors import Message, RedfishError, error
from redfish.odata import Body, link
from redfish.patching import Prop, Shape, check_if_match, parse_patch, with_ignored
from redfish.resources.sensors import rolled_up_status
from redfish.resources.task_service import accepted

log = logging.getLogger(__name__)

bp = Blueprint("systems", __name__)

RESET_ACTION = "#ComputerSystem.Reset"
RESET_TYPES = [action.value for action in PowerAction]
BOOT_TARGETS = [device.value for device in BootDevice]
BOOT_ENABLED = ["Disabled", "Once", "Continuous"]
BOOT_MODES = ["UEFI", "Legacy"]
#: how long a Reset waits for the backend before it answers 202 with a task instead of 204
RESET_WAIT_SECONDS = 1.0
#: what a 503 tells the client to wait
RETRY_SECONDS = 2.0


def reset_types(node: Node) -> list[str]:
    """The ResetType values the node's backend can carry out."""
    return [action.value for action in PowerAction if node.supports(action)]


def boot_targets(node: Node) -> list[str]:
    devices = node.backend.capabilities.boot_devices | {BootDevice.NONE}
    return [device.value for device in BootDevice if device in devices]


def boot_modes(node: Node) -> list[str]:
    modes = node.backend.capabilities.boot_modes
    return [mode for mode in BOOT_MODES if mode in modes]


def power_state(node: Node) -> str:
    """Redfish PowerState: PoweringOn/PoweringOff while an action is taking it there."""
    state, target = node.power_state, node.power_transition
    if target is not None and target is not state:
        return "PoweringOn" if target is PowerState.ON else "PoweringOff"
    return state.value


def status(node: Node) -> dict[str, str]:
    """Status of the system: its sensors' health rollup, Critical while its backend is
    failing."""
    body = rolled_up_status(node)
    if node.backend_fault:
        body["Health"] = body["HealthRollup"] = "Critical"
    return body

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
        PowerState=power_state(node),
        IndicatorLED=identify.state.value,
        LocationIndicatorActive=identify.active,
        Status=status(node),
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
            "BootSourceOverrideTarget@Redfish.AllowableValues": boot_targets(node),
            "BootSourceOverrideMode": "UEFI" if boot.uefi else "Legacy",
            "BootSourceOverrideMode@Redfish.AllowableValues": boot_modes(node),
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
                "ResetType@Redfish.AllowableValues": reset_types(node),
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
        _check_supported(node, patch.changes.get("Boot", {}))
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


def _check_supported(node: Node, boot: dict[str, str]) -> None:
    """The shape allows every Redfish value; the node's backend may do fewer."""
    for name, allowed in (("BootSourceOverrideTarget", boot_targets(node)),
                          ("BootSourceOverrideMode", boot_modes(node))):
        value = boot.get(name)
        if value is not None and value not in allowed:
            raise error(400, "PropertyValueNotInList", value, f"Boot/{name}",
                        related=f"#/Boot/{name}")


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
    action = _reset_action(node, context.json_body())
    try:
        future = node.submit_power(action)
    except (BackendUnavailable, NodeBusy) as exc:
        raise unavailable(node, exc) from None
    user = context.principal().user.name
    try:
        future.result(RESET_WAIT_SECONDS)
    except TimeoutError:
        # still under way: a task the client can follow (sushy and Ironic do)
        task = node.tasks.track(f"{action.value} of {node.name}", future,
                                target_uri=paths.system_reset(node),
                                body={"ResetType": action.value})
        log.info("%s: %s by %s, under way as task %s", node.name, action.value, user, task.id)
        return accepted(task)
    except BackendError as exc:
        raise unavailable(node, exc) from None
    log.info("%s: %s by %s, power now %s", node.name, action.value, user,
             node.power_state.value)
    return Response(status=204)


def unavailable(node: Node, exc: Exception) -> RedfishError:
    """503 with Retry-After, naming why: the backend failed or the node is busy."""
    return error(503, "ServiceTemporarilyUnavailable", str(int(RETRY_SECONDS)),
                 headers={"Retry-After": str(int(RETRY_SECONDS))},
                 text=f"The server behind {node.name} cannot do this now: {exc}. "
                      f"Retry in {int(RETRY_SECONDS)} seconds.")


def _reset_action(node: Node, body: dict[str, Any]) -> PowerAction:
    for name in body:
        if name != "ResetType" and "@" not in name:
            raise error(400, "ActionParameterUnknown", RESET_ACTION, name)
    if "ResetType" not in body:
        raise error(400, "ActionParameterMissing", RESET_ACTION, "ResetType")
    value = body["ResetType"]
    if not isinstance(value, str):
        raise error(400, "ActionParameterValueTypeError", _show(value), "ResetType",
                    RESET_ACTION)
    if value not in reset_types(node):
        raise error(400, "ActionParameterValueNotInList", value, "ResetType", RESET_ACTION)
    return PowerAction(value)
