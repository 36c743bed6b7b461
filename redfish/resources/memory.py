"""`Systems/<id>/Memory`: the DIMMs of the node's hardware profile (`bmc.inventory`)."""

from __future__ import annotations

from flask import Blueprint, Response

from bmc.inventory import Dimm
from bmc.node import Node
from redfish import context, odata, paths
from redfish.odata import Body
from redfish.resources.systems import system_node

bp = Blueprint("memory", __name__)


def collection_uri(node: Node) -> str:
    return f"{paths.system(node)}/Memory"


def dimm_body(node: Node, dimm: Dimm) -> Body:
    return odata.resource(
        "Memory", f"{collection_uri(node)}/{dimm.id}",
        Id=dimm.id,
        Name=f"DIMM {dimm.locator}",
        Location={"PartLocation": {"ServiceLabel": dimm.locator, "LocationType": "Slot"}},
        MemoryType="DRAM",
        MemoryDeviceType="DDR4",
        CapacityMiB=dimm.capacity_mib,
        OperatingSpeedMhz=dimm.speed_mhz,
        Manufacturer=dimm.manufacturer,
        PartNumber=dimm.part_number,
        SerialNumber=dimm.serial,
        Status={"State": "Enabled", "Health": "OK"},
    )


@bp.get(f"{paths.SYSTEMS}/<system_id>/Memory")
def memory(system_id: str) -> Response:
    node = system_node(system_id)
    uri = collection_uri(node)
    return odata.json_response(odata.collection(
        "MemoryCollection", uri, "Memory Collection",
        [f"{uri}/{d.id}" for d in node.inventory.memory]))


@bp.get(f"{paths.SYSTEMS}/<system_id>/Memory/<dimm_id>")
def dimm(system_id: str, dimm_id: str) -> Response:
    node = system_node(system_id)
    return odata.json_response(dimm_body(node, context.find(node.inventory.memory, dimm_id)))
