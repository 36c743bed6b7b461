"""User commands (IPMI 2.0 section 22.26-22.30) over the node's `UserStore`.

The store is the one Redfish checks too, so a password set here works there at once. User
ID 1 is the reserved null user: always shown with an empty name, disabled, NO ACCESS, and
never changed. A slot without a name cannot be enabled (no anonymous login).
"""

from __future__ import annotations

import hmac

from bmc.users import MAX_USERS, Privilege, User
from ipmi.commands import (
    CC_INVALID_DATA_FIELD,
    CC_NOT_SUPPORTED_IN_STATE,
    CC_REQ_DATA_LEN_INVALID,
    NETFN_APP,
    Context,
    IpmiError,
    command,
)
from ipmi.commands.session import check_channel

NULL_USER_ID = 1
#: user IDs with a fixed name: only the null user
FIXED_NAMES = 1
NAME_BYTES = 16

# Set User Password operations (table 22-30, byte 2 bits 1:0)
OP_DISABLE, OP_ENABLE, OP_SET_PASSWORD, OP_TEST_PASSWORD = 0, 1, 2, 3
# completion codes of Set User Password
CC_PASSWORD_MISMATCH = 0x80
CC_PASSWORD_WRONG_SIZE = 0x81

#: privilege limits Set User Access takes (0 is reserved)
USER_PRIVILEGES = {p.value: p for p in (Privilege.CALLBACK, Privilege.USER, Privilege.OPERATOR,
                                        Privilege.ADMINISTRATOR, Privilege.OEM,
                                        Privilege.NO_ACCESS)}


def _user_id(byte: int, *, changeable: bool = False) -> int:
    """The user ID in bits 5:0 of `byte`: 1..MAX_USERS, or 2.. for a change."""
    user_id = byte & 0x3F
    lowest = NULL_USER_ID + 1 if changeable else NULL_USER_ID
    if not lowest <= user_id <= MAX_USERS:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    return user_id


def _slot(ctx: Context, user_id: int) -> User | None:
    """The user slot, or None for the null user and slots never set."""
    return None if user_id == NULL_USER_ID else ctx.node.users.slot(user_id)


@command(NETFN_APP, 0x44, privilege=Privilege.OPERATOR)
def get_user_access(ctx: Context) -> bytes:
    data = ctx.need(2, 2)
    check_channel(data[0])
    user = _slot(ctx, _user_id(data[1]))
    users = ctx.node.users.all()
    enabled = sum(1 for u in users if u.enabled)
    if user is None:
        status, access = 0x80, Privilege.NO_ACCESS.value  # disabled, no access
    else:
        status = 0x40 if user.enabled else 0x80
        access = (user.privilege.value | (0x40 if user.callback_only else 0)
                  | (0x20 if user.link_auth else 0) | (0x10 if user.ipmi_messaging else 0))
    return bytes((MAX_USERS, status | enabled, FIXED_NAMES, access))


@command(NETFN_APP, 0x43, privilege=Privilege.ADMINISTRATOR)
def set_user_access(ctx: Context) -> bytes:
    data = ctx.need(3, 4)  # byte 4, the user's session limit, is optional (and ignored)
    check_channel(data[0])
    user_id = _user_id(data[1], changeable=True)
    privilege = USER_PRIVILEGES.get(data[2] & 0x0F)
    if privilege is None:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    if data[0] & 0x80:  # "change bits": the three access bits are taken from this request
        ctx.node.users.set_access(user_id, privilege=privilege,
                                  callback_only=bool(data[0] & 0x40),
                                  link_auth=bool(data[0] & 0x20),
                                  ipmi_messaging=bool(data[0] & 0x10))
    else:
        ctx.node.users.set_access(user_id, privilege=privilege)
    return b""


@command(NETFN_APP, 0x46, privilege=Privilege.OPERATOR)
def get_user_name(ctx: Context) -> bytes:
    user = _slot(ctx, _user_id(ctx.need(1, 1)[0]))
    name = user.name.encode() if user is not None else b""
    return name.ljust(NAME_BYTES, b"\x00")[:NAME_BYTES]


@command(NETFN_APP, 0x45, privilege=Privilege.ADMINISTRATOR)
def set_user_name(ctx: Context) -> bytes:
    data = ctx.need(1 + NAME_BYTES, 1 + NAME_BYTES)
    user_id = _user_id(data[0], changeable=True)
    raw = data[1:].rstrip(b"\x00")
    # printable names only: a NUL inside or control characters would not survive a round trip
    if any(b < 0x20 or b == 0x7F for b in raw):
        raise IpmiError(CC_INVALID_DATA_FIELD)
    try:
        ctx.node.users.set_name(user_id, raw.decode())
    except (UnicodeDecodeError, ValueError):  # not UTF-8, or the name is taken
        raise IpmiError(CC_INVALID_DATA_FIELD) from None
    return b""


@command(NETFN_APP, 0x47, privilege=Privilege.ADMINISTRATOR)
def set_user_password(ctx: Context) -> bytes:
    data = ctx.need(2, 22)
    twenty = bool(data[0] & 0x80)
    operation = data[1] & 0x03
    size = 20 if twenty else 16
    if operation in (OP_SET_PASSWORD, OP_TEST_PASSWORD) and len(data) != 2 + size:
        raise IpmiError(CC_REQ_DATA_LEN_INVALID)
    if operation in (OP_DISABLE, OP_ENABLE) and len(data) not in (2, 18, 22):
        raise IpmiError(CC_REQ_DATA_LEN_INVALID)
    user_id = _user_id(data[0])
    if user_id == NULL_USER_ID:
        if operation == OP_DISABLE:
            return b""  # it is disabled and stays so
        raise IpmiError(CC_INVALID_DATA_FIELD)
    users = ctx.node.users
    if operation == OP_TEST_PASSWORD:
        slot = users.slot(user_id)
        stored = slot.password_bytes() if slot is not None else b""
        if len(stored) > size:
            raise IpmiError(CC_PASSWORD_WRONG_SIZE)
        if not hmac.compare_digest(stored.ljust(size, b"\x00"), bytes(data[2:])):
            raise IpmiError(CC_PASSWORD_MISMATCH)
        return b""
    if operation == OP_SET_PASSWORD:
        try:
            users.set_password(user_id, bytes(data[2:]).rstrip(b"\x00").decode())
        except (UnicodeDecodeError, ValueError):
            raise IpmiError(CC_INVALID_DATA_FIELD) from None
        return b""
    slot = users.slot(user_id)
    if operation == OP_ENABLE and (slot is None or not slot.name):
        raise IpmiError(CC_NOT_SUPPORTED_IN_STATE)  # never an enabled user without a name
    users.set_enabled(user_id, operation == OP_ENABLE)
    return b""


@command(NETFN_APP, 0x4D, privilege=Privilege.OPERATOR)
def get_user_payload_access(ctx: Context) -> bytes:
    """Which payloads a user may activate: SOL (payload type 1) for every usable user."""
    data = ctx.need(2, 2)
    check_channel(data[0])
    user = _slot(ctx, _user_id(data[1]))
    sol = 0x02 if user is not None and user.may_use_ipmi else 0x00
    return bytes((sol, 0, 0, 0))
