"""`/redfish/v1/JsonSchemas`: one JsonSchemaFile per schema the service uses.

The schemas themselves are the DMTF's published ones; each file resource points at its
publication URI (the service has no copy to serve), the same URI `Link: rel=describedby`
headers name.
"""

from __future__ import annotations

from flask import Blueprint, Response

from redfish import context, odata, paths

bp = Blueprint("json_schemas", __name__)


def schema_ids() -> list[str]:
    """"ComputerSystem.v1_20_0" for versioned schemas, "ComputerSystemCollection" otherwise."""
    schemas = {**odata.SCHEMAS, **odata.EMBEDDED_SCHEMAS}
    return [f"{name}.{version}" if version else name for name, version in schemas.items()]


@bp.get(paths.JSON_SCHEMAS)
def json_schemas() -> Response:
    return odata.json_response(odata.collection(
        "JsonSchemaFileCollection", paths.JSON_SCHEMAS, "JSON Schema File Collection",
        [f"{paths.JSON_SCHEMAS}/{schema_id}" for schema_id in schema_ids()]))


@bp.get(f"{paths.JSON_SCHEMAS}/<schema_id>")
def json_schema(schema_id: str) -> Response:
    if schema_id not in schema_ids():
        raise context.missing()
    name = schema_id.split(".", 1)[0]
    odata_type = f"#{schema_id}.{name}"
    return odata.json_response(odata.resource(
        "JsonSchemaFile", f"{paths.JSON_SCHEMAS}/{schema_id}",
        Id=schema_id,
        Name=f"{name} schema file",
        Description=f"{name} schema file location",
        Schema=odata_type,
        Languages=["en"],
        Location=[{"Language": "en", "PublicationUri": odata.schema_uri(odata_type)}],
    ))
