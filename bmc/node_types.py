"""The values a node deals in: power actions, the boot override, restart causes, identify,
identity and events. Front ends import them from `bmc.node`, which re-exports them."""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any

from backends.base import BootDevice, PowerOp, PowerState

if TYPE_CHECKING:
    from bmc.node import Node


class PowerAction(StrEnum):
    """What a client can ask of the power control; values are Redfish ResetType names."""

    ON = "On"
    FORCE_OFF = "ForceOff"
    GRACEFUL_SHUTDOWN = "GracefulShutdown"
    GRACEFUL_RESTART = "GracefulRestart"
    FORCE_RESTART = "ForceRestart"
    NMI = "Nmi"
    PUSH_POWER_BUTTON = "PushPowerButton"
    POWER_CYCLE = "PowerCycle"


@dataclass(frozen=True)
class BootOverride:
    """The BMC's boot override (IPMI boot flags, parameter 5; Redfish `Boot`).

    `device` NONE means no override. A one-time (not `persistent`) override is used by the next
    boot and then cleared, as on a real BMC.
    """

    device: BootDevice = BootDevice.NONE
    persistent: bool = False
    uefi: bool = False

    @property
    def enabled(self) -> str:
        """Redfish `BootSourceOverrideEnabled`."""
        if self.device is BootDevice.NONE:
            return "Disabled"
        return "Continuous" if self.persistent else "Once"


#: the backend operations each action may use (the action is offered only if all exist)
ACTION_OPS: dict[PowerAction, frozenset[PowerOp]] = {
    PowerAction.ON: frozenset({PowerOp.ON}),
    PowerAction.FORCE_OFF: frozenset({PowerOp.OFF}),
    PowerAction.GRACEFUL_SHUTDOWN: frozenset({PowerOp.SOFT_OFF}),
    PowerAction.GRACEFUL_RESTART: frozenset({PowerOp.ON, PowerOp.RESET}),
    PowerAction.FORCE_RESTART: frozenset({PowerOp.ON, PowerOp.RESET}),
    PowerAction.NMI: frozenset({PowerOp.NMI}),
    PowerAction.PUSH_POWER_BUTTON: frozenset({PowerOp.ON, PowerOp.SOFT_OFF}),
    PowerAction.POWER_CYCLE: frozenset({PowerOp.ON, PowerOp.CYCLE}),
}
#: where each action takes the server (None: nowhere; "toggle": the power button)
ACTION_TARGETS: dict[PowerAction, PowerState | str | None] = {
    PowerAction.ON: PowerState.ON,
    PowerAction.FORCE_OFF: PowerState.OFF,
    PowerAction.GRACEFUL_SHUTDOWN: PowerState.OFF,
    PowerAction.GRACEFUL_RESTART: PowerState.ON,
    PowerAction.FORCE_RESTART: PowerState.ON,
    PowerAction.NMI: None,
    PowerAction.PUSH_POWER_BUTTON: "toggle",
    PowerAction.POWER_CYCLE: PowerState.ON,
}


class RestartCause(IntEnum):
    """Why the server last (re)started; values are IPMI Get System Restart Cause codes."""

    UNKNOWN = 0x0
    CHASSIS_CONTROL = 0x1  # a remote command: IPMI Chassis Control, Redfish Reset
    RESET_BUTTON = 0x2
    POWER_BUTTON = 0x3  # also Redfish PushPowerButton
    WATCHDOG = 0x4
    ALWAYS_RESTORE = 0x6  # power restored, policy always-on
    PREVIOUS_RESTORE = 0x7  # power restored, policy previous state
    SOFT_RESET = 0xA


class PowerRestorePolicy(StrEnum):
    """What the server does when AC power returns; values are Redfish PowerRestorePolicy."""

    ALWAYS_OFF = "AlwaysOff"
    LAST_STATE = "LastState"  # IPMI "previous"
    ALWAYS_ON = "AlwaysOn"


class IdentifyState(StrEnum):
    """The chassis identify LED; values are Redfish IndicatorLED."""

    OFF = "Off"
    TIMED = "Blinking"  # on for an interval (IPMI "temporary (timed) on")
    ON = "Lit"  # on until turned off (IPMI "indefinite on", Chassis Identify force)


@dataclass(frozen=True)
class Identify:
    state: IdentifyState
    remaining: float | None = None  # seconds left when TIMED

    @property
    def active(self) -> bool:
        """Redfish LocationIndicatorActive."""
        return self.state is not IdentifyState.OFF


#: the interval of an IPMI Chassis Identify without one (IPMI 2.0 section 28.5)
DEFAULT_IDENTIFY_SECONDS = 15.0


@dataclass(frozen=True)
class NodeEvent:
    """Something that happened to a node (fed to the SEL, logs and Redfish events)."""

    kind: str  # "power", "boot-override", ...
    detail: dict[str, Any]
    timestamp: float = field(default_factory=time.time)


EventListener = Callable[["Node", NodeEvent], None]



@dataclass
class Identity:
    """What the BMC reports about itself and its server (Get Device ID, Redfish System)."""

    manufacturer: str = "bmc-emulator"
    product: str = "Virtual Server"
    serial: str = ""
    #: IANA enterprise number in Get Device ID: 32473, RFC 5612's "Example Enterprise Number
    #: for Documentation Use" (no vendor's; ipmitool and freeipmi name it), not "Reserved (0)"
    manufacturer_id: int = 32473
    product_id: int = 0x0001
    firmware_version: str = "1.0"
    #: the product part number (FRU); "" = derived from the IDs
    part_number: str = ""


def node_uuid(name: str) -> str:
    """A stable UUID per node name, so a node keeps its identity across restarts."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{name}.bmc-emulator"))
