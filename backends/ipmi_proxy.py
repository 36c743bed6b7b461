"""The `ipmi` backend: the server is a real one, behind a real BMC spoken to over IPMI-over-LAN.

Our node's BMC (Redfish with sessions and ETags, IPMI with cipher suite 17) fronts an old
IPMI-only BMC: power and the one-time boot device are forwarded to it with ipmitool (see
backends/ipmitool.py for why ipmitool), and with `console: true` its serial console (SOL) is
kept open and becomes our node's console.

The boot override stays in our node (as for every backend); it reaches the BMC behind as a
one-time `chassis bootdev` right before the power-on, reset or cycle that uses it. Every
operation has one deadline (`timeout`, 2 s by default) for all the ipmitool calls it makes;
past it, or when the BMC refuses, a BackendError says what failed and why.

The power state is the BMC's answer to `power status` at each call; the node polls it every
`poll_interval` seconds so that changes made behind our back (someone using the BMC
directly, a power failure) show up in our SEL and events.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Literal

from backends.base import (
    Backend,
    BackendError,
    BootDevice,
    Capabilities,
    InventoryInfo,
    LogRecord,
    PowerState,
    SensorReading,
)
from backends.credentials import PasswordSource
from backends.ipmitool import Ipmitool, SolLink, Target
from backends.ipmitool_text import parse_fru, parse_sel, parse_sensors
from backends.settings import seconds as _seconds

log = logging.getLogger(__name__)

#: our boot devices as ipmitool's `chassis bootdev` names them
BOOTDEV = {
    BootDevice.PXE: "pxe",
    BootDevice.DISK: "disk",
    BootDevice.CDROM: "cdrom",
    BootDevice.BIOS: "bios",
    BootDevice.FLOPPY: "floppy",
}


class IpmiProxyBackend(Backend):
    kind = "ipmi"

    def __init__(self, *, address: str, port: int = 623, username: str = "",
                 password_env: str | None = None, password_file: str | None = None,
                 interface: Literal["lanplus", "lan"] = "lanplus", cipher_suite: int = 3,
                 timeout: float = 2.0, poll_interval: float | None = 10.0,
                 console: bool = False, ipmitool: str = "ipmitool",
                 node_name: str = "") -> None:
        _check_address(address)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"port: must be 1..65535, got {port!r}")
        if not isinstance(username, str) or len(username.encode()) > 16:
            raise ValueError("username: must be a string of at most 16 bytes (IPMI)")
        if interface not in ("lanplus", "lan"):
            raise ValueError(f"interface: must be lanplus (IPMI 2.0) or lan (IPMI 1.5), "
                             f"got {interface!r}")
        if (isinstance(cipher_suite, bool) or not isinstance(cipher_suite, int)
                or not 0 <= cipher_suite <= 17):
            raise ValueError(f"cipher_suite: must be 0..17, got {cipher_suite!r}")
        self.timeout = _seconds(timeout, "timeout", 0.2, 60)
        if poll_interval is not None:
            poll_interval = _seconds(poll_interval, "poll_interval", 1, 3600)
        if not isinstance(console, bool):
            raise TypeError(f"console: must be true or false, got {console!r}")
        if not isinstance(ipmitool, str) or not ipmitool:
            raise TypeError("ipmitool: must be the ipmitool program's name or path")
        self.node_name = node_name
        self.target = Target(address, port, username,
                             PasswordSource.from_settings(password_env, password_file),
                             interface, cipher_suite, ipmitool)
        self.ipmitool = Ipmitool(self.target)
        self.poll_interval = poll_interval
        self.capabilities = Capabilities(serial_console=console, virtual_media=False,
                                         sensors=True, event_log=True, inventory=True)
        self._sensor_names: tuple[str, ...] = ()  # recognised in the SEL's sensor column
        self._sol: SolLink | None = None
        #: the device the last boot asked the BMC for (tests and logs)
        self.last_boot_device: BootDevice | None = None

    def __repr__(self) -> str:
        return f"IpmiProxyBackend({self.target}, user {self.target.username!r})"

    # -- power --------------------------------------------------------------------------------
    def power_state(self) -> PowerState:
        out = self.ipmitool.run(["power", "status"], self._deadline(), "power status")
        words = out.strip().lower().split()
        if words[-1:] == ["on"]:
            return PowerState.ON
        if words[-1:] == ["off"]:
            return PowerState.OFF
        raise BackendError(f"{self.target}: power status: unexpected answer {out.strip()!r}")

    def power_on(self, boot_device: BootDevice) -> None:
        self._power("on", boot_device)

    def power_off(self) -> None:
        self._power("off")

    def soft_off(self) -> None:
        self._power("soft")

    def reset(self, boot_device: BootDevice) -> None:
        self._power("reset", boot_device)

    def power_cycle(self, boot_device: BootDevice) -> None:
        self._power("cycle", boot_device)

    def nmi(self) -> None:
        self._power("diag")

    def _power(self, action: str, boot_device: BootDevice | None = None) -> None:
        deadline = self._deadline()
        what = f"power {action}"
        if boot_device is not None and boot_device is not BootDevice.NONE:
            command = ["chassis", "bootdev", BOOTDEV[boot_device]]
            if self.boot_uefi:
                command.append("options=efiboot")
            self.ipmitool.run(command, deadline, f"{what} (boot device {BOOTDEV[boot_device]})")
        self.ipmitool.run(["power", action], deadline, what)
        if boot_device is not None:
            self.last_boot_device = boot_device
        log.info("%s: %s: power %s%s", self.node_name, self.target, action,
                 f", boot device {boot_device.value}" if boot_device else "")

    def _deadline(self) -> float:
        return time.monotonic() + self.timeout

    # -- the BMC's sensors, SEL and FRU ------------------------------------------------------
    def read_sensors(self) -> list[SensorReading]:
        out = self.ipmitool.run(["sensor"], self._deadline(), "sensor")
        readings = parse_sensors(out)
        self._sensor_names = tuple(r.name for r in readings)
        return readings

    def read_log(self, since: str | None) -> list[LogRecord]:
        # ipmitool cannot list "entries after N": read all, keep those after `since` (all
        # of them if it is gone: the log was cleared behind our back)
        out = self.ipmitool.run(["sel", "elist"], self._deadline(), "sel elist")
        records = parse_sel(out, self._sensor_names)
        ids = [r.id for r in records]
        if since is not None and since in ids:
            return records[ids.index(since) + 1:]
        return records

    def read_inventory(self) -> InventoryInfo | None:
        out = self.ipmitool.run(["fru", "print", "0"], self._deadline(), "fru print 0")
        return parse_fru(out)

    # -- the serial console (SOL of the BMC behind) -------------------------------------------
    def attach_console(self, output: Callable[[bytes], None]) -> bool:
        if not self.capabilities.serial_console:
            return False
        if self._sol is None:  # the session is opened by its thread, not here
            self._sol = SolLink(self.target, output, name=self.node_name)
            self._sol.start()
        else:
            self._sol.sink = output
        return True

    def write_console(self, data: bytes) -> None:
        if self._sol is not None:
            self._sol.write(data)

    def close(self) -> None:
        if self._sol is not None:
            self._sol.close()
            self._sol = None


def _check_address(address: object) -> None:
    if not isinstance(address, str) or not address or address.startswith("-"):
        raise ValueError(f"address: must be the BMC's host name or IP address, got {address!r}")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        if not all(part.replace("-", "").isalnum() for part in address.split(".")):
            raise ValueError(f"address: {address!r} is neither an IP address nor a host name"
                             ) from None


