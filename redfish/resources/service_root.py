"""`/redfish` (version document) and `/redfish/v1` (ServiceRoot). Both need no credentials."""

from __future__ import annotations

from flask import Blueprint, Response

from redfish import context, odata, paths
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
        # none of the query parameters are implemented; saying so keeps clients from trying
        ProtocolFeaturesSupported={
            "ExpandQuery": {"ExpandAll": False, "Levels": False, "Links": False,
                            "NoLinks": False},
            "FilterQuery": False,
            "SelectQuery": False,
            "OnlyMemberQuery": False,
            "ExcerptQuery": False,
        },
        Systems=link(paths.SYSTEMS),
        Managers=link(paths.MANAGERS),
        Chassis=link(paths.CHASSIS),
        SessionService=link(paths.SESSION_SERVICE),
        AccountService=link(paths.ACCOUNT_SERVICE),
        Links={"Sessions": link(paths.SESSIONS)},  # sushy finds the login URI here
    ))
