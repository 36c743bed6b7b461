"""`Systems/<id>/EthernetInterfaces`: the server's NICs (what inspection enrolls as ports)."""

from __future__ import annotations

from flask import Blueprint, Response

from bmc.inventory import Nic
from bmc.node import Node
from redfish import context, odata, paths
from redfish.odata import Body
from redfish.resources.systems import system_node

bp = Blueprint("ethernet_interfaces", __name__)


def collection_uri(node: Node) -> str:
    return f"{paths.system(node)}/EthernetInterfaces"


def nic_body(node: Node, nic: Nic) -> Body:
    return odata.resource(
        "EthernetInterface", f"{collection_uri(node)}/{nic.id}",
        Id=nic.id,
        Name=f"Ethernet interface {nic.id}",
        MACAddress=nic.mac,
        PermanentMACAddress=nic.mac,
        SpeedMbps=nic.speed_mbps,
        LinkStatus="LinkUp" if nic.link_up else "LinkDown",
        InterfaceEnabled=True,
        Status={"State": "Enabled", "Health": "OK"},
    )


@bp.get(f"{paths.SYSTEMS}/<system_id>/EthernetInterfaces")
def nics(system_id: str) -> Response:
    node = system_node(system_id)
    uri = collection_uri(node)
    return odata.json_response(odata.collection(
        "EthernetInterfaceCollection", uri, "Ethernet Interface Collection",
        [f"{uri}/{n.id}" for n in node.inventory.nics]))


@bp.get(f"{paths.SYSTEMS}/<system_id>/EthernetInterfaces/<nic_id>")
def nic(system_id: str, nic_id: str) -> Response:
    node = system_node(system_id)
    return odata.json_response(nic_body(node, context.find(node.inventory.nics, nic_id)))
