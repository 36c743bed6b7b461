"""OData plumbing: schema versions, resource envelopes, JSON responses and ETags.

`SCHEMAS` is the single table of DMTF schemas this service claims; `@odata.type` values and
the `$metadata` document are both built from it, so they always agree.
"""

from __future__ import annotations

import hashlib
import json
import operator
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
    "RoleCollection": None,
    "Role": "v1_3_1",
    "Bios": "v1_2_0",
    "AttributeRegistry": "v1_3_6",
    "SecureBoot": "v1_1_0",
    "SecureBootDatabaseCollection": None,
    "SecureBootDatabase": "v1_0_3",
    "VirtualMediaCollection": None,
    "VirtualMedia": "v1_6_0",
    "ProcessorCollection": None,
    "Processor": "v1_18_0",
    "MemoryCollection": None,
    "Memory": "v1_17_0",
    "EthernetInterfaceCollection": None,
    "EthernetInterface": "v1_10_0",
    "SimpleStorageCollection": None,
    "SimpleStorage": "v1_3_1",
    "StorageCollection": None,
    "Storage": "v1_15_0",
    "StorageControllerCollection": None,
    "StorageController": "v1_7_0",
    "DriveCollection": None,
    "Drive": "v1_17_0",
    "VolumeCollection": None,
    "Volume": "v1_9_0",
    "LogServiceCollection": None,
    "LogService": "v1_6_0",
    "LogEntryCollection": None,
    "LogEntry": "v1_16_0",
    "EventService": "v1_10_0",
    "EventDestinationCollection": None,
    "EventDestination": "v1_13_0",
    "TaskService": "v1_2_0",
    "TaskCollection": None,
    "Task": "v1_7_0",
    "UpdateService": "v1_11_0",
    "SoftwareInventoryCollection": None,
    "SoftwareInventory": "v1_10_0",
    "JsonSchemaFileCollection": None,
    "JsonSchemaFile": "v1_1_4",
    "MessageRegistryFileCollection": None,
    "MessageRegistryFile": "v1_1_3",
    "Thermal": "v1_7_1",
    "Power": "v1_7_1",
    "ThermalSubsystem": "v1_3_0",
    "FanCollection": None,
    "Fan": "v1_5_0",
    "ThermalMetrics": "v1_0_1",
    "PowerSubsystem": "v1_1_0",
    "PowerSupplyCollection": None,
    "PowerSupply": "v1_5_0",
    "SensorCollection": None,
    "Sensor": "v1_9_0",
}

#: schemas whose types appear inside resources (annotations, payloads) without being served
EMBEDDED_SCHEMAS: dict[str, str] = {
    "Settings": "v1_3_5",
    "Event": "v1_7_0",
}

JSON_TYPE = "application/json; charset=utf-8"

Body = dict[str, Any]


def odata_type(schema: str) -> str:
    version = SCHEMAS[schema]
    return f"#{schema}.{version}.{schema}" if version else f"#{schema}.{schema}"


#: where the DMTF publishes the JSON schemas (what `Link: rel=describedby` points at)
DMTF_JSON_SCHEMAS = "http://redfish.dmtf.org/schemas/v1"


def schema_uri(odata_type: object) -> str | None:
    """The JSON schema of an `@odata.type` ("#Bios.v1_2_0.Bios" -> .../Bios.v1_2_0.json)."""
    if not isinstance(odata_type, str) or not odata_type.startswith("#"):
        return None
    parts = odata_type[1:].split(".")
    name = ".".join(parts[:2]) if len(parts) == 3 else parts[0]
    return f"{DMTF_JSON_SCHEMAS}/{name}.json"


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


def with_etag(body: Body, etag: str) -> Body:
    """`body` with `@odata.etag` after its other @odata properties."""
    envelope = {k: v for k, v in body.items() if k.startswith("@odata.") and k != "@odata.etag"}
    rest = {k: v for k, v in body.items() if k not in envelope and k != "@odata.etag"}
    return {**envelope, "@odata.etag": etag, **rest}


def dumps(body: Body) -> bytes:
    # one serialisation for responses and If-Match checks, so their ETags agree; compact,
    # because `indent` makes json fall back from its C encoder (~0.15 ms a response)
    return json.dumps(body, ensure_ascii=False).encode()


def etag_of(data: bytes) -> str:
    """Strong ETag: a hash of the exact body bytes."""
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def etag_for(body: Body) -> str:
    """The ETag of a resource: what its GET answers in the header (If-Match compares it)."""
    return etag_of(dumps(body))


_IS_ODATA = operator.methodcaller("startswith", "@odata.")


def dumps_with_etag(body: Body) -> tuple[str, bytes]:
    """(`etag_for(body)`, `dumps(with_etag(body, etag))`), serializing `body` only once.

    A resource built by `resource()` starts with its @odata properties, so `@odata.etag` can
    be spliced into its JSON right after them; other key orders take the long way.
    """
    data = dumps(body)
    etag = etag_of(data)
    keys = list(body)
    n = 0
    while n < len(keys) and keys[n].startswith("@odata.") and keys[n] != "@odata.etag":
        n += 1
    if 0 < n < len(keys) and not any(map(_IS_ODATA, keys[n:])):
        envelope = dumps({k: body[k] for k in keys[:n]})[:-1]  # without its closing brace
        cut = len(envelope)  # where `, "<first other key>": ...` starts
        if data[:cut] == envelope:
            return etag, b'%s, "@odata.etag": %s%s' % (envelope, json.dumps(etag).encode(),
                                                       data[cut:])
    return etag, dumps(with_etag(body, etag))


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


class JsonResponse(Response):
    """A JSON answer that keeps its body as a dict until it is sent.

    The app's after-request hook (`redfish.app`) adds the ETag, applies $select/$expand and
    serializes it there, once; `$expand` reads `body` directly. Anything that reads the
    response before that gets it serialized as it is.
    """

    def __init__(self, body: Body, status: int = 200,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status=status, headers=headers, content_type=JSON_TYPE)
        self.body: Body | None = body  # None once serialized

    def finish(self, data: bytes | None = None) -> None:
        """Serialize: `data` if given (the hook's final bytes), else the body as it is."""
        if self.body is not None:
            self.set_data(dumps(self.body) if data is None else data)
            self.body = None

    def get_data(self, as_text: bool = False) -> Any:
        self.finish()
        return super().get_data(as_text)

    def get_wsgi_response(self, environ: Any) -> Any:
        self.finish()
        return super().get_wsgi_response(environ)


def json_response(body: Body, status: int = 200, headers: dict[str, str] | None = None
                  ) -> JsonResponse:
    return JsonResponse(body, status, headers)
