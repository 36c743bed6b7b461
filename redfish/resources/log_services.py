"""LogServices: the system's event log (`Systems/<id>/LogServices/Log`, power events).

Each log is a `bmc.logs.EventLog`; `LogService.ClearLog` empties it. The manager's SEL
(`Managers/BMC/LogServices/SEL`) is served from the same code once the node has an IPMI SEL.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Blueprint, Response

from bmc.logs import EventLog, LogEntry
from bmc.node import Node
from bmc.sel import SelEntry
from redfish import context, odata, paths
from redfish.event_service import iso
from redfish.odata import Body, link
from redfish.patching import parse_action
from redfish.resources.systems import system_node

log = logging.getLogger(__name__)

bp = Blueprint("log_services", __name__)

CLEAR_ACTION = "#LogService.ClearLog"
SYSTEM_LOG_ID = "Log"
ROUTE = f"{paths.SYSTEMS}/<system_id>/LogServices"


def log_service_body(uri: str, log_id: str, name: str, event_log: EventLog,
                     entry_type: str = "Event") -> Body:
    return odata.resource(
        "LogService", uri,
        Id=log_id,
        Name=name,
        ServiceEnabled=True,
        MaxNumberOfRecords=event_log.capacity,
        OverWritePolicy="WrapsWhenFull",
        DateTime=datetime.now(UTC).isoformat(timespec="seconds"),
        LogEntryType=entry_type,
        Entries=link(f"{uri}/Entries"),
        Status={"State": "Enabled", "Health": "OK"},
        Actions={CLEAR_ACTION: {"target": f"{uri}/Actions/LogService.ClearLog"}},
    )


def entry_body(uri: str, entry: LogEntry, origin: str, entry_type: str = "Event") -> Body:
    return odata.resource(
        "LogEntry", f"{uri}/Entries/{entry.id}",
        Id=str(entry.id),
        Name=f"Log entry {entry.id}",
        EntryType=entry_type,
        Created=iso(entry.created),
        Severity=entry.severity,
        Message=entry.message,
        MessageId=entry.message_id,
        MessageArgs=list(entry.args),
        Links={"OriginOfCondition": link(origin)},
    )


def entries_body(uri: str, event_log: EventLog, origin: str) -> Body:
    body = odata.collection("LogEntryCollection", f"{uri}/Entries", "Log Entry Collection", [])
    members = [entry_body(uri, e, origin) for e in event_log.entries()]
    body["Members"] = members  # entries inline, as BMCs do: a log is read as a whole
    body["Members@odata.count"] = len(members)
    return body


def _system_log(system_id: str, log_id: str) -> tuple[str, EventLog, str]:
    node = system_node(system_id)
    if log_id != SYSTEM_LOG_ID:
        raise context.missing()
    system = paths.system(node)
    return f"{system}/LogServices/{SYSTEM_LOG_ID}", node.system_log, system


@bp.get(ROUTE)
def system_log_services(system_id: str) -> Response:
    node = system_node(system_id)
    uri = f"{paths.system(node)}/LogServices"
    return odata.json_response(odata.collection(
        "LogServiceCollection", uri, "Log Service Collection", [f"{uri}/{SYSTEM_LOG_ID}"]))


@bp.get(f"{ROUTE}/<log_id>")
def system_log_service(system_id: str, log_id: str) -> Response:
    uri, event_log, _ = _system_log(system_id, log_id)
    return odata.json_response(log_service_body(uri, log_id, "System event log", event_log))


@bp.get(f"{ROUTE}/<log_id>/Entries")
def system_log_entries(system_id: str, log_id: str) -> Response:
    uri, event_log, origin = _system_log(system_id, log_id)
    return odata.json_response(entries_body(uri, event_log, origin))


@bp.get(f"{ROUTE}/<log_id>/Entries/<entry_id>")
def system_log_entry(system_id: str, log_id: str, entry_id: str) -> Response:
    uri, event_log, origin = _system_log(system_id, log_id)
    entry = event_log.get(int(entry_id)) if entry_id.isdigit() else None
    if entry is None:
        raise context.missing()
    return odata.json_response(entry_body(uri, entry, origin))


@bp.post(f"{ROUTE}/<log_id>/Actions/LogService.ClearLog")
def clear_system_log(system_id: str, log_id: str) -> Response:
    _, event_log, _ = _system_log(system_id, log_id)
    context.require("ConfigureComponents")
    parse_action(context.action_body(), CLEAR_ACTION, {})
    event_log.clear()
    log.info("%s: system log cleared by %s", context.node().name,
             context.principal().user.name)
    return Response(status=204)


# -- the manager's SEL: the IPMI System Event Log, entry for entry ----------------------------
SEL_ID = "SEL"
MANAGER_ROUTE = f"{paths.MANAGERS}/<manager_id>/LogServices"


def sel_uri() -> str:
    return f"{paths.MANAGER_LOG_SERVICES}/{SEL_ID}"


def sel_entry_body(entry: SelEntry) -> Body:
    body = odata.resource(
        "LogEntry", f"{sel_uri()}/Entries/{entry.record_id}",
        Id=str(entry.record_id),
        Name=f"SEL entry {entry.record_id}",
        EntryType="SEL",
        Created=entry.created,
        Severity=entry.severity,
        Message=entry.message,
        EntryCode=entry.entry_code,
        SensorType=entry.sensor_type_name,
        SensorNumber=entry.sensor_number,
        GeneratorId=f"{entry.generator_id:#06x}",
    )
    return body


def _sel(manager_id: str, log_id: str | None = None) -> Node:
    if manager_id != paths.MANAGER_ID or (log_id is not None and log_id != SEL_ID):
        raise context.missing()
    return context.node()


@bp.get(MANAGER_ROUTE)
def manager_log_services(manager_id: str) -> Response:
    _sel(manager_id)
    return odata.json_response(odata.collection(
        "LogServiceCollection", paths.MANAGER_LOG_SERVICES, "Log Service Collection",
        [sel_uri()]))


@bp.get(f"{MANAGER_ROUTE}/<log_id>")
def sel_service(manager_id: str, log_id: str) -> Response:
    node = _sel(manager_id, log_id)
    sel = node.sel
    return odata.json_response(odata.resource(
        "LogService", sel_uri(),
        Id=SEL_ID,
        Name="IPMI System Event Log",
        ServiceEnabled=True,
        MaxNumberOfRecords=sel.info().capacity,
        OverWritePolicy="WrapsWhenFull",
        DateTime=datetime.fromtimestamp(sel.time(), UTC).isoformat(timespec="seconds"),
        LogEntryType="SEL",
        Entries=link(f"{sel_uri()}/Entries"),
        Status={"State": "Enabled", "Health": "OK"},
        Actions={CLEAR_ACTION: {"target": f"{sel_uri()}/Actions/LogService.ClearLog"}},
    ))


@bp.get(f"{MANAGER_ROUTE}/<log_id>/Entries")
def sel_entries(manager_id: str, log_id: str) -> Response:
    node = _sel(manager_id, log_id)
    body = odata.collection("LogEntryCollection", f"{sel_uri()}/Entries",
                            "Log Entry Collection", [])
    members = [sel_entry_body(e) for e in node.sel.entries()]  # oldest first, as IPMI
    body["Members"] = members
    body["Members@odata.count"] = len(members)
    return odata.json_response(body)


@bp.get(f"{MANAGER_ROUTE}/<log_id>/Entries/<entry_id>")
def sel_entry(manager_id: str, log_id: str, entry_id: str) -> Response:
    node = _sel(manager_id, log_id)
    found = node.sel.get(int(entry_id)) if entry_id.isdigit() else None
    if found is None or str(found[0].record_id) != entry_id:  # IPMI's 0 means "first"
        raise context.missing()
    return odata.json_response(sel_entry_body(found[0]))


@bp.post(f"{MANAGER_ROUTE}/<log_id>/Actions/LogService.ClearLog")
def clear_sel(manager_id: str, log_id: str) -> Response:
    node = _sel(manager_id, log_id)
    context.require("ConfigureManager")
    parse_action(context.action_body(), CLEAR_ACTION, {})
    node.sel.clear()
    log.info("%s: SEL cleared by %s", node.name, context.principal().user.name)
    return Response(status=204)
