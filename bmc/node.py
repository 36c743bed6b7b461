"""The node model: one simulated server as its BMC sees it.

Both front ends (`ipmi/`, `redfish/`) call a `Node`; the node calls its backend. State the BMC
itself owns (boot override flags, users, identity) lives here, behind one lock, so a change made
through one protocol is what the other reads next.
"""

from __future__ import annotations

import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from backends.base import Backend, BootDevice, PowerState
from bmc.users import UserStore


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
    manufacturer_id: int = 0  # IANA enterprise number in Get Device ID; 0 = unspecified
    product_id: int = 0x0001
    firmware_version: str = "1.0"


class Node:
    """One simulated server. Thread-safe: every public method takes the node's lock."""

    def __init__(self, name: str, backend: Backend, users: UserStore | None = None,
                 uuid: str | None = None, identity: Identity | None = None) -> None:
        self.name = name
        self.backend = backend
        self.users = users if users is not None else UserStore()
        # a stable UUID per name, so a node keeps its identity across restarts
        self.uuid = uuid or str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{name}.bmc-emulator"))
        self.identity = identity or Identity(serial=f"SN-{self.uuid[:8].upper()}")
        self._lock = threading.RLock()
        self._boot = BootOverride()
        self._listeners: list[EventListener] = []

    # -- events -----------------------------------------------------------------------------
    def subscribe(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def _emit(self, kind: str, **detail: Any) -> None:
        event = NodeEvent(kind, detail)
        for listener in list(self._listeners):
            listener(self, event)

    # -- power ------------------------------------------------------------------------------
    @property
    def power_state(self) -> PowerState:
        with self._lock:
            return self.backend.power_state()

    def power(self, action: PowerAction) -> None:
        """Carry out a power action. Restarts from Off power the server on."""
        with self._lock:
            before = self.backend.power_state()
            is_on = before is PowerState.ON
            match action:
                case PowerAction.ON:
                    if not is_on:
                        self.backend.power_on(self._take_boot_device())
                case PowerAction.FORCE_OFF:
                    self.backend.power_off()
                case PowerAction.GRACEFUL_SHUTDOWN:
                    if is_on:
                        self.backend.soft_off()
                case PowerAction.PUSH_POWER_BUTTON:
                    if is_on:
                        self.backend.soft_off()
                    else:
                        self.backend.power_on(self._take_boot_device())
                case PowerAction.FORCE_RESTART | PowerAction.GRACEFUL_RESTART:
                    if is_on:
                        self.backend.reset(self._take_boot_device())
                    else:
                        self.backend.power_on(self._take_boot_device())
                case PowerAction.POWER_CYCLE:
                    if is_on:
                        self.backend.power_cycle(self._take_boot_device())
                    else:
                        self.backend.power_on(self._take_boot_device())
                case PowerAction.NMI:
                    if is_on:
                        self.backend.nmi()
            after = self.backend.power_state()
        self._emit("power", action=action.value, before=before.value, after=after.value)

    def _take_boot_device(self) -> BootDevice:
        """The device this boot uses; a one-time override is consumed by it."""
        override = self._boot
        if not override.persistent and override.device is not BootDevice.NONE:
            self._boot = BootOverride(uefi=override.uefi)
        return override.device

    # -- boot override ----------------------------------------------------------------------
    @property
    def boot_override(self) -> BootOverride:
        with self._lock:
            return self._boot

    def set_boot_override(self, device: BootDevice | None = None, *,
                          persistent: bool | None = None, uefi: bool | None = None) -> BootOverride:
        """Change any of the override's fields; the others keep their value."""
        with self._lock:
            changes: dict[str, Any] = {}
            if device is not None:
                changes["device"] = device
            if persistent is not None:
                changes["persistent"] = persistent
            if uefi is not None:
                changes["uefi"] = uefi
            self._boot = replace(self._boot, **changes)
            boot = self._boot
        self._emit("boot-override", device=boot.device.value, persistent=boot.persistent,
                   uefi=boot.uefi)
        return boot

    def close(self) -> None:
        self.backend.close()
