"""In-memory backend: a server that exists only as a few fields. No privileges, no I/O."""

from __future__ import annotations

from backends.base import Backend, BootDevice, Capabilities, PowerState


class MemoryBackend(Backend):
    kind = "memory"

    capabilities = Capabilities(power_events=True)  # nothing changes it but us

    def __init__(self, *, power_on: bool = False, node_name: str = "") -> None:
        self._power = PowerState.ON if power_on else PowerState.OFF
        #: the device the last boot used; lets tests and a console see what was booted
        self.last_boot_device: BootDevice | None = None
        self.nmi_count = 0

    def power_state(self) -> PowerState:
        return self._power

    def power_on(self, boot_device: BootDevice) -> None:
        if self._power is PowerState.OFF:
            self._power = PowerState.ON
            self.last_boot_device = boot_device

    def power_off(self) -> None:
        self._power = PowerState.OFF

    def reset(self, boot_device: BootDevice) -> None:
        self._power = PowerState.ON
        self.last_boot_device = boot_device

    def nmi(self) -> None:
        self.nmi_count += 1
