"""In-memory backend: a server that exists only as a few fields. No privileges, no I/O.

`action_delay` makes every power action take that long (a container's stop timeout, a VM's
shutdown, a remote API), for trying clients, and the emulator itself, against slow servers.
"""

from __future__ import annotations

import time

from backends.base import Backend, BootDevice, Capabilities, PowerState
from backends.settings import seconds


class MemoryBackend(Backend):
    kind = "memory"
    capabilities = Capabilities(power_events=True)  # nothing changes it but us
    volatile = True  # its power is a field: the state store keeps it across restarts

    def __init__(self, *, power_on: bool = False, action_delay: float = 0.0,
                 node_name: str = "") -> None:
        self.action_delay = seconds(action_delay, "action_delay", 0, 600)
        self._power = PowerState.ON if power_on else PowerState.OFF
        #: the device the last boot used; lets tests and a console see what was booted
        self.last_boot_device: BootDevice | None = None
        self.nmi_count = 0

    def _take_time(self) -> None:
        if self.action_delay:
            time.sleep(self.action_delay)

    def power_state(self) -> PowerState:
        return self._power

    def power_on(self, boot_device: BootDevice) -> None:
        self._take_time()
        if self._power is PowerState.OFF:
            self._power = PowerState.ON
            self.last_boot_device = boot_device

    def power_off(self) -> None:
        self._take_time()
        self._power = PowerState.OFF

    def reset(self, boot_device: BootDevice) -> None:
        self._take_time()
        self._power = PowerState.ON
        self.last_boot_device = boot_device

    def nmi(self) -> None:
        self.nmi_count += 1
