"""`Systems/<id>/Bios` (settings in effect) and `Bios/Settings` (pending until the next boot).

Clients (sushy's `bios.set_attributes`) PATCH the settings object named in
`@Redfish.Settings`; the node's BIOS model applies the pending attributes when the server next
boots, whichever protocol boots it. The Bios resource itself is read-only (PATCH is 405).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response

from bmc.bios import ATTRIBUTES, PASSWORD_NAMES, BiosError
from bmc.node import Node
from redfish import context, odata, paths
from redfish.errors import Message, RedfishError, error
from redfish.event_service import iso
from redfish.odata import Body, link
from redfish.patching import Prop, check_if_match, parse_action, show
from redfish.resources.registries import BIOS_REGISTRY_ID
from redfish.resources.systems import system_node

log = logging.getLogger(__name__)

bp = Blueprint("bios", __name__)

RESET_ACTION = "#Bios.ResetBios"
PASSWORD_ACTION = "#Bios.ChangePassword"
APPLY_TIMES = ("OnReset",)
SETTINGS_TYPE = f"#Settings.{odata.EMBEDDED_SCHEMAS['Settings']}"

_PROBLEM_MESSAGES = {"unknown": "PropertyUnknown", "read-only": "PropertyNotWritable",
                     "type": "PropertyValueTypeError", "not-in-list": "PropertyValueNotInList",
                     "range": "PropertyValueOutOfRange", "length": "PropertyValueOutOfRange"}


def bios_uri(node: Node) -> str:
    return f"{paths.system(node)}/Bios"


def settings_body(node: Node) -> Body:
    uri = bios_uri(node)
    return odata.resource(
        "Bios", f"{uri}/Settings",
        Id="Settings",
        Name="BIOS pending settings",
        Description="BIOS settings applied at the next boot",
        AttributeRegistry=BIOS_REGISTRY_ID,
        Attributes=node.bios.pending,
        **{"@Redfish.SettingsApplyTime": {
            "@odata.type": f"{SETTINGS_TYPE}.PreferredApplyTime",
            "ApplyTime": APPLY_TIMES[0],
            "ApplyTime@Redfish.AllowableValues": list(APPLY_TIMES),
        }},
    )


def bios_body(node: Node) -> Body:
    uri = bios_uri(node)
    settings: Body = {
        "@odata.type": f"{SETTINGS_TYPE}.Settings",
        "SettingsObject": link(f"{uri}/Settings"),
        # the ETag a client must send to PATCH the settings object (sushy sends this one)
        "ETag": odata.etag_for(settings_body(node)),
        "SupportedApplyTimes": list(APPLY_TIMES),
    }
    applied = node.bios.last_apply
    if applied is not None:
        settings["Time"] = iso(applied.time)
        settings["Messages"] = [Message("Success").to_json()]
    pending = node.bios.pending
    return odata.resource(
        "Bios", uri,
        Id="Bios",
        Name="BIOS Configuration Current Settings",
        Description=f"BIOS settings of {node.name}",
        AttributeRegistry=BIOS_REGISTRY_ID,
        Attributes=node.bios.attributes,
        ResetBiosToDefaultsPending=bool(pending) and _resets(node, pending),
        Actions={
            RESET_ACTION: {"target": f"{uri}/Actions/Bios.ResetBios"},
            PASSWORD_ACTION: {
                "target": f"{uri}/Actions/Bios.ChangePassword",
                "PasswordName@Redfish.AllowableValues": list(PASSWORD_NAMES),
            },
        },
        **{"@Redfish.Settings": settings},
    )


def _resets(node: Node, pending: dict[str, Any]) -> bool:
    """Is what is pending exactly a reset to defaults? (ResetBiosToDefaultsPending)"""
    defaults = {a.name: a.default for a in ATTRIBUTES if not a.read_only}
    current = node.bios.attributes
    return pending == {k: v for k, v in defaults.items() if current[k] != v}


@bp.get(f"{paths.SYSTEMS}/<system_id>/Bios")
def get_bios(system_id: str) -> Response:
    return odata.json_response(bios_body(system_node(system_id)))


@bp.get(f"{paths.SYSTEMS}/<system_id>/Bios/Settings")
def get_settings(system_id: str) -> Response:
    return odata.json_response(settings_body(system_node(system_id)))


@bp.patch(f"{paths.SYSTEMS}/<system_id>/Bios/Settings")
def patch_settings(system_id: str) -> Response:
    node = system_node(system_id)
    context.require("ConfigureComponents")
    body = context.json_body()
    with context.state().write_lock:
        current = settings_body(node)
        check_if_match(current)
        attributes = _parse_settings(body)
        try:
            node.bios.set_pending(attributes)
        except BiosError as exc:
            raise RedfishError(400, [
                Message(_PROBLEM_MESSAGES[p.kind],
                        (f"Attributes/{p.name}",) if p.kind in ("unknown", "read-only")
                        else (show(p.value), f"Attributes/{p.name}"),
                        (f"#/Attributes/{p.name}",))
                for p in exc.problems]) from None
    log.info("%s: BIOS settings %s pending (by %s)", node.name, sorted(attributes),
             context.principal().user.name)
    return odata.json_response(settings_body(node))


def _parse_settings(body: dict[str, Any]) -> dict[str, Any]:
    if not body:
        raise error(400, "EmptyJSON")
    problems: list[Message] = []
    attributes: dict[str, Any] = {}
    for name, value in body.items():
        if name == "Attributes":
            if isinstance(value, dict):
                attributes = value
            else:
                problems.append(Message("PropertyValueTypeError", (show(value), name),
                                        ("#/Attributes",)))
        elif name == "@Redfish.SettingsApplyTime":
            apply_time = value.get("ApplyTime") if isinstance(value, dict) else None
            if apply_time is not None and apply_time not in APPLY_TIMES:
                problems.append(Message("PropertyValueNotInList",
                                        (show(apply_time), f"{name}/ApplyTime"),
                                        (f"#/{name}/ApplyTime",)))
        elif "@" in name:
            continue
        elif name in ("Id", "Name", "Description", "AttributeRegistry"):
            problems.append(Message("PropertyNotWritable", (name,), (f"#/{name}",)))
        else:
            problems.append(Message("PropertyUnknown", (name,), (f"#/{name}",)))
    if problems:
        raise RedfishError(400, problems)
    if not attributes:
        raise error(400, "NoOperation")
    return attributes


@bp.post(f"{paths.SYSTEMS}/<system_id>/Bios/Actions/Bios.ResetBios")
def reset_bios(system_id: str) -> Response:
    node = system_node(system_id)
    context.require("ConfigureComponents")
    parse_action(context.action_body(), RESET_ACTION, {})
    node.bios.reset_to_defaults()
    log.info("%s: BIOS reset to defaults at the next boot (by %s)", node.name,
             context.principal().user.name)
    return Response(status=204)


@bp.post(f"{paths.SYSTEMS}/<system_id>/Bios/Actions/Bios.ChangePassword")
def change_password(system_id: str) -> Response:
    node = system_node(system_id)
    context.require("ConfigureComponents")
    params = parse_action(context.action_body(), PASSWORD_ACTION, {
        "PasswordName": Prop(str, PASSWORD_NAMES, required=True),
        "OldPassword": Prop(str, required=True),
        "NewPassword": Prop(str, required=True),
    })
    try:
        node.bios.change_password(params["PasswordName"], params["OldPassword"],
                                  params["NewPassword"])
    except ValueError:
        # which of the two was wrong is not said, and no password is ever echoed or logged
        raise error(400, "ActionParameterValueError", "OldPassword", PASSWORD_ACTION) from None
    log.info("%s: BIOS %s changed by %s", node.name, params["PasswordName"],
             context.principal().user.name)
    return Response(status=204)
