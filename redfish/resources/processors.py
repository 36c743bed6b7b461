"""`Systems/<id>/Processors`: the CPUs of the node's hardware profile (`bmc.inventory`)."""

from __future__ import annotations

from flask import Blueprint, Response

from bmc.inventory import Processor
from bmc.node import Node
from redfish import context, odata, paths
from redfish.odata import Body
from redfish.resources.systems import system_node

bp = Blueprint("processors", __name__)


def collection_uri(node: Node) -> str:
    return f"{paths.system(node)}/Processors"


def processor_body(node: Node, cpu: Processor) -> Body:
    return odata.resource(
        "Processor", f"{collection_uri(node)}/{cpu.id}",
        Id=cpu.id,
        Name=f"Processor {cpu.socket}",
        Socket=cpu.socket,
        ProcessorType="CPU",
        ProcessorArchitecture=cpu.architecture,
        InstructionSet=cpu.instruction_set,
        Manufacturer=cpu.manufacturer,
        Model=cpu.model,
        MaxSpeedMHz=cpu.max_speed_mhz,
        TotalCores=cpu.cores,
        TotalEnabledCores=cpu.cores,
        TotalThreads=cpu.threads,
        Status={"State": "Enabled", "Health": "OK"},
    )


@bp.get(f"{paths.SYSTEMS}/<system_id>/Processors")
def processors(system_id: str) -> Response:
    node = system_node(system_id)
    uri = collection_uri(node)
    return odata.json_response(odata.collection(
        "ProcessorCollection", uri, "Processors Collection",
        [f"{uri}/{cpu.id}" for cpu in node.inventory.processors]))


@bp.get(f"{paths.SYSTEMS}/<system_id>/Processors/<cpu_id>")
def processor(system_id: str, cpu_id: str) -> Response:
    node = system_node(system_id)
    return odata.json_response(processor_body(node, context.find(node.inventory.processors,
                                                                 cpu_id)))
