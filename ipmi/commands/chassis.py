"""Chassis commands: power, status, boot options (IPMI 2.0 section 28)."""

from __future__ import annotations

from backends.base import BootDevice, BootMode, PowerState
from bmc.node import (
    DEFAULT_IDENTIFY_SECONDS,
    IdentifyState,
    PowerAction,
    PowerRestorePolicy,
    RestartCause,
)
from bmc.power import BackendUnavailable, NodeBusy
from bmc.users import Privilege
from ipmi.commands import (
    CC_INVALID_DATA_FIELD,
    CC_NODE_BUSY,
    CC_NOT_SUPPORTED_IN_STATE,
    CC_REQ_DATA_LEN_INVALID,
    NETFN_CHASSIS,
    Context,
    IpmiError,
    command,
)
from ipmi.commands.session import LAN_CHANNEL

CC_PARAM_NOT_SUPPORTED = 0x80

CHASSIS_CONTROL = {
    0x00: PowerAction.FORCE_OFF,
    0x01: PowerAction.ON,
    0x02: PowerAction.POWER_CYCLE,
    0x03: PowerAction.FORCE_RESTART,
    0x04: PowerAction.NMI,
    0x05: PowerAction.GRACEFUL_SHUTDOWN,
}

# boot device selector (boot flags byte 2, bits 5:2) <-> the node model's devices
SELECTOR_TO_DEVICE = {
    0x0: BootDevice.NONE,
    0x1: BootDevice.PXE,
    0x2: BootDevice.DISK,
    0x3: BootDevice.DISK,  # hard drive, safe mode
    0x5: BootDevice.CDROM,
    0x6: BootDevice.BIOS,
    0x8: BootDevice.CDROM,  # remotely connected CD/DVD
    0xB: BootDevice.DISK,  # remotely connected hard drive
    0xF: BootDevice.FLOPPY,
}
DEVICE_TO_SELECTOR = {
    BootDevice.NONE: 0x0,
    BootDevice.PXE: 0x1,
    BootDevice.DISK: 0x2,
    BootDevice.CDROM: 0x5,
    BootDevice.BIOS: 0x6,
    BootDevice.FLOPPY: 0xF,
}

PARAM_SET_IN_PROGRESS = 0
PARAM_VALID_BIT_CLEARING = 3
PARAM_BOOT_INFO_ACK = 4
PARAM_BOOT_FLAGS = 5
#: parameters kept as opaque bytes (with their default) beside the boot flags
STORED_PARAMS = {PARAM_SET_IN_PROGRESS: b"\x00", PARAM_VALID_BIT_CLEARING: b"\x00",
                 PARAM_BOOT_INFO_ACK: b"\x00\x00"}


@command(NETFN_CHASSIS, 0x00)
def get_chassis_capabilities(ctx: Context) -> bytes:
    # flags (no intrusion/lockout), then FRU, SDR, SEL, SM device addresses and bridge
    return bytes((0x00, 0x20, 0x20, 0x20, 0x20, 0x20))


# power restore policy <-> Set Power Restore Policy byte 1 / Get Chassis Status bits 6:5
POLICY_CODES = {
    PowerRestorePolicy.ALWAYS_OFF: 0x0,
    PowerRestorePolicy.LAST_STATE: 0x1,
    PowerRestorePolicy.ALWAYS_ON: 0x2,
}
POLICY_NO_CHANGE = 0x3
IDENTIFY_STATE_BITS = {IdentifyState.OFF: 0x00, IdentifyState.TIMED: 0x10,
                       IdentifyState.ON: 0x20}
IDENTIFY_SUPPORTED = 0x40
LAST_POWER_ON_BY_COMMAND = 0x10


@command(NETFN_CHASSIS, 0x01)
def get_chassis_status(ctx: Context) -> bytes:
    node = ctx.node
    power = 0x01 if node.power_state is PowerState.ON else 0x00
    power |= POLICY_CODES[node.power_restore_policy] << 5
    last_event = (LAST_POWER_ON_BY_COMMAND
                  if node.restart_cause is RestartCause.CHASSIS_CONTROL else 0x00)
    misc = IDENTIFY_SUPPORTED | IDENTIFY_STATE_BITS[node.identify.state]
    front_panel = 0x00
    return bytes((power, last_event, misc, front_panel))


@command(NETFN_CHASSIS, 0x04, privilege=Privilege.OPERATOR)
def chassis_identify(ctx: Context) -> bytes:
    data = ctx.need(0, 2)
    if len(data) == 2 and data[1] & 0x01:  # force identify on: until turned off
        ctx.node.set_identify(None)
    else:
        ctx.node.set_identify(float(data[0]) if data else DEFAULT_IDENTIFY_SECONDS)
    return b""


@command(NETFN_CHASSIS, 0x06, privilege=Privilege.OPERATOR)
def set_power_restore_policy(ctx: Context) -> bytes:
    code = ctx.need(1, 1)[0] & 0x07
    if code != POLICY_NO_CHANGE:
        policy = next((p for p, c in POLICY_CODES.items() if c == code), None)
        if policy is None:
            raise IpmiError(CC_INVALID_DATA_FIELD)
        ctx.node.set_power_restore_policy(policy)
    return bytes((sum(1 << c for c in POLICY_CODES.values()),))  # every policy is supported


@command(NETFN_CHASSIS, 0x02, privilege=Privilege.OPERATOR)
def chassis_control(ctx: Context) -> bytes:
    action = CHASSIS_CONTROL.get(ctx.need(1)[0] & 0x0F)
    if action is None or not ctx.node.supports(action):
        raise IpmiError(CC_INVALID_DATA_FIELD)
    # answered at once, as a real BMC does: the backend carries it out on the node's worker
    # (never on this thread, which serves every node); power status shows it when done
    try:
        ctx.node.submit_power(action)
    except NodeBusy:
        raise IpmiError(CC_NODE_BUSY) from None
    except BackendUnavailable:
        raise IpmiError(CC_NOT_SUPPORTED_IN_STATE) from None
    return b""


@command(NETFN_CHASSIS, 0x07)
def get_system_restart_cause(ctx: Context) -> bytes:
    cause = ctx.node.restart_cause
    # the channel that carried the command: LAN for remote commands, none otherwise
    channel = LAN_CHANNEL if cause is RestartCause.CHASSIS_CONTROL else 0
    return bytes((cause.value, channel))


@command(NETFN_CHASSIS, 0x08, privilege=Privilege.OPERATOR)
def set_system_boot_options(ctx: Context) -> bytes:
    data = ctx.need(1)
    param, value = data[0] & 0x7F, data[1:]
    if param == PARAM_BOOT_FLAGS:
        if len(value) < 2:
            raise IpmiError(CC_REQ_DATA_LEN_INVALID)
        valid, persistent, uefi = bool(value[0] & 0x80), bool(value[0] & 0x40), \
            bool(value[0] & 0x20)
        device = SELECTOR_TO_DEVICE.get((value[1] >> 2) & 0x0F)
        capabilities = ctx.node.backend.capabilities
        if device is None or (valid and device is not BootDevice.NONE
                              and device not in capabilities.boot_devices):
            raise IpmiError(CC_INVALID_DATA_FIELD)
        if valid and (BootMode.UEFI if uefi else BootMode.LEGACY) not in capabilities.boot_modes:
            raise IpmiError(CC_INVALID_DATA_FIELD)
        ctx.node.set_boot_override(device if valid else BootDevice.NONE,
                                   persistent=persistent, uefi=uefi)
        return b""
    if param in STORED_PARAMS:
        if len(value) < len(STORED_PARAMS[param]):
            raise IpmiError(CC_REQ_DATA_LEN_INVALID)
        ctx.endpoint.boot_params[param] = bytes(value[: len(STORED_PARAMS[param])])
        return b""
    raise IpmiError(CC_PARAM_NOT_SUPPORTED)


@command(NETFN_CHASSIS, 0x09)
def get_system_boot_options(ctx: Context) -> bytes:
    param = ctx.need(1)[0] & 0x7F
    if param == PARAM_BOOT_FLAGS:
        boot = ctx.node.boot_override
        flags = (0x80 if boot.device is not BootDevice.NONE else 0) \
            | (0x40 if boot.persistent else 0) | (0x20 if boot.uefi else 0)
        value = bytes((flags, DEVICE_TO_SELECTOR[boot.device] << 2, 0, 0, 0))
    elif param in STORED_PARAMS:
        value = ctx.endpoint.boot_params.get(param, STORED_PARAMS[param])
    else:
        raise IpmiError(CC_PARAM_NOT_SUPPORTED)
    return bytes((0x01, param)) + value
