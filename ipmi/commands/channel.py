"""Channel and LAN configuration commands (IPMI 2.0 sections 22.22-22.24 and 23.1-23.2).

One channel: LAN channel 1, multi-session, always available. The LAN configuration describes
where the node really listens (its IPMI bind address and port), with a stable, locally
administered MAC address derived from the node: read-only, except parameter 26 (bad password
threshold), which is the node's account lockout policy (bmc/lockout.py).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Hashable

from bmc.users import Privilege
from ipmi.commands import (
    CC_INVALID_DATA_FIELD,
    CC_PARAM_OUT_OF_RANGE,
    CC_REQ_DATA_LEN_INVALID,
    NETFN_APP,
    NETFN_TRANSPORT,
    Context,
    IpmiError,
    command,
)
from ipmi.commands.session import V15_AUTHTYPES, check_channel
from ipmi.crypto import SUPPORTED_SUITES

MEDIUM_802_3_LAN = 0x04
PROTOCOL_IPMB = 0x01  # what BMCs report for their LAN channel (freeipmi: "IPMB-1.0")
SESSION_MULTI = 0x80
IPMI_IANA = b"\xf2\x1b\x00"  # 7154, the IPMI forum: vendor of the channel protocol
ACCESS_ALWAYS_AVAILABLE = 0x02
ALERTING_DISABLED = 0x20  # we send no PEF alerts

# Get/Set LAN Configuration Parameters completion codes (table 23-2, 23-3)
CC_PARAM_NOT_SUPPORTED = 0x80
CC_PARAM_READ_ONLY = 0x82
PARAM_REVISION = 0x11
SECONDARY_RMCP_PORT = 664  # 0x298, the standard secure port; unused, reported for form


@command(NETFN_APP, 0x42)
def get_channel_info(ctx: Context) -> bytes:
    channel = check_channel(ctx.need(1, 1)[0])
    active = min(ctx.endpoint.session_count(active_only=True), 0x3F)
    return bytes((channel, MEDIUM_802_3_LAN, PROTOCOL_IPMB, SESSION_MULTI | active)
                 ) + IPMI_IANA + b"\x00\x00"


@command(NETFN_APP, 0x41)
def get_channel_access(ctx: Context) -> bytes:
    data = ctx.need(2, 2)
    check_channel(data[0])
    if data[1] & 0xC0 not in (0x40, 0x80):  # non-volatile or volatile; 00 and 11 reserved
        raise IpmiError(CC_INVALID_DATA_FIELD)
    # per-message and user-level authentication enabled (bits 4, 3 clear)
    return bytes((ALERTING_DISABLED | ACCESS_ALWAYS_AVAILABLE, Privilege.ADMINISTRATOR))


# -- LAN configuration -------------------------------------------------------------------------
def _address(ctx: Context) -> tuple[bytes, int]:
    """Our IPv4 address (4 bytes) and UDP port, as the client reaches us."""
    local = getattr(ctx.endpoint, "local_address", None) or ("0.0.0.0", 623)
    host, port = local[0], local[1]
    if host == "0.0.0.0":  # bound to every address: the one routed towards this client
        host = _route_source(ctx.peer) or host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = ipaddress.IPv4Address(0)
    if not isinstance(ip, ipaddress.IPv4Address):  # LAN parameters 3-6 are IPv4 only
        ip = ipaddress.IPv4Address(0)
    return ip.packed, port


def _route_source(peer: Hashable) -> str | None:
    """The local address the kernel would send to `peer` from (no packet is sent)."""
    if not isinstance(peer, tuple) or not peer or ":" in str(peer[0]):
        return None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((peer[0], 9))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def _netmask(ip: bytes) -> bytes:
    # the host's real prefix is not known without interface ioctls; loopback is /8, and /24
    # is what a BMC on a flat management network usually has
    if ip == b"\x00\x00\x00\x00":
        return ip
    return b"\xff\x00\x00\x00" if ip[0] == 127 else b"\xff\xff\xff\x00"


def _lan_param(ctx: Context, param: int, selector: int) -> bytes:
    """The data of LAN configuration parameter `param` (table 23-4)."""
    if param == 0:
        return bytes((ctx.endpoint.controller.lan_set_in_progress,))
    if param == 1:  # what the BMC supports
        return bytes((sum(1 << t for t in V15_AUTHTYPES),))
    if param == 2:  # enables for callback, user, operator, admin, OEM: what is configured
        return bytes((sum(1 << t for t in ctx.endpoint.v15_authtypes),)) * 5
    if param in (3, 4, 6, 8, 12):
        ip, port = _address(ctx)
        return {3: ip, 4: b"\x01", 6: _netmask(ip), 8: struct.pack("<H", port),
                12: b"\x00" * 4}[param]  # 4: static address; 12: no default gateway
    fixed = {
        5: bytes.fromhex(ctx.node.bmc_mac.replace(":", "")),
        7: b"\x40\x40\x10",  # IPv4 header: TTL 64, don't fragment, TOS "minimize delay"
        9: struct.pack("<H", SECONDARY_RMCP_PORT),
        10: b"\x02",  # answers ARP requests, no gratuitous ARP
        11: b"\x00",
        13: b"\x00" * 6,
        14: b"\x00" * 4,
        15: b"\x00" * 6,
        16: b"public".ljust(18, b"\x00"),
        17: b"\x00",  # no alert destinations (destination 0 is the volatile one)
        20: b"\x00\x00",  # VLAN off
        21: b"\x00",
        22: bytes((len(SUPPORTED_SUITES),)),
        23: b"\x00" + bytes(s.suite_id for s in SUPPORTED_SUITES),
        24: _suite_privileges(),
        26: _bad_password_threshold(ctx),
    }
    if param in fixed:
        return fixed[param]
    if param in (18, 19, 25):  # per alert destination: only destination 0 exists
        if selector != 0:
            raise IpmiError(CC_PARAM_OUT_OF_RANGE)
        # set selector first; 18: PET trap, no ack; 19: IPv4, default gateway, 0.0.0.0, no MAC;
        # 25: no VLAN tag
        return {18: b"\x00" * 4, 19: b"\x00" * 13, 25: b"\x00" * 4}[param]
    raise IpmiError(CC_PARAM_NOT_SUPPORTED)


def _suite_privileges() -> bytes:
    """Parameter 24: the highest privilege per cipher suite ID 0..15, a nibble each.

    Indexed by suite ID, as ipmitool and freeipmi read it ("X" = unused); suite 17 has no
    nibble here, its entry in parameter 23 is all there is.
    """
    nibbles = [0] * 16
    for suite in SUPPORTED_SUITES:
        if suite.suite_id < 16:
            nibbles[suite.suite_id] = Privilege.ADMINISTRATOR.value
    return b"\x00" + bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, 16, 2))


def _bad_password_threshold(ctx: Context) -> bytes:
    """LAN parameter 26: the node's lockout (shared with Redfish), in tens of seconds: no
    session audit event, the threshold, the counter reset interval, the lockout interval."""
    lockout = ctx.node.lockout
    return struct.pack("<BBHH", 0, min(lockout.threshold, 255),
                       min(int(lockout.reset_after // 10), 0xFFFF),
                       min(int(lockout.duration // 10), 0xFFFF))


def _set_bad_password_threshold(ctx: Context, value: bytes) -> None:
    """LAN parameter 26 written (`ipmitool lan set 1 bad_pass_thresh`): same layout as read."""
    if len(value) != 6:
        raise IpmiError(CC_REQ_DATA_LEN_INVALID)
    audit, threshold, reset_after, duration = struct.unpack("<BBHH", value)
    if audit & 0x01:  # this BMC has no session audit sensor to generate events from
        raise IpmiError(CC_INVALID_DATA_FIELD)
    ctx.node.lockout.set_policy(threshold=threshold, duration=duration * 10,
                                reset_after=reset_after * 10)


@command(NETFN_TRANSPORT, 0x02, privilege=Privilege.OPERATOR)
def get_lan_config(ctx: Context) -> bytes:
    data = ctx.need(4, 4)
    check_channel(data[0])
    if data[0] & 0x80:  # "get parameter revision only"
        return bytes((PARAM_REVISION,))
    return bytes((PARAM_REVISION,)) + _lan_param(ctx, data[1] & 0x7F, data[2])


@command(NETFN_TRANSPORT, 0x01, privilege=Privilege.ADMINISTRATOR)
def set_lan_config(ctx: Context) -> bytes:
    data = ctx.need(3)
    check_channel(data[0])
    param = data[1] & 0x7F
    if param == 0:
        # set-in-progress: ipmitool writes it around every `lan set`; a commit ends the set
        state = data[2] & 0x03
        if state == 0x03:
            raise IpmiError(CC_INVALID_DATA_FIELD)
        ctx.endpoint.controller.lan_set_in_progress = 0 if state == 0x02 else state
        return b""
    if param == 26:  # bad password threshold: the node's lockout policy, shared with Redfish
        _set_bad_password_threshold(ctx, data[2:])
        return b""
    try:
        _lan_param(ctx, param, 0)
    except IpmiError as exc:
        if exc.code == CC_PARAM_NOT_SUPPORTED:
            raise
    # the network settings are where the node listens: not changeable over IPMI
    raise IpmiError(CC_PARAM_READ_ONLY)
