"""AccountService: the BMC's users (shared with IPMI) as ManagerAccounts, roles, lockout.

Every change goes through the node's `UserStore`, so an account created or changed here logs
in over IPMI at once (and the other way round). Roles map onto IPMI privileges
(Administrator, Operator, ReadOnly = USER). Passwords are write-only: never shown, never
logged. Failed Redfish logins count toward the node's account lockout.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response

from bmc.users import MAX_PASSWORD_BYTES, Privilege, User
from redfish import auth, context, odata, paths
from redfish.errors import RedfishError, error, forbidden
from redfish.odata import Body, link
from redfish.patching import Prop, Shape, check_if_match, parse_action, parse_patch, with_ignored

log = logging.getLogger(__name__)

bp = Blueprint("accounts", __name__)

#: Redfish passwords must be at least this long; at most MAX_PASSWORD_BYTES (IPMI 2.0's 20)
MIN_PASSWORD_LENGTH = 8
MAX_USER_NAME_BYTES = 16  # IPMI user names are at most 16 bytes
ROLES = ("Administrator", "Operator", "ReadOnly")


def _check_password(value: Any) -> str | None:
    if not MIN_PASSWORD_LENGTH <= len(value.encode()) <= MAX_PASSWORD_BYTES:
        return "length"
    return None


def _check_user_name(value: Any) -> str | None:
    if not value or len(value.encode()) > MAX_USER_NAME_BYTES or ":" in value \
            or not value.isprintable() or value != value.strip():
        return "format"
    return None


ACCOUNT_SHAPE: Shape = {
    "UserName": Prop(str, check=_check_user_name),
    "Password": Prop(str),  # length checked apart: it has its own message
    "RoleId": Prop(str, ROLES),
    "Enabled": Prop(bool),
    "Locked": Prop(bool),
}
CREATE_PARAMS: dict[str, Prop] = {
    "UserName": Prop(str, check=_check_user_name, required=True),
    "Password": Prop(str, required=True),
    "RoleId": Prop(str, ROLES, required=True),
    "Enabled": Prop(bool),
    "AccountTypes": Prop(list, item=Prop(str, ("Redfish", "IPMI", "SNMP", "OEM",
                                                 "HostConsole", "ManagerConsole",
                                                 "WebUI"))),
}
SERVICE_SHAPE: Shape = {
    "AccountLockoutThreshold": Prop(int, minimum=0, maximum=1000),
    "AccountLockoutDuration": Prop(int, minimum=0, maximum=86400),
    "AccountLockoutCounterResetAfter": Prop(int, minimum=0, maximum=86400),
}


def account_body(user: User) -> Body:
    role = user.privilege.redfish_role
    return odata.resource(
        "ManagerAccount", paths.account(user.user_id),
        Id=str(user.user_id),
        Name="User Account",
        Description="BMC user account (Redfish and IPMI)",
        UserName=user.name,
        RoleId=role,
        Enabled=user.enabled,
        Locked=context.node().lockout.is_locked(user.name),
        Password=None,  # the schema requires null on read
        AccountTypes=["Redfish", "IPMI"],
        Links={"Role": link(f"{paths.ROLES}/{role}")},
    )


def service_body() -> Body:
    lockout = context.node().lockout
    return odata.resource(
        "AccountService", paths.ACCOUNT_SERVICE,
        Id="AccountService",
        Name="Account Service",
        Description="BMC user accounts (shared with IPMI)",
        ServiceEnabled=True,
        LocalAccountAuth="Enabled",
        MinPasswordLength=MIN_PASSWORD_LENGTH,
        MaxPasswordLength=MAX_PASSWORD_BYTES,
        AccountLockoutThreshold=lockout.threshold,
        AccountLockoutDuration=int(lockout.duration),
        AccountLockoutCounterResetAfter=int(lockout.reset_after),
        AuthFailureLoggingThreshold=1,
        Status={"State": "Enabled", "Health": "OK"},
        Accounts=link(paths.ACCOUNTS),
        Roles=link(paths.ROLES),
    )


@bp.get(paths.ACCOUNT_SERVICE)
def account_service() -> Response:
    return odata.json_response(service_body())


@bp.patch(paths.ACCOUNT_SERVICE)
def patch_account_service() -> Response:
    context.require("ConfigureUsers")
    lockout = context.node().lockout
    body = context.json_body()
    with context.state().write_lock:
        current = service_body()
        check_if_match(current)
        patch = parse_patch(body, SERVICE_SHAPE, current)
        changes = patch.changes
        duration = changes.get("AccountLockoutDuration", lockout.duration)
        reset_after = changes.get("AccountLockoutCounterResetAfter", lockout.reset_after)
        if duration and reset_after and duration < reset_after:
            # DSP0266: the lock must last at least as long as failures are remembered
            raise error(400, "PropertyValueConflict", "AccountLockoutDuration",
                        "AccountLockoutCounterResetAfter", related="#/AccountLockoutDuration")
        lockout.set_policy(threshold=changes.get("AccountLockoutThreshold"),
                           duration=duration, reset_after=reset_after)
    return odata.json_response(with_ignored(service_body(), patch))


def _visible_users() -> list[User]:
    caller = context.principal()
    users = context.node().users.all()
    # ConfigureUsers sees every account; others only their own (DSP0266 privilege model)
    if caller.has("ConfigureUsers"):
        return users
    return [u for u in users if u.user_id == caller.user.user_id]


def _user(account_id: str) -> User:
    for user in _visible_users():
        if str(user.user_id) == account_id:
            return user
    raise context.missing()


@bp.get(paths.ACCOUNTS)
def accounts() -> Response:
    return odata.json_response(odata.collection(
        "ManagerAccountCollection", paths.ACCOUNTS, "Accounts Collection",
        [paths.account(u.user_id) for u in _visible_users()]))


@bp.get(f"{paths.ACCOUNTS}/<account_id>")
def account(account_id: str) -> Response:
    return odata.json_response(account_body(_user(account_id)))


def _password_length_error() -> RedfishError:
    return error(400, "PasswordIncorrectLength", related="#/Password",
                 text=f"The password provided for this account does not meet the password "
                      f"length requirements of the service: {MIN_PASSWORD_LENGTH} to "
                      f"{MAX_PASSWORD_BYTES} bytes.")


@bp.post(paths.ACCOUNTS)
def create_account() -> Response:
    context.require("ConfigureUsers")
    users = context.node().users
    params = parse_action(context.json_body(), "ManagerAccount", CREATE_PARAMS)
    if _check_password(params["Password"]):
        raise _password_length_error()
    name = params["UserName"]
    if users.by_name(name) is not None:
        raise error(409, "ResourceAlreadyExists", "ManagerAccount", "UserName", name,
                    related="#/UserName")
    try:
        user = users.add(name, params["Password"], Privilege.from_redfish_role(params["RoleId"]),
                         enabled=params.get("Enabled", True))
    except ValueError:  # the only other refusal left: every IPMI user slot is taken
        raise error(400, "CreateLimitReachedForResource") from None
    log.info("%s: account %s (%s) created by %s", context.node().name, name, params["RoleId"],
             context.principal().user.name)
    uri = paths.account(user.user_id)
    return odata.json_response(account_body(user), 201, {"Location": uri})


def _administrators_left(without: User, users: list[User]) -> bool:
    return any(u.user_id != without.user_id and u.enabled
               and u.privilege is Privilege.ADMINISTRATOR for u in users)


@bp.patch(f"{paths.ACCOUNTS}/<account_id>")
def patch_account(account_id: str) -> Response:
    user = _user(account_id)
    caller = context.principal()
    node = context.node()
    body = context.json_body()
    with context.state().write_lock:
        current = account_body(user)
        check_if_match(current)
        patch = parse_patch(body, ACCOUNT_SHAPE, current)
        changes = patch.changes
        own_password_only = set(changes) == {"Password"} and user.user_id == caller.user.user_id
        if not (caller.has("ConfigureUsers") or (own_password_only
                                                 and caller.has("ConfigureSelf"))):
            raise forbidden()
        _check_account_changes(user, changes)
        _apply_account_changes(user, changes)
    log.info("%s: account %s changed (%s) by %s", node.name, user.user_id,
             ", ".join(sorted(changes)), caller.user.name)
    updated = node.users.by_id(user.user_id)
    assert updated is not None
    return odata.json_response(with_ignored(account_body(updated), patch))


def _check_account_changes(user: User, changes: dict[str, Any]) -> None:
    users = context.node().users
    if "Password" in changes and _check_password(changes["Password"]):
        raise _password_length_error()
    name = changes.get("UserName")
    if name is not None and name != user.name and users.by_name(name) is not None:
        raise error(409, "ResourceAlreadyExists", "ManagerAccount", "UserName", name,
                    related="#/UserName")
    if changes.get("Locked") is True:
        raise error(400, "PropertyValueNotInList", "true", "Locked", related="#/Locked",
                    text="An account can only be unlocked (Locked: false); the service locks "
                         "accounts itself after failed logins.")
    demoted = changes.get("RoleId", "Administrator") != "Administrator" \
        or changes.get("Enabled") is False
    if demoted and user.privilege is Privilege.ADMINISTRATOR \
            and not _administrators_left(user, users.all()):
        raise error(400, "ResourceInUse", related="#/RoleId",
                    text="The last enabled Administrator account cannot be demoted or "
                         "disabled.")


def _apply_account_changes(user: User, changes: dict[str, Any]) -> None:
    node = context.node()
    users, lockout = node.users, node.lockout
    if "Password" in changes:
        users.set_password(user.user_id, changes["Password"])
    if "RoleId" in changes:
        users.set_access(user.user_id, privilege=Privilege.from_redfish_role(changes["RoleId"]))
    if "Enabled" in changes:
        users.set_enabled(user.user_id, changes["Enabled"])
    if changes.get("Locked") is False:
        lockout.unlock(user.name)
    if "UserName" in changes and changes["UserName"] != user.name:
        lockout.forget(user.name)
        users.set_name(user.user_id, changes["UserName"])


@bp.delete(f"{paths.ACCOUNTS}/<account_id>")
def delete_account(account_id: str) -> Response:
    context.require("ConfigureUsers")
    user = _user(account_id)
    node = context.node()
    if user.privilege is Privilege.ADMINISTRATOR and user.enabled \
            and not _administrators_left(user, node.users.all()):
        raise error(400, "ResourceCannotBeDeleted",
                    text="The last enabled Administrator account cannot be deleted.")
    node.users.remove(user.user_id)
    node.lockout.forget(user.name)
    log.info("%s: account %s (%s) deleted by %s", node.name, user.user_id, user.name,
             context.principal().user.name)
    return Response(status=204)


# -- roles --------------------------------------------------------------------------------------
@bp.get(paths.ROLES)
def roles() -> Response:
    return odata.json_response(odata.collection(
        "RoleCollection", paths.ROLES, "Roles Collection",
        [f"{paths.ROLES}/{role}" for role in ROLES]))


@bp.get(f"{paths.ROLES}/<role_id>")
def role(role_id: str) -> Response:
    if role_id not in ROLES:
        raise context.missing()
    return odata.json_response(odata.resource(
        "Role", f"{paths.ROLES}/{role_id}",
        Id=role_id,
        Name=f"{role_id} role",
        Description=f"Redfish predefined role {role_id}",
        RoleId=role_id,
        IsPredefined=True,
        AssignedPrivileges=sorted(auth.ROLE_PRIVILEGES[role_id]),
        OemPrivileges=[],
    ))
