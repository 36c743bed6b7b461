"""`/redfish` (version document) and `/redfish/v1` (ServiceRoot). Both need no credentials."""

from __future__ import annotations

from flask import Blueprint, Response

from redfish import context, odata, paths, query
from redfish.odata import link
from redfish.resources.managers import service_uuid

bp = Blueprint("service_root", __name__)


@bp.get("/redfish")
def versions() -> Response:
    return odata.json_response({"v1": paths.SERVICE_ROOT})


@bp.get(paths.ROOT)
def service_root() -> Response:
    node = context.node()
    return odata.json_response(odata.resource(
        "ServiceRoot", paths.SERVICE_ROOT,
        Id="RootService",
        Name="Root Service",
        RedfishVersion=odata.REDFISH_VERSION,
        UUID=service_uuid(node),
        Product="bmc-emulator",
        Vendor="bmc-emulator",
        # what redfish.query implements, and nothing more (clients rely on this)
        ProtocolFeaturesSupported={
            "ExpandQuery": {"ExpandAll": True, "Levels": True, "MaxLevels": query.MAX_LEVELS,
                            "Links": True, "NoLinks": True},
            "FilterQuery": False,
            "SelectQuery": True,
            "OnlyMemberQuery": False,
            "ExcerptQuery": False,
            "DeepOperations": {"DeepPOST": False, "DeepPATCH": False},
        },
        Systems=link(paths.SYSTEMS),
        Managers=link(paths.MANAGERS),
        Chassis=link(paths.CHASSIS),
        SessionService=link(paths.SESSION_SERVICE),
        AccountService=link(paths.ACCOUNT_SERVICE),
        EventService=link(paths.EVENT_SERVICE),
        Tasks=link(paths.TASK_SERVICE),  # the schema's name for the TaskService link
        UpdateService=link(paths.UPDATE_SERVICE),
        JsonSchemas=link(paths.JSON_SCHEMAS),
        Registries=link(paths.REGISTRIES),
        Links={"Sessions": link(paths.SESSIONS)},  # sushy finds the login URI here
    ))
