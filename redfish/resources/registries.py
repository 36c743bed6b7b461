"""`/redfish/v1/Registries`: the message registries events and errors use, and the BIOS
attribute registry (served here, built from `bmc.bios.ATTRIBUTES`).
"""

from __future__ import annotations

import re

from flask import Blueprint, Response

from bmc.bios import ATTRIBUTES, AttributeDef
from redfish import context, odata, paths
from redfish.errors import BASE_REGISTRY
from redfish.odata import Body

bp = Blueprint("registries", __name__)

BIOS_REGISTRY = "BiosAttributeRegistry"
BIOS_REGISTRY_VERSION = "1.0.0"
#: registry file Id -> registry (name.version) it describes
MESSAGE_REGISTRIES = {
    "Base": BASE_REGISTRY,
    "ResourceEvent": "ResourceEvent.1.4.3",
    "TaskEvent": "TaskEvent.1.0.5",
}
_DMTF = "http://redfish.dmtf.org/registries"


#: the registry's Id, which the Bios resource names in `AttributeRegistry`
BIOS_REGISTRY_ID = f"{BIOS_REGISTRY}.v{BIOS_REGISTRY_VERSION.replace('.', '_')}"


def bios_registry_uri() -> str:
    return f"{paths.REGISTRIES}/{BIOS_REGISTRY}/{BIOS_REGISTRY_ID}"


@bp.get(paths.REGISTRIES)
def registries() -> Response:
    ids = [*MESSAGE_REGISTRIES, BIOS_REGISTRY]
    return odata.json_response(odata.collection(
        "MessageRegistryFileCollection", paths.REGISTRIES, "Registry File Collection",
        [f"{paths.REGISTRIES}/{i}" for i in ids]))


@bp.get(f"{paths.REGISTRIES}/<file_id>")
def registry_file(file_id: str) -> Response:
    if file_id == BIOS_REGISTRY:
        registry = f"{BIOS_REGISTRY}.{BIOS_REGISTRY_VERSION}"
        location = {"Language": "en", "Uri": bios_registry_uri()}
    elif file_id in MESSAGE_REGISTRIES:
        registry = MESSAGE_REGISTRIES[file_id]
        location = {"Language": "en", "PublicationUri": f"{_DMTF}/{registry}.json"}
    else:
        raise context.missing()
    return odata.json_response(odata.resource(
        "MessageRegistryFile", f"{paths.REGISTRIES}/{file_id}",
        Id=file_id,
        Name=f"{file_id} registry file",
        Languages=["en"],
        Registry=registry,
        Location=[location],
    ))


def _attribute(attr: AttributeDef) -> Body:
    entry: Body = {
        "AttributeName": attr.name,
        "Type": attr.type,
        "DisplayName": attr.display_name,
        "HelpText": attr.help_text or attr.display_name,
        "ReadOnly": attr.read_only,
        "ResetRequired": True,
    }
    if attr.default != "":  # an empty default is no default (the schema wants it left out)
        entry["DefaultValue"] = attr.default
    if attr.values:
        entry["Value"] = [{"ValueName": v, "ValueDisplayName": v} for v in attr.values]
    if attr.lower is not None:
        entry["LowerBound"] = attr.lower
    if attr.upper is not None:
        entry["UpperBound"] = attr.upper
    if attr.max_length is not None:
        entry["MaxLength"] = attr.max_length
    return entry


@bp.get(f"{paths.REGISTRIES}/{BIOS_REGISTRY}/<registry_id>")
def bios_registry(registry_id: str) -> Response:
    if f"{paths.REGISTRIES}/{BIOS_REGISTRY}/{registry_id}" != bios_registry_uri():
        raise context.missing()
    node = context.node()
    return odata.json_response(odata.resource(
        "AttributeRegistry", bios_registry_uri(),
        Id=registry_id,
        Name="BIOS attribute registry",
        Language="en",
        OwningEntity="bmc-emulator",
        RegistryVersion=BIOS_REGISTRY_VERSION,
        SupportedSystems=[{"ProductName": node.identity.product,
                           "SystemId": re.sub(r"[^A-Za-z0-9]", "", node.identity.product)
                           or "System",
                           "FirmwareVersion": node.firmware.bios_version}],
        RegistryEntries={"Attributes": [_attribute(a) for a in ATTRIBUTES]},
    ))
