"""Management controller commands: BMC resets, watchdog timer, global enables (IPMI 2.0 20, 22, 27).

A Cold or Warm Reset restarts the IPMI side of the BMC, not the server: the reply goes out,
then every session is dropped (`BmcEndpoint.request_reset`); the node keeps its power state.
"""

from __future__ import annotations

import struct

from bmc.users import Privilege
from ipmi.commands import (
    CC_INVALID_DATA_FIELD,
    NETFN_APP,
    Context,
    IpmiError,
    command,
)

#: Reset Watchdog Timer before any Set Watchdog Timer (table 27-2)
CC_WATCHDOG_UNINITIALIZED = 0x80
#: Set BMC Global Enables bits we accept: receive message queue interrupt, event message
#: buffer full interrupt, event message buffer, system event logging (bit 4 is reserved)
GLOBAL_ENABLE_BITS = 0xEF


@command(NETFN_APP, 0x02, privilege=Privilege.ADMINISTRATOR)
def cold_reset(ctx: Context) -> bytes:
    ctx.need(0, 0)
    ctx.endpoint.request_reset(cold=True)
    return b""


@command(NETFN_APP, 0x03, privilege=Privilege.ADMINISTRATOR)
def warm_reset(ctx: Context) -> bytes:
    ctx.need(0, 0)
    ctx.endpoint.request_reset(cold=False)
    return b""


@command(NETFN_APP, 0x24, privilege=Privilege.OPERATOR)
def set_watchdog_timer(ctx: Context) -> bytes:
    data = ctx.need(6, 6)
    use, actions, pretimeout, clear_flags = data[0], data[1], data[2], data[3]
    initial = struct.unpack_from("<H", data, 4)[0]
    # timer use 0 and interrupt types above 3 are reserved; timeout actions above 3 too
    if use & 0x07 == 0 or use & 0x07 > 5 or actions & 0x07 > 3 or (actions >> 4) & 0x07 > 3:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    watchdog = ctx.endpoint.controller.watchdog
    watchdog.poll(ctx.node)
    watchdog.set(use, actions, pretimeout, clear_flags, initial)
    return b""


@command(NETFN_APP, 0x25)
def get_watchdog_timer(ctx: Context) -> bytes:
    ctx.need(0, 0)
    watchdog = ctx.endpoint.controller.watchdog
    watchdog.poll(ctx.node)
    use = watchdog.use | (0x40 if watchdog.running else 0)
    return bytes((use, watchdog.actions, watchdog.pretimeout, watchdog.expired_flags)) + \
        struct.pack("<HH", watchdog.initial, watchdog.present())


@command(NETFN_APP, 0x22, privilege=Privilege.OPERATOR)
def reset_watchdog_timer(ctx: Context) -> bytes:
    ctx.need(0, 0)
    watchdog = ctx.endpoint.controller.watchdog
    watchdog.poll(ctx.node)
    if not watchdog.configured:
        raise IpmiError(CC_WATCHDOG_UNINITIALIZED)
    watchdog.reset()
    return b""


@command(NETFN_APP, 0x2F)
def get_bmc_global_enables(ctx: Context) -> bytes:
    ctx.need(0, 0)
    return bytes((ctx.endpoint.controller.global_enables,))


@command(NETFN_APP, 0x2E, privilege=Privilege.ADMINISTRATOR)
def set_bmc_global_enables(ctx: Context) -> bytes:
    value = ctx.need(1, 1)[0]
    if value & ~GLOBAL_ENABLE_BITS:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    ctx.endpoint.controller.global_enables = value
    return b""
