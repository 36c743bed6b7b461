"""`Managers/BMC/VirtualMedia`: a virtual CD and USB stick, with InsertMedia/EjectMedia.

Both the actions and PATCH work (clients use either: sushy takes the actions when present,
`{"Image": null, "Inserted": false}` is the PATCH way to eject). Images are recorded, never
fetched; a bad URL is a 400 that says what is wrong with it.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response

from bmc.node import Node
from bmc.virtual_media import TRANSFER_METHODS, ImageUrlError, MediaSlot, redact
from redfish import context, odata, paths
from redfish.errors import error
from redfish.odata import Body
from redfish.patching import Prop, Shape, check_if_match, parse_action, parse_patch, with_ignored

log = logging.getLogger(__name__)

bp = Blueprint("virtual_media", __name__)

INSERT_ACTION = "#VirtualMedia.InsertMedia"
EJECT_ACTION = "#VirtualMedia.EjectMedia"
#: Redfish TransferProtocolType values; those we can record a URL for are in bmc.virtual_media
TRANSFER_PROTOCOLS = ("CIFS", "FTP", "SFTP", "HTTP", "HTTPS", "NFS", "SCP", "TFTP", "OEM")

INSERT_PARAMS: dict[str, Prop] = {
    "Image": Prop(str, required=True),
    "Inserted": Prop(bool),
    "WriteProtected": Prop(bool),
    "TransferMethod": Prop(str, TRANSFER_METHODS),
    "TransferProtocolType": Prop(str, TRANSFER_PROTOCOLS),
    "UserName": Prop(str, max_length=256),
    "Password": Prop(str, max_length=256),
}
SHAPE: Shape = {**{name: Prop(p.type, p.values, nullable=True, max_length=p.max_length)
                   for name, p in INSERT_PARAMS.items()}}


def slot_uri(slot: MediaSlot) -> str:
    return f"{paths.VIRTUAL_MEDIA}/{slot.id}"


def media_body(slot: MediaSlot) -> Body:
    uri = slot_uri(slot)
    return odata.resource(
        "VirtualMedia", uri,
        Id=slot.id,
        Name=slot.name,
        MediaTypes=list(slot.media_types),
        # an image URL's user:password is write-only, like Password: shown to nobody
        Image=redact(slot.image) if slot.image else slot.image,
        ImageName=slot.image_name,
        Inserted=slot.inserted,
        WriteProtected=slot.write_protected,
        ConnectedVia="URI" if slot.image else "NotConnected",
        TransferMethod=slot.transfer_method,
        TransferProtocolType=slot.transfer_protocol,
        UserName=slot.user_name,
        Password=None,  # write-only: the schema requires null on read
        Status={"State": "Enabled", "Health": "OK"},
        Actions={
            INSERT_ACTION: {
                "target": f"{uri}/Actions/VirtualMedia.InsertMedia",
                "TransferMethod@Redfish.AllowableValues": list(TRANSFER_METHODS),
                "TransferProtocolType@Redfish.AllowableValues": ["HTTP", "HTTPS", "NFS",
                                                                 "CIFS"],
            },
            EJECT_ACTION: {"target": f"{uri}/Actions/VirtualMedia.EjectMedia"},
        },
    )


def _manager_node(manager_id: str) -> Node:
    if manager_id != paths.MANAGER_ID:
        raise context.missing()
    return context.node()


def _slot(manager_id: str, slot_id: str) -> tuple[Node, MediaSlot]:
    node = _manager_node(manager_id)
    slot = node.virtual_media.get(slot_id)
    if slot is None:
        raise context.missing()
    return node, slot


@bp.get(f"{paths.MANAGERS}/<manager_id>/VirtualMedia")
def collection(manager_id: str) -> Response:
    node = _manager_node(manager_id)
    return odata.json_response(odata.collection(
        "VirtualMediaCollection", paths.VIRTUAL_MEDIA, "Virtual Media Collection",
        [slot_uri(s) for s in node.virtual_media.slots()]))


@bp.get(f"{paths.MANAGERS}/<manager_id>/VirtualMedia/<slot_id>")
def get_media(manager_id: str, slot_id: str) -> Response:
    return odata.json_response(media_body(_slot(manager_id, slot_id)[1]))


def _insert(node: Node, slot: MediaSlot, params: dict[str, Any], where: str) -> MediaSlot:
    try:
        return node.virtual_media.insert(
            slot.id, params["Image"], inserted=params.get("Inserted", True),
            write_protected=params.get("WriteProtected", True),
            transfer_method=params.get("TransferMethod"),
            transfer_protocol=params.get("TransferProtocolType"),
            user_name=params.get("UserName"), password=params.get("Password"))
    except ImageUrlError as exc:
        if where == "action":
            raise error(400, "ActionParameterValueFormatError", params["Image"], "Image",
                        INSERT_ACTION, related="#/Image",
                        text=f"The value '{params['Image']}' for the parameter Image in the "
                             f"action {INSERT_ACTION} is not a format that the parameter can "
                             f"accept: {exc}.") from None
        raise error(400, "PropertyValueFormatError", params["Image"], "Image",
                    related="#/Image",
                    text=f"The value '{params['Image']}' for the property Image is not a "
                         f"format that the property can accept: {exc}.") from None


@bp.post(f"{paths.MANAGERS}/<manager_id>/VirtualMedia/<slot_id>/Actions/"
         "VirtualMedia.InsertMedia")
def insert_media(manager_id: str, slot_id: str) -> Response:
    node, slot = _slot(manager_id, slot_id)
    context.require("ConfigureManager")
    params = parse_action(context.action_body(), INSERT_ACTION, INSERT_PARAMS)
    quirks = node.virtual_media
    if quirks.require_transfer_protocol and "TransferProtocolType" not in params:
        raise error(400, "ActionParameterMissing", INSERT_ACTION, "TransferProtocolType",
                    related="#/TransferProtocolType")
    if quirks.require_transfer_method and "TransferMethod" not in params:
        raise error(400, "GeneralError", text="The parameter TransferMethod is required.")
    slot = _insert(node, slot, params, "action")
    log.info("%s: %s inserted into %s by %s", node.name, redact(slot.image or ""), slot.id,
             context.principal().user.name)
    return Response(status=204)


@bp.post(f"{paths.MANAGERS}/<manager_id>/VirtualMedia/<slot_id>/Actions/"
         "VirtualMedia.EjectMedia")
def eject_media(manager_id: str, slot_id: str) -> Response:
    node, slot = _slot(manager_id, slot_id)
    context.require("ConfigureManager")
    parse_action(context.action_body(), EJECT_ACTION, {})
    node.virtual_media.eject(slot.id)
    log.info("%s: %s ejected by %s", node.name, slot.id, context.principal().user.name)
    return Response(status=204)


@bp.patch(f"{paths.MANAGERS}/<manager_id>/VirtualMedia/<slot_id>")
def patch_media(manager_id: str, slot_id: str) -> Response:
    node, slot = _slot(manager_id, slot_id)
    context.require("ConfigureManager")
    body = context.json_body()
    with context.state().write_lock:
        current = media_body(slot)
        check_if_match(current)
        patch = parse_patch(body, SHAPE, current)
        changes = patch.changes
        if "Image" in changes and changes["Image"] is None:
            slot = node.virtual_media.eject(slot.id)  # {"Image": null, "Inserted": false}
        elif "Image" in changes:
            params = {k: v for k, v in changes.items() if v is not None}
            slot = _insert(node, slot, params, "patch")
        else:
            slot = node.virtual_media.set_flags(slot.id, inserted=changes.get("Inserted"),
                                                write_protected=changes.get("WriteProtected"))
    log.info("%s: virtual media %s patched by %s", node.name, slot.id,
             context.principal().user.name)
    return odata.json_response(with_ignored(media_body(slot), patch))
