"""Payload and SOL commands: Activate/Deactivate Payload and friends (IPMI 2.0 section 24),
Get/Set SOL Configuration Parameters (section 26). The SOL engine is `ipmi.sol`."""

from __future__ import annotations

import struct

from bmc.console import SolSettings
from bmc.users import Privilege
from ipmi import wire
from ipmi.commands import (
    CC_INSUFFICIENT_PRIVILEGE,
    CC_INVALID_DATA_FIELD,
    CC_NOT_SUPPORTED_IN_STATE,
    CC_REQ_DATA_LEN_INVALID,
    NETFN_APP,
    NETFN_TRANSPORT,
    Context,
    IpmiError,
    command,
)
from ipmi.commands.session import check_channel
from ipmi.sol import PAYLOAD_SIZE, SolService

PAYLOAD_SOL = wire.PAYLOAD_SOL
INSTANCE = SolService.INSTANCE
RMCP_PORT = 623

# Activate / Deactivate Payload completion codes (tables 24-2, 24-3)
CC_ALREADY_ACTIVE = 0x80  # activate: on another session; deactivate: already inactive
CC_PAYLOAD_DISABLED = 0x81
CC_NO_ENCRYPTION_SUPPORTED = 0x83
# Get/Set SOL Configuration Parameters (tables 26-3, 26-4)
CC_PARAM_NOT_SUPPORTED = 0x80
CC_SET_IN_PROGRESS = 0x81
CC_PARAM_READ_ONLY = 0x82
PARAM_REVISION = 0x11
BIT_RATES = frozenset({0x00, 0x06, 0x07, 0x08, 0x09, 0x0A})  # serial (default), 9.6..115.2


def _sol(ctx: Context) -> SolService:
    return ctx.endpoint.sol  # type: ignore[no-any-return]


def _payload_request(ctx: Context) -> int:
    """The instance of a SOL payload request (type byte, instance byte, ...)."""
    data = ctx.need(2)
    if data[0] & 0x3F != PAYLOAD_SOL:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    return data[1] & 0x0F


def _check_sol_privilege(ctx: Context) -> None:
    if ctx.session is None or ctx.session.privilege < _sol(ctx).settings.privilege:
        raise IpmiError(CC_INSUFFICIENT_PRIVILEGE)


@command(NETFN_APP, 0x48)
def activate_payload(ctx: Context) -> bytes:
    data = ctx.need(6)
    instance = _payload_request(ctx)
    sol = _sol(ctx)
    session = ctx.session
    if instance != INSTANCE:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    if session is None or session.keys is None:  # IPMI 1.5 sessions carry no payloads
        raise IpmiError(CC_NOT_SUPPORTED_IN_STATE)
    if not sol.settings.enabled or not sol.hub.available:
        raise IpmiError(CC_PAYLOAD_DISABLED)
    _check_sol_privilege(ctx)
    # our cipher suites always encrypt and authenticate, so an unencrypted SOL is impossible;
    # a console that asks for one when the BMC does not force encryption is told so
    if not data[2] & 0x80 and not sol.settings.force_encryption:
        raise IpmiError(CC_NO_ENCRYPTION_SUPPORTED)
    if sol.active_payload() is not None:
        raise IpmiError(CC_ALREADY_ACTIVE)
    sol.activate(session, ctx.endpoint.clock())
    port = _port(ctx)
    # auxiliary data (none for SOL), inbound and outbound payload size, UDP port, no VLAN
    return b"\x00" * 4 + struct.pack("<HHHH", PAYLOAD_SIZE, PAYLOAD_SIZE, port, 0xFFFF)


def _port(ctx: Context) -> int:
    """The port SOL runs on, as the client sees it: the configured `ipmi.sol_port` (behind a
    relay or NAT), else where we listen."""
    if ctx.endpoint.sol_port:
        return int(ctx.endpoint.sol_port)
    address = getattr(ctx.endpoint, "local_address", None)
    return address[1] if address else RMCP_PORT


@command(NETFN_APP, 0x49)
def deactivate_payload(ctx: Context) -> bytes:
    ctx.need(6)
    instance = _payload_request(ctx)
    sol = _sol(ctx)
    if instance != INSTANCE:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    if not sol.settings.enabled:
        raise IpmiError(CC_PAYLOAD_DISABLED)
    _check_sol_privilege(ctx)
    if sol.active_payload() is None:
        raise IpmiError(CC_ALREADY_ACTIVE)
    sol.deactivate(ctx.session, ctx.endpoint.clock())
    return b""


@command(NETFN_APP, 0x4A)
def get_payload_activation_status(ctx: Context) -> bytes:
    if ctx.need(1)[0] & 0x3F != PAYLOAD_SOL:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    active = _sol(ctx).active_payload() is not None
    return bytes((INSTANCE, 0x01 if active else 0x00, 0x00))  # capacity 1; instances 1..16


@command(NETFN_APP, 0x4B)
def get_payload_instance_info(ctx: Context) -> bytes:
    instance = _payload_request(ctx)
    if instance != INSTANCE:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    payload = _sol(ctx).active_payload()
    session_id = payload.session.bmc_id if payload is not None else 0
    # then 8 bytes of payload-specific data; for SOL the first is the serial port number
    return struct.pack("<I", session_id) + bytes((1 if payload else 0,)) + b"\x00" * 7


@command(NETFN_APP, 0x4E)
def get_channel_payload_support(ctx: Context) -> bytes:
    check_channel(ctx.need(1)[0])
    # standard payloads: IPMI (0) and SOL (1); session setup payloads 0x10..0x15; no OEM
    return bytes((0x03, 0x00, 0x3F, 0x00, 0x00, 0x00, 0x00, 0x00))


@command(NETFN_APP, 0x4F)
def get_channel_payload_version(ctx: Context) -> bytes:
    data = ctx.need(2)
    check_channel(data[0])
    if data[1] & 0x3F not in (wire.PAYLOAD_IPMI, PAYLOAD_SOL):
        raise IpmiError(0x80)  # payload type not available on this channel
    return b"\x10"  # format version 1.0


# -- SOL configuration parameters ---------------------------------------------------------------
def _get_param(settings: SolSettings, param: int, port: int, in_progress: int) -> bytes:
    match param:
        case 0:
            return bytes((in_progress,))
        case 1:
            return bytes((int(settings.enabled),))
        case 2:
            return bytes(((0x80 if settings.force_encryption else 0)
                          | (0x40 if settings.force_authentication else 0)
                          | settings.privilege,))
        case 3:
            return bytes((settings.accumulate_interval, settings.send_threshold))
        case 4:
            return bytes((settings.retry_count, settings.retry_interval))
        case 5:
            return bytes((settings.non_volatile_bit_rate,))
        case 6:
            return bytes((settings.volatile_bit_rate,))
        case 7:
            return bytes((1,))  # SOL runs on LAN channel 1
        case 8:
            return struct.pack("<H", port)
    raise IpmiError(CC_PARAM_NOT_SUPPORTED)


@command(NETFN_TRANSPORT, 0x22)
def get_sol_config(ctx: Context) -> bytes:
    data = ctx.need(4)
    check_channel(data[0])
    param = data[1] & 0x7F
    sol = _sol(ctx)
    value = _get_param(sol.settings, param, _port(ctx), ctx.endpoint.sol_set_in_progress)
    if param == 1 and not sol.hub.available:
        value = b"\x00"  # the server has no serial port (memory backend): SOL cannot work
    return bytes((PARAM_REVISION,)) if data[0] & 0x80 else bytes((PARAM_REVISION,)) + value


@command(NETFN_TRANSPORT, 0x21, privilege=Privilege.ADMINISTRATOR)
def set_sol_config(ctx: Context) -> bytes:
    data = ctx.need(3)
    check_channel(data[0])
    param, value = data[1] & 0x7F, data[2:]
    settings = _sol(ctx).settings
    if param == 0:
        state = value[0] & 0x03
        if state == 0x03:
            raise IpmiError(CC_INVALID_DATA_FIELD)
        if state == 0x01 and ctx.endpoint.sol_set_in_progress == 0x01:
            raise IpmiError(CC_SET_IN_PROGRESS)
        if state != 0x02:  # commit write: our changes take effect at once, nothing to do
            ctx.endpoint.sol_set_in_progress = state
        return b""
    if param in (7, 8):
        raise IpmiError(CC_PARAM_READ_ONLY)  # one channel; the port is where we listen
    if param not in range(1, 7):
        raise IpmiError(CC_PARAM_NOT_SUPPORTED)
    _set_param(settings, param, value)
    if param != 6:  # the volatile bit rate is not kept (bmc.console.SolSettings.saved)
        _sol(ctx).hub.save_sol()
    if param == 1 and not settings.enabled:
        _sol(ctx).deactivate(None, ctx.endpoint.clock())  # SOL turned off under a session
    return b""


def _set_param(settings: SolSettings, param: int, value: bytes) -> None:
    size = 2 if param in (3, 4) else 1
    if len(value) != size:
        raise IpmiError(CC_REQ_DATA_LEN_INVALID)
    match param:
        case 1:
            settings.enabled = bool(value[0] & 0x01)
        case 2:
            try:
                privilege = Privilege(value[0] & 0x0F)
            except ValueError:
                raise IpmiError(CC_INVALID_DATA_FIELD) from None
            if not Privilege.USER <= privilege <= Privilege.OEM:
                raise IpmiError(CC_INVALID_DATA_FIELD)
            settings.force_encryption = bool(value[0] & 0x80)
            settings.force_authentication = bool(value[0] & 0x40)
            settings.privilege = privilege
        case 3:
            if value[0] == 0:  # the accumulate interval is 1..255 (5 ms units)
                raise IpmiError(CC_INVALID_DATA_FIELD)
            settings.accumulate_interval, settings.send_threshold = value[0], value[1]
        case 4:
            settings.retry_count, settings.retry_interval = value[0] & 0x07, value[1]
        case 5 | 6:
            rate = value[0] & 0x0F
            if rate not in BIT_RATES:
                raise IpmiError(CC_INVALID_DATA_FIELD)
            if param == 5:
                settings.non_volatile_bit_rate = rate
            else:
                settings.volatile_bit_rate = rate
