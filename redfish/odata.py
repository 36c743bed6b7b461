"""OData plumbing: schema versions, resource envelopes, JSON responses and ETags.

`SCHEMAS` is the single table of DMTF schemas this service claims; `@odata.type` values and
the `$metadata` document are both built from it, so they always agree.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import Response

from redfish import paths

#: Redfish protocol version the service root reports (>= 1.6.0: $metadata, odata, OpenAPI URIs)
REDFISH_VERSION = "1.17.0"

#: schema namespace -> version it is served at; None for unversioned (collection) schemas
SCHEMAS: dict[str, str | None] = {
    "ServiceRoot": "v1_15_0",
    "ComputerSystemCollection": None,
    "ComputerSystem": "v1_20_0",
    "ManagerCollection": None,
    "Manager": "v1_17_0",
    "ChassisCollection": None,
    "Chassis": "v1_23_0",
    "SessionService": "v1_1_8",
    "SessionCollection": None,
    "Session": "v1_6_0",
    "AccountService": "v1_13_0",
    "ManagerAccountCollection": None,
    "ManagerAccount": "v1_10_0",
}

JSON_TYPE = "application/json; charset=utf-8"

Body = dict[str, Any]


def odata_type(schema: str) -> str:
    version = SCHEMAS[schema]
    return f"#{schema}.{version}.{schema}" if version else f"#{schema}.{schema}"


def link(uri: str) -> Body:
    return {"@odata.id": uri}


def resource(schema: str, uri: str, **fields: Any) -> Body:
    """A resource body with its OData envelope first (key order is what clients see)."""
    return {
        "@odata.context": f"{paths.METADATA}#{schema}.{schema}",
        "@odata.id": uri,
        "@odata.type": odata_type(schema),
        **fields,
    }


def collection(schema: str, uri: str, name: str, members: list[str]) -> Body:
    return resource(schema, uri, Name=name, **{
        "Members@odata.count": len(members),
        "Members": [link(m) for m in members],
    })


def dumps(body: Body) -> bytes:
    # one serialisation for responses and If-Match checks, so their ETags agree
    return json.dumps(body, indent=2, ensure_ascii=False).encode()


def etag_of(data: bytes) -> str:
    """Strong ETag: a hash of the exact body bytes."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def etag_matches(header: str, etag: str) -> bool:
    """Does an If-Match / If-None-Match value name `etag`?

    Lenient on purpose: weak (W/) forms and unquoted tags match too, since clients such as
    sushy retry a weak tag as strong and some tools strip the quotes.
    """
    if header.strip() == "*":
        return True
    wanted = etag.strip('"')
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') == wanted:
            return True
    return False


def json_response(body: Body, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    return Response(dumps(body), status=status, headers=headers, content_type=JSON_TYPE)
