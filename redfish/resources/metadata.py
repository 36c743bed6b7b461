"""The OData documents: `/redfish/v1/odata` (service document) and `/redfish/v1/$metadata`.

Both are public (no credentials) and built from `odata.SCHEMAS`, the table `@odata.type`
values come from, so the CSDL references exactly the schema versions the service serves.
"""

from __future__ import annotations

from functools import cache

from flask import Blueprint, Response

from redfish import odata, paths

bp = Blueprint("metadata", __name__)

_DMTF = "http://redfish.dmtf.org/schemas/v1"

#: what the service document lists: the root and the top-level singletons and collections
_SERVICE_DOCUMENT = [
    ("Service", paths.SERVICE_ROOT),
    ("Systems", paths.SYSTEMS),
    ("Managers", paths.MANAGERS),
    ("Chassis", paths.CHASSIS),
    ("SessionService", paths.SESSION_SERVICE),
    ("Sessions", paths.SESSIONS),
    ("AccountService", paths.ACCOUNT_SERVICE),
    ("EventService", paths.EVENT_SERVICE),
    ("Tasks", paths.TASK_SERVICE),
    ("UpdateService", paths.UPDATE_SERVICE),
    ("JsonSchemas", paths.JSON_SCHEMAS),
    ("Registries", paths.REGISTRIES),
]


@bp.get(paths.ODATA)
def service_document() -> Response:
    return odata.json_response({
        "@odata.context": paths.METADATA,
        "value": [{"name": name, "kind": "Singleton", "url": url}
                  for name, url in _SERVICE_DOCUMENT],
    })


@cache
def csdl() -> bytes:
    """The $metadata document (constant for the process, so built once)."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">']
    # schemas every Redfish service leans on for annotations and shared types
    references: list[tuple[str, list[str], str | None]] = [
        ("RedfishExtensions", ["RedfishExtensions.v1_0_0"], "Redfish"),
        ("Resource", ["Resource", "Resource.v1_0_0"], None),
        ("Message", ["Message", "Message.v1_1_2"], None),
    ]
    for schema, version in {**odata.SCHEMAS, **odata.EMBEDDED_SCHEMAS}.items():
        namespaces = [schema] + ([f"{schema}.{version}"] if version else [])
        references.append((schema, namespaces, None))
    for schema, namespaces, alias in references:
        lines.append(f'  <edmx:Reference Uri="{_DMTF}/{schema}_v1.xml">')
        for namespace in namespaces:
            alias_attr = f' Alias="{alias}"' if alias else ""
            lines.append(f'    <edmx:Include Namespace="{namespace}"{alias_attr}/>')
        lines.append("  </edmx:Reference>")
    root_version = odata.SCHEMAS["ServiceRoot"]
    lines += [
        "  <edmx:DataServices>",
        '    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">',
        f'      <EntityContainer Name="Service" '
        f'Extends="ServiceRoot.{root_version}.ServiceContainer"/>',
        "    </Schema>",
        "  </edmx:DataServices>",
        "</edmx:Edmx>",
        "",
    ]
    return "\n".join(lines).encode()


@bp.get(paths.METADATA)
def metadata() -> Response:
    return Response(csdl(), content_type="application/xml; charset=utf-8")
