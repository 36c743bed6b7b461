"""The `ssh` backend: any host with a shell is a server, one shell command per BMC action.

In the spirit of FakeFish's script-per-action shim: the settings name a command for each power
action (`virsh start vm1`, `ipmitool ... power on`, a script of your own), one that reports the
power state (its output is matched against two regexes), optionally one that sets the boot
device, one that inserts virtual media, and `console_command`, whose pty becomes the node's
serial console (`virsh console vm1`). Commands run over SSH (asyncssh, one connection per host
shared by every node on it, see backends/sshloop.py) or, with `host: local`, here.

Placeholders in commands are replaced by shell-quoted values (so write `{url}`, not `'{url}'`):
`{device}` (the boot device: its Redfish name, or what `boot_devices` maps it to), `{mode}`
(`uefi` or `legacy`), `{url}` and `{slot}` (virtual media), `{node}` (the node's name).

Every command has a deadline (`command_timeout`, connecting included); a failing or hung command
is a BackendError naming the command and its error output, and a hung one is killed (over SSH,
with `kill_on_timeout`, by running it under coreutils `timeout` on the host). The power state is
cached for `status_cache` seconds (the node may ask often) and read again after every action.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from backends.base import (
    ALL_BOOT_DEVICES,
    Backend,
    BackendError,
    BootDevice,
    Capabilities,
    PowerOp,
    PowerState,
)
from backends.sshcommand import Result, run_local, run_remote
from backends.sshloop import SshTarget, check_target_settings, check_types, require

if TYPE_CHECKING:
    from backends.sshconsole import RemoteConsole

log = logging.getLogger(__name__)

LOCAL = "local"
#: what `power_status` prints when on / off (searched, case-insensitive by default): virsh
#: domstate ("running", "shut off"), ipmitool ("Chassis Power is on"), plain "on"/"off"
DEFAULT_STATUS_ON = r"(?i)\b(on|running|idle|paused|blocked|in shutdown|pmsuspended)\b"
DEFAULT_STATUS_OFF = r"(?i)\b(off|shut off|shutoff|stopped|crashed)\b"
_PLACEHOLDER = re.compile(r"\{(device|mode|url|slot|node)\}")
#: the most of a command's output quoted in an error
OUTPUT_QUOTE = 200


def fill(template: str, **values: str) -> str:
    """`template` with each known `{name}` replaced by its value, shell-quoted."""
    return _PLACEHOLDER.sub(lambda m: shlex.quote(values.get(m.group(1), "")), template)


def _positive(name: str, value: float, most: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= most:
        raise ValueError(f"{name}: must be a number of seconds in (0, {most:g}]")
    return float(value)


def _regex(name: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{name}: not a regular expression: {exc}") from None


def _boot_names(names: dict[str, str] | None) -> dict[BootDevice, str] | None:
    if names is None:
        return None
    if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
        raise TypeError("boot_devices: must map boot devices (Pxe, Hdd, Cd, ...) to strings")
    result = {}
    for key, value in names.items():
        try:
            result[BootDevice(key)] = value
        except ValueError:
            known = ", ".join(d.value for d in BootDevice)
            raise ValueError(f"boot_devices: unknown boot device {key!r} (known: {known})"
                             ) from None
    return result


class SshBackend(Backend):
    kind = "ssh"

    def __init__(self, *, host: str, power_on: str, power_off: str, power_status: str,
                 port: int = 22, user: str | None = None, key: str | None = None,
                 known_hosts: str | None = None, check_host_key: bool = True,
                 soft_off: str | None = None, reset: str | None = None,
                 power_cycle: str | None = None, nmi: str | None = None,
                 status_on: str = DEFAULT_STATUS_ON, status_off: str = DEFAULT_STATUS_OFF,
                 set_boot_device: str | None = None, boot_devices: dict[str, str] | None = None,
                 insert_media: str | None = None, eject_media: str | None = None,
                 console_command: str | None = None, kill_on_timeout: bool = True,
                 connect_timeout: float = 5.0,
                 command_timeout: float = 10.0, poll_interval: float = 5.0,
                 status_cache: float = 1.0, node_name: str = "") -> None:
        none = type(None)
        check_types(host=(host, str), user=(user, (str, none)),
                    check_host_key=(check_host_key, bool), kill_on_timeout=(kill_on_timeout, bool),
                    status_on=(status_on, str), status_off=(status_off, str),
                    console_command=(console_command, (str, none)))
        if not host:
            raise ValueError("host: must be a host name, an address or 'local'")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError("port: must be 1..65535")
        check_target_settings(key, known_hosts)
        self.node_name = node_name
        self.local = host == LOCAL
        if not self.local:
            require("asyncssh", "ssh")
        self.target = SshTarget(host, port, user, key, known_hosts, check_host_key,
                                _positive("connect_timeout", connect_timeout, 300))
        self.command_timeout = _positive("command_timeout", command_timeout, 3600)
        self.poll_interval = _positive("poll_interval", poll_interval, 86400)
        self.status_cache = float(status_cache) if status_cache == 0 else _positive(
            "status_cache", status_cache, 3600)
        self.commands = {"power_on": power_on, "power_off": power_off,
                         "power_status": power_status, "soft_off": soft_off, "reset": reset,
                         "power_cycle": power_cycle, "nmi": nmi,
                         "set_boot_device": set_boot_device, "insert_media": insert_media,
                         "eject_media": eject_media}
        for name, command in self.commands.items():
            if command is not None and (not isinstance(command, str) or not command.strip()):
                raise ValueError(f"{name}: must be a shell command")
        self.status_on = _regex("status_on", status_on)
        self.status_off = _regex("status_off", status_off)
        self.boot_names = _boot_names(boot_devices)
        self.console_command = console_command
        self.kill_on_timeout = kill_on_timeout
        self.capabilities = self._capabilities()
        self._lock = threading.Lock()
        self._cached: tuple[float, PowerState | BackendError] | None = None
        self._console: RemoteConsole | None = None
        self._pooled = False
        #: the device the last boot used (tests and logs)
        self.last_boot_device: BootDevice | None = None

    def _capabilities(self) -> Capabilities:
        power = {PowerOp.ON, PowerOp.OFF, PowerOp.RESET, PowerOp.CYCLE}  # the last two: off+on
        if self.commands["soft_off"]:
            power.add(PowerOp.SOFT_OFF)
        if self.commands["nmi"]:
            power.add(PowerOp.NMI)
        if not self.commands["set_boot_device"]:
            boot = frozenset()
        elif self.boot_names is not None:
            boot = frozenset(self.boot_names)
        else:
            boot = ALL_BOOT_DEVICES
        return Capabilities(power=frozenset(power), boot_devices=boot,
                            serial_console=bool(self.console_command),
                            virtual_media=bool(self.commands["insert_media"]),
                            media_slots=("Cd",) if self.commands["insert_media"] else ())

    @property
    def where(self) -> str:
        return "local" if self.local else f"ssh {self.target}"

    # -- running commands -----------------------------------------------------------------
    def _run(self, name: str, **values: str) -> Result:
        template = self.commands[name]
        assert template is not None
        command = fill(template, node=self.node_name, **values)
        log.debug("%s: running the %s command", self.node_name, name)  # not its text: it
        label = f"{name} command"                                           # may hold secrets
        if self.local:
            result = run_local(command, self.command_timeout, label)
        else:
            self._use_pool()
            result = run_remote(self.target, command, self.command_timeout,
                                self.kill_on_timeout, label)
        if result.status != 0:
            said = (result.stderr.strip() or result.stdout.strip())[-OUTPUT_QUOTE:]
            raise BackendError(f"{self.where}: {name} command failed (exit {result.status})"
                               + (f": {said}" if said else ""))
        return result

    def _use_pool(self) -> None:
        with self._lock:
            if not self._pooled:
                from backends.sshloop import pool

                pool.use(self.target)
                self._pooled = True

    def _action(self, name: str, **values: str) -> None:
        try:
            self._run(name, **values)
        finally:  # whatever happened, the next power_state() asks the host again
            with self._lock:
                self._cached = None

    # -- power ------------------------------------------------------------------------------
    def power_state(self) -> PowerState:
        with self._lock:
            cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < self.status_cache:
            answer = cached[1]
        else:
            try:
                answer = self._read_status()
            except BackendError as exc:  # remembered too: a dead host costs one timeout
                answer = exc
            with self._lock:
                self._cached = (time.monotonic(), answer)
        if isinstance(answer, BackendError):
            raise answer
        return answer

    def _read_status(self) -> PowerState:
        output = self._run("power_status").stdout
        on, off = self.status_on.search(output), self.status_off.search(output)
        if bool(on) != bool(off):
            return PowerState.ON if on else PowerState.OFF
        quoted = output.strip()[:OUTPUT_QUOTE] or "nothing"
        why = "both status_on and status_off match" if on else "neither status_on nor " \
              "status_off matches"
        raise BackendError(f"{self.where}: power_status printed {quoted!r}: {why}")

    def power_on(self, boot_device: BootDevice) -> None:
        self._set_boot(boot_device)
        self._action("power_on")
        self.last_boot_device = boot_device

    def power_off(self) -> None:
        self._action("power_off")

    def soft_off(self) -> None:
        self._action("soft_off" if self.commands["soft_off"] else "power_off")

    def reset(self, boot_device: BootDevice) -> None:
        if not self.commands["reset"]:
            return super().reset(boot_device)
        self._set_boot(boot_device)
        self._action("reset")
        self.last_boot_device = boot_device

    def power_cycle(self, boot_device: BootDevice) -> None:
        if not self.commands["power_cycle"]:
            return super().power_cycle(boot_device)
        self._set_boot(boot_device)
        self._action("power_cycle")
        self.last_boot_device = boot_device

    def nmi(self) -> None:
        if self.commands["nmi"]:
            self._action("nmi")

    def _set_boot(self, device: BootDevice) -> None:
        """Tell the server where the coming boot goes (NONE too: it undoes a one-time PXE)."""
        if not self.commands["set_boot_device"]:
            return
        if self.boot_names is not None:
            if device not in self.boot_names:
                return  # NONE without a mapping: leave the server's own boot order alone
            name = self.boot_names[device]
        else:
            name = device.value
        self._run("set_boot_device", device=name, mode="uefi" if self.boot_uefi else "legacy")

    # -- virtual media ---------------------------------------------------------------------------
    def media_changed(self, slot: str, image: str | None) -> None:
        if image is not None:
            if not self.commands["insert_media"]:
                raise BackendError("this server has no insert_media command")
            self._run("insert_media", url=image, slot=slot)
        elif self.commands["eject_media"]:
            self._run("eject_media", slot=slot)

    # -- the serial console ------------------------------------------------------------------
    def attach_console(self, output: Callable[[bytes], None]) -> bool:
        if not self.console_command:
            return False
        if self._console is None:
            from backends.sshconsole import RemoteConsole, local_channel, ssh_channel

            command = fill(self.console_command, node=self.node_name)
            if self.local:
                opener = local_channel(command)
            else:
                self._use_pool()
                opener = ssh_channel(self.target, command)
            self._console = RemoteConsole(self.node_name or "ssh", opener,
                                          f"console ({self.where}: console_command)")
        self._console.start(output)
        return True

    def write_console(self, data: bytes) -> None:
        if self._console is not None:
            self._console.write(data)

    def close(self) -> None:
        if self._console is not None:
            self._console.close()
        with self._lock:
            pooled, self._pooled = self._pooled, False
        if pooled:
            from backends.sshloop import pool

            pool.release(self.target)
