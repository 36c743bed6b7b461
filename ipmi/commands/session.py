"""Session and channel-security commands (IPMI 2.0 section 22.13-22.20, 22.15 cipher suites)."""

from __future__ import annotations

import struct

from bmc.users import Privilege
from ipmi import wire
from ipmi.commands import (
    CC_INVALID_DATA_FIELD,
    NETFN_APP,
    Context,
    IpmiError,
    command,
)
from ipmi.crypto import SUPPORTED_SUITES
from ipmi.session import Stage

LAN_CHANNEL = 1
#: the channel number a request may use to mean "the channel this request came in on"
CURRENT_CHANNEL = 0x0E
#: IPMI 1.5 authentication types we accept; NONE is refused (no unauthenticated sessions)
V15_AUTHTYPES = (wire.AUTHTYPE_MD5, wire.AUTHTYPE_PASSWORD)

# completion codes specific to Get Session Challenge / Activate Session / Set Privilege
CC_INVALID_USER = 0x81
CC_NULL_USER_DISABLED = 0x82
CC_NO_SESSION_SLOT = 0x81
CC_INVALID_SESSION_ID = 0x85
CC_PRIVILEGE_EXCEEDS_LIMIT = 0x86
CC_LEVEL_NOT_AVAILABLE = 0x81
CC_LEVEL_EXCEEDS_LIMIT = 0x82


def check_channel(channel: int) -> int:
    channel &= 0x0F
    if channel not in (LAN_CHANNEL, CURRENT_CHANNEL):
        raise IpmiError(CC_INVALID_DATA_FIELD)
    return LAN_CHANNEL


@command(NETFN_APP, 0x38, sessionless=True)
def get_channel_auth_capabilities(ctx: Context) -> bytes:
    data = ctx.need(2)
    channel = check_channel(data[0])
    v20 = bool(data[0] & 0x80)
    auth_types = sum(1 << t for t in ctx.endpoint.v15_authtypes) | (0x80 if v20 else 0)
    # 0x04: non-null user names only (no null user, no anonymous login); per-message and
    # user-level authentication both enabled; Kg is the default (all zero)
    login_status = 0x04
    extended = 0x03 if v20 else 0x00  # IPMI 1.5 and 2.0 connections supported
    return bytes((channel, auth_types, login_status, extended, 0, 0, 0, 0))


@command(NETFN_APP, 0x54, sessionless=True)
def get_channel_cipher_suites(ctx: Context) -> bytes:
    data = ctx.need(3)
    channel = check_channel(data[0])
    index = data[2] & 0x3F
    if data[2] & 0x80:  # list by cipher suite: the full records
        records = b"".join(suite.record() for suite in SUPPORTED_SUITES)
    else:  # list algorithms: each supported algorithm number once
        records = bytes(sorted({s.auth for s in SUPPORTED_SUITES}
                               | {0x40 | s.integrity for s in SUPPORTED_SUITES}
                               | {0x80 | s.confidentiality for s in SUPPORTED_SUITES}))
    return bytes((channel,)) + records[index * 16:index * 16 + 16]


@command(NETFN_APP, 0x39, sessionless=True)
def get_session_challenge(ctx: Context) -> bytes:
    data = ctx.need(17)
    authtype = data[0] & 0x0F
    if authtype not in ctx.endpoint.v15_authtypes:  # straight password: only if configured
        raise IpmiError(CC_INVALID_DATA_FIELD)
    name = data[1:17].rstrip(b"\x00").decode("latin-1")
    if not name:
        raise IpmiError(CC_NULL_USER_DISABLED)
    user = ctx.node.users.by_name(name)
    if user is None or not user.may_use_ipmi:
        raise IpmiError(CC_INVALID_USER)
    # the slot is taken by Activate Session (which answers "no session slot"); challenges
    # are half-open sessions, bounded by evicting the oldest (BmcEndpoint.admit_half_open)
    session = ctx.endpoint.new_v15_session(authtype, name, ctx.peer)
    return struct.pack("<I", session.bmc_id) + session.challenge


@command(NETFN_APP, 0x3A, sessionless=True)
def activate_session(ctx: Context) -> bytes:
    session = ctx.session
    if session is None or session.stage is not Stage.CHALLENGED or session.user is None:
        raise IpmiError(CC_INVALID_SESSION_ID)
    data = ctx.need(22)
    authtype, requested = data[0] & 0x0F, data[1] & 0x0F
    if authtype != session.v15_authtype or data[2:18] != session.challenge:
        raise IpmiError(CC_INVALID_SESSION_ID)
    try:
        privilege = Privilege(requested)
    except ValueError:
        raise IpmiError(CC_INVALID_DATA_FIELD) from None
    if privilege > session.user.privilege:
        raise IpmiError(CC_PRIVILEGE_EXCEEDS_LIMIT)
    if ctx.endpoint.session_count(active_only=True) >= ctx.endpoint.session_limit:
        ctx.endpoint.close_session(session.bmc_id)
        raise IpmiError(CC_NO_SESSION_SLOT)
    session.stage = Stage.ACTIVE
    session.credentials_epoch = session.user.credentials_epoch
    session.max_privilege = privilege
    session.privilege = min(Privilege.USER, privilege)
    # Our replies are numbered from 1: freeipmi checks them against a window starting at 0
    # and ignores the "initial outbound sequence number" it sent; ipmitool checks nothing.
    # The console's requests start from the number we hand out below.
    session.inbound_seq = 0
    session.outbound_seq = 0
    first_inbound = struct.unpack("<I", ctx.endpoint.random(4))[0] & 0x0FFFFFFF or 1
    return struct.pack("<BIIB", authtype, session.bmc_id, first_inbound, privilege)


@command(NETFN_APP, 0x3B, privilege=Privilege.CALLBACK)
def set_session_privilege(ctx: Context) -> bytes:
    session = ctx.session
    if session is None:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    requested = ctx.need(1)[0] & 0x0F
    if requested == 0:  # "no change": report the present level
        return bytes((session.privilege,))
    try:
        level = Privilege(requested)
    except ValueError:
        raise IpmiError(CC_INVALID_DATA_FIELD) from None
    if level > Privilege.OEM:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    if session.user is None or level > session.user.privilege:
        raise IpmiError(CC_LEVEL_NOT_AVAILABLE)
    if level > session.max_privilege:
        raise IpmiError(CC_LEVEL_EXCEEDS_LIMIT)
    session.privilege = level
    return bytes((level,))


@command(NETFN_APP, 0x3C, privilege=Privilege.CALLBACK)
def close_session(ctx: Context) -> bytes:
    session_id = struct.unpack("<I", ctx.need(4)[:4])[0]
    own = ctx.session.bmc_id if ctx.session else None
    if session_id == 0 and own is not None:
        session_id = own
    # closing another session needs ADMINISTRATOR
    if session_id != own and (ctx.session is None
                              or ctx.session.privilege < Privilege.ADMINISTRATOR):
        raise IpmiError(CC_INVALID_SESSION_ID)
    if not ctx.endpoint.close_session(session_id):
        raise IpmiError(CC_INVALID_SESSION_ID)
    return b""
