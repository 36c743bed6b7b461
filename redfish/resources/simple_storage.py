"""`Systems/<id>/SimpleStorage`: the disks as a flat list (what inspection reads)."""

from __future__ import annotations

from flask import Blueprint, Response

from bmc.node import Node
from redfish import context, odata, paths
from redfish.odata import Body
from redfish.resources.systems import system_node

bp = Blueprint("simple_storage", __name__)

CONTROLLER_ID = "Controller0"


def collection_uri(node: Node) -> str:
    return f"{paths.system(node)}/SimpleStorage"


def simple_storage_body(node: Node) -> Body:
    inventory = node.inventory
    return odata.resource(
        "SimpleStorage", f"{collection_uri(node)}/{CONTROLLER_ID}",
        Id=CONTROLLER_ID,
        Name=inventory.controller_model,
        UefiDevicePath="PciRoot(0x0)/Pci(0x17,0x0)",
        Devices=[{
            "Name": drive.id,
            "Manufacturer": drive.manufacturer,
            "Model": drive.model,
            "CapacityBytes": drive.capacity_bytes,
            "Status": {"State": "Enabled", "Health": "OK"},
        } for drive in inventory.drives],
        Status={"State": "Enabled", "Health": "OK"},
    )


@bp.get(f"{paths.SYSTEMS}/<system_id>/SimpleStorage")
def simple_storages(system_id: str) -> Response:
    node = system_node(system_id)
    uri = collection_uri(node)
    return odata.json_response(odata.collection(
        "SimpleStorageCollection", uri, "Simple Storage Collection", [f"{uri}/{CONTROLLER_ID}"]))


@bp.get(f"{paths.SYSTEMS}/<system_id>/SimpleStorage/<storage_id>")
def simple_storage(system_id: str, storage_id: str) -> Response:
    node = system_node(system_id)
    if storage_id != CONTROLLER_ID:
        raise context.missing()
    return odata.json_response(simple_storage_body(node))
