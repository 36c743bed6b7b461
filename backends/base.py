"""The backend seam: what a simulated server's hardware can do.

A backend knows nothing about IPMI or Redfish. The node model (`bmc.node.Node`) calls it and
keeps the BMC-side state (boot override flags, users, logs) itself, so a backend stays small:
power control and the boot device the "firmware" will use. New backends (Docker, libvirt, the
Metal API, SSH, a process with a serial pty) implement this class and register in
`backends.create_backend`.

Calls may block (a remote API); they are made with the node's lock held, so a backend needs
no locking of its own for calls coming from one node.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import StrEnum


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


class BackendError(Exception):
    """The backend could not carry out a request (the resource is gone, an API failed, ...)."""


class Backend(ABC):
    """Power and boot control of one simulated server."""

    #: the `type:` name used in the YAML config
    kind: str = ""
    #: the firmware's boot mode for the next boot (True = UEFI); the node model sets it before
    #: each power_on/reset/power_cycle, so the signatures below stay the same for every backend
    boot_uefi: bool = False
    #: set by the node model: called with a reason when the server powers off by itself (its
    #: process exited, the VM was shut down from inside); may come from any thread
    on_power_lost: Callable[[str], None] | None = None

    @abstractmethod
    def power_state(self) -> PowerState:
        """The server's real power state right now."""

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

    # -- the serial console (optional) ---------------------------------------------------------
    def attach_console(self, output: Callable[[bytes], None]) -> bool:
        """Stream the server's serial console output to `output` from now on.

        `output` is called from a backend thread and must not block. Returns False when the
        server has no serial console (then `write_console` is never called).
        """
        return False

    def write_console(self, data: bytes) -> None:  # noqa: B027 - optional hook
        """Type `data` on the serial console; dropped while the server is off."""
