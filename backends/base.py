"""The backend seam: what a simulated server's hardware can do.

A backend knows nothing about IPMI or Redfish. The node model (`bmc.node.Node`) calls it and
keeps the BMC-side state (boot override flags, users, logs) itself, so a backend stays small:
power control, the boot device the "firmware" will use, and optionally a serial console,
a graphical console and virtual media. A backend says which of these it has in
`capabilities`; the front ends offer only those.

Calls may block for seconds (a container's stop timeout, a VM's shutdown, a remote API): the
node makes them from a worker thread of its own, one call at a time per node, never from a
front end's thread and never with the node's lock held. So a backend needs no locking for
calls coming from its node, but `power_state()` may also be called by the node's poller.

Settings: the constructor's keyword arguments are the backend's `backend:` settings in the
YAML config (their type hints are the schema the config checks them against); `node_name`
is passed by the emulator, not the config. A constructor must not block for long: connect
lazily, or on the first call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class PowerState(StrEnum):
    ON = "On"
    OFF = "Off"


class BootDevice(StrEnum):
    """Where the simulated firmware boots from; values are the Redfish names."""

    NONE = "None"
    PXE = "Pxe"
    DISK = "Hdd"
    CDROM = "Cd"
    BIOS = "BiosSetup"
    FLOPPY = "Floppy"


class BootMode(StrEnum):
    """The firmware's boot mode; values are Redfish `BootSourceOverrideMode`."""

    LEGACY = "Legacy"
    UEFI = "UEFI"


class PowerOp(StrEnum):
    """The power operations a backend may offer (the methods of `Backend` below)."""

    ON = "on"
    OFF = "off"
    SOFT_OFF = "soft_off"
    RESET = "reset"
    CYCLE = "power_cycle"
    NMI = "nmi"


ALL_POWER_OPS = frozenset(PowerOp)
ALL_BOOT_DEVICES = frozenset(BootDevice)
ALL_BOOT_MODES = frozenset(BootMode)


@dataclass(frozen=True)
class Capabilities:
    """What a backend's server can do. The defaults are those of a server with no I/O."""

    #: power operations; one not listed is refused (IPMI: completion code, Redfish: 400)
    power: frozenset[PowerOp] = ALL_POWER_OPS
    #: boot override targets (NONE, "no override", is always accepted)
    boot_devices: frozenset[BootDevice] = ALL_BOOT_DEVICES
    boot_modes: frozenset[BootMode] = ALL_BOOT_MODES
    #: `attach_console`/`write_console` work
    serial_console: bool = False
    #: `graphical_console()` names a VNC endpoint
    graphical_console: bool = False
    #: `media_changed` is honoured (or the media is only recorded, as by `memory`)
    virtual_media: bool = True
    #: the backend reports every power change itself (`report_power`): the node never polls
    power_events: bool = False
    #: `file:///path` images (on the emulator's host) are accepted too
    local_media: bool = False
    #: media slots the server has (Redfish VirtualMedia ids)
    media_slots: tuple[str, ...] = field(default=("Cd", "USBStick"))
    #: `read_sensors` reads the server's own sensors (the node shows them instead of its model)
    sensors: bool = False
    #: `read_log` reads the server's own event log (appended to the node's SEL)
    event_log: bool = False
    #: `read_inventory` reads the server's own identity (manufacturer, model, serial)
    inventory: bool = False


SensorKindName = Literal["temperature", "fan", "voltage", "power", "psu", "other"]


@dataclass(frozen=True)
class SensorReading:
    """One sensor of the server as its own management controller reads it.

    `thresholds` by name: lower_non_critical, lower_critical, lower_non_recoverable,
    upper_non_critical, upper_critical, upper_non_recoverable (those that are set).
    `value` None: no reading now (not scanned, unavailable).
    """

    name: str
    kind: SensorKindName
    value: float | None
    unit: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LogRecord:
    """One entry of the server's own event log; `id` is the log's own (read_log's `since`)."""

    id: str
    created: float  # seconds since 1970
    severity: Literal["OK", "Warning", "Critical"]
    message: str
    sensor: str | None = None
    #: the event's own words, e.g. "Upper Critical going high" (a model may recognise it)
    event: str = ""
    asserted: bool = True


@dataclass(frozen=True)
class InventoryInfo:
    """What the server says it is (None: it does not say)."""

    manufacturer: str | None = None
    product: str | None = None
    serial: str | None = None
    part_number: str | None = None


class BackendError(Exception):
    """The backend could not carry out a request (the resource is gone, an API failed, ...)."""


class BackendRefused(BackendError):
    """The backend cannot do what was asked, however often it is asked (an image it cannot
    use, a setting the server does not have): the client's request is at fault, not the
    backend's health (Redfish 400, not 503)."""


class Backend(ABC):
    """Power and boot control of one simulated server."""

    #: the `type:` name used in the YAML config
    kind: str = ""
    #: what this server can do; a backend may set its own per instance (from its settings)
    capabilities: Capabilities = Capabilities()
    #: open files one running server of this backend holds (a terminal, a pidfd, an attach
    #: socket), for the emulator's open-file budget at start (`bmc.limits`)
    descriptors: int = 0
    #: seconds between power-state polls by the node when `capabilities.power_events` is
    #: False and the state can change outside the emulator; None = never poll (the state
    #: changes only through the backend's own methods, or `report_power` says so)
    poll_interval: float | None = None
    #: the firmware's boot mode for the next boot (True = UEFI); the node model sets it before
    #: each power_on/reset/power_cycle, so the signatures below stay the same for every backend
    boot_uefi: bool = False
    #: the server's power lives only in this process (memory): with a state dir, the node
    #: saves it and restores it at the next start (bmc/state.py)
    volatile: bool = False
    #: set by the node model: called with (state, reason) when the server's power changes
    #: by itself or from outside (its process exited, the VM was shut down from inside, a
    #: container was stopped with `docker stop`); may come from any thread
    on_power_change: Callable[[PowerState, str], None] | None = None

    def report_power(self, state: PowerState, reason: str) -> None:
        """Tell the node the server's power changed without the node asking (any thread)."""
        callback = self.on_power_change
        if callback is not None:
            callback(state, reason)

    @abstractmethod
    def power_state(self) -> PowerState:
        """The server's real power state right now (BackendError if it cannot be read)."""

    @abstractmethod
    def power_on(self, boot_device: BootDevice) -> None:
        """Power on, booting from `boot_device` (NONE = the default boot order)."""

    @abstractmethod
    def power_off(self) -> None:
        """Hard power off (pull the plug)."""

    def soft_off(self) -> None:
        """Graceful (ACPI) shutdown. Backends without a guest OS simply power off."""
        self.power_off()

    def reset(self, boot_device: BootDevice) -> None:
        """Hard reset: the server stays powered and boots again."""
        self.power_off()
        self.power_on(boot_device)

    def power_cycle(self, boot_device: BootDevice) -> None:
        """Power off, then on again."""
        self.power_off()
        self.power_on(boot_device)

    def nmi(self) -> None:  # noqa: B027 - optional hook, a no-op where the server has no OS
        """Deliver a diagnostic interrupt (NMI) to the running OS."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release whatever the backend holds (connections, child processes)."""

    # -- the serial console (optional: capabilities.serial_console) -------------------------
    def attach_console(self, output: Callable[[bytes], None]) -> bool:
        """Stream the server's serial console output to `output` from now on.

        `output` is called from a backend thread and must not block. Returns False when the
        server has no serial console (then `write_console` is never called).
        """
        return False

    def write_console(self, data: bytes) -> None:  # noqa: B027 - optional hook
        """Type `data` on the serial console; dropped while the server is off. Must not block."""

    # -- the graphical console (optional: capabilities.graphical_console) -------------------
    def graphical_console(self) -> str | None:
        """The server's VNC endpoint as `vnc://host:port` (or a noVNC page URL), if any.

        Called from front-end threads: answer from what is known, never with I/O."""
        return None

    # -- virtual media (optional: capabilities.virtual_media) -------------------------------
    def media_changed(self, slot: str, image: str | None) -> None:  # noqa: B027
        """An image was inserted into media slot `slot` ("Cd", "USBStick"), or ejected (None).

        Called on the node's worker (it may block). A backend that can present it to the
        server does so now or at the next boot; BackendRefused if it cannot use this image,
        BackendError if it failed.
        """

    # -- the server's own sensors, event log and identity (optional: capabilities) ----------
    def read_sensors(self) -> list[SensorReading] | None:
        """Every sensor now (capabilities.sensors; on the node's worker, may block)."""
        return None

    def read_log(self, since: str | None) -> list[LogRecord] | None:
        """Event log entries after the one with id `since` (None: all), oldest first
        (capabilities.event_log; on the node's worker, may block)."""
        return None

    def read_inventory(self) -> InventoryInfo | None:
        """The server's identity (capabilities.inventory; on the node's worker)."""
        return None
