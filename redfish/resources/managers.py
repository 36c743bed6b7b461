"""`/redfish/v1/Managers` and the one Manager, `BMC`: the emulated BMC itself."""

from __future__ import annotations

import uuid as uuidlib

from flask import Blueprint, Response

from bmc.node import Node
from redfish import context, odata, paths
from redfish.odata import link
from redfish.resources.console import console_properties

bp = Blueprint("managers", __name__)


def service_uuid(node: Node) -> str:
    """The BMC's own UUID (ServiceRoot, Manager): stable per node, distinct from the system's.

    The system UUID is the server's SMBIOS UUID; a real BMC is a separate device with its own.
    """
    try:
        namespace = uuidlib.UUID(node.uuid)
    except ValueError:  # a configured UUID that is not one: still derive something stable
        namespace = uuidlib.uuid5(uuidlib.NAMESPACE_DNS, node.uuid)
    return str(uuidlib.uuid5(namespace, "bmc"))


@bp.get(paths.MANAGERS)
def managers() -> Response:
    return odata.json_response(odata.collection(
        "ManagerCollection", paths.MANAGERS, "Manager Collection", [paths.MANAGER]))


@bp.get(f"{paths.MANAGERS}/<manager_id>")
def manager(manager_id: str) -> Response:
    if manager_id != paths.MANAGER_ID:
        raise context.missing()
    node = context.node()
    return odata.json_response(odata.resource(
        "Manager", paths.MANAGER,
        Id=paths.MANAGER_ID,
        Name="Manager",
        Description=f"Baseboard management controller of {node.name}",
        ManagerType="BMC",
        UUID=service_uuid(node),
        Model="bmc-emulator",
        FirmwareVersion=node.identity.firmware_version,
        PowerState="On",  # the BMC runs on standby power whatever the server does
        Status={"State": "Enabled", "Health": "OK"},
        VirtualMedia=link(paths.VIRTUAL_MEDIA),
        LogServices=link(paths.MANAGER_LOG_SERVICES),
        Links={
            "ManagerForServers": [link(paths.system(node))],
            "ManagerForChassis": [link(paths.chassis(node))],
            "ManagerInChassis": link(paths.chassis(node)),
        },
        **console_properties(node),
    ))

