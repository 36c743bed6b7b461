"""AccountService, read-only: the BMC's users (shared with IPMI) as ManagerAccounts.

Passwords are never shown. Changing accounts goes through IPMI or the config for now.
"""

from __future__ import annotations

from flask import Blueprint, Response

from bmc.users import MAX_PASSWORD_BYTES, User
from redfish import context, odata, paths
from redfish.odata import Body, link

bp = Blueprint("accounts", __name__)


def account_body(user: User) -> Body:
    return odata.resource(
        "ManagerAccount", paths.account(user.user_id),
        Id=str(user.user_id),
        Name="User Account",
        UserName=user.name,
        RoleId=user.privilege.redfish_role,
        Enabled=user.enabled,
        Locked=False,
        Password=None,  # the schema requires null on read
        AccountTypes=["Redfish", "IPMI"],
    )


@bp.get(paths.ACCOUNT_SERVICE)
def account_service() -> Response:
    return odata.json_response(odata.resource(
        "AccountService", paths.ACCOUNT_SERVICE,
        Id="AccountService",
        Name="Account Service",
        Description="BMC user accounts (shared with IPMI)",
        ServiceEnabled=True,
        MaxPasswordLength=MAX_PASSWORD_BYTES,
        Status={"State": "Enabled", "Health": "OK"},
        Accounts=link(paths.ACCOUNTS),
    ))


def _visible_users() -> list[User]:
    caller = context.principal()
    users = context.node().users.all()
    # ConfigureUsers sees every account; others only their own (DSP0266 privilege model)
    if caller.has("ConfigureUsers"):
        return users
    return [u for u in users if u.user_id == caller.user.user_id]


@bp.get(paths.ACCOUNTS)
def accounts() -> Response:
    return odata.json_response(odata.collection(
        "ManagerAccountCollection", paths.ACCOUNTS, "Accounts Collection",
        [paths.account(u.user_id) for u in _visible_users()]))


@bp.get(f"{paths.ACCOUNTS}/<account_id>")
def account(account_id: str) -> Response:
    for user in _visible_users():
        if str(user.user_id) == account_id:
            return odata.json_response(account_body(user))
    raise context.missing()
