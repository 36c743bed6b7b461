"""The `metal` backend: an Equinix Metal server, through the Metal API and its SOS console.

Power: `POST /devices/{id}/actions` with `power_on`, `power_off` or `reboot` (reset and power
cycle; soft-off is power_off: the API has no gentler one, and no NMI). The power state is the
device's `state`: `active` is On, `inactive` Off, `powering_on`/`powering_off` the way there
(reported as where they lead: a reboot's `powering_off` is On); any other state (`queued`,
`provisioning`, `reinstalling`, `failed`, ...) is not a power state at all and is reported as a
BackendError naming it. The state is read at most every `state_cache` seconds (the node may ask
often), more often while a transition is under way (`poll_interval` is short then).

Boot device: PXE sets the device's `always_pxe` (and `ipxe_script_url`, if configured), disk
and "no override" clear it, before each boot the node starts. With `pxe_clear_after`, a PXE
boot's `always_pxe` is also cleared that many seconds after the device is `active` again, so a
reboot from inside the OS finds the disk (Metal reads `always_pxe` when the server PXE-boots,
well after `active`: clearing it at once would undo the PXE boot).

Console: the device's SOS, `ssh {device_id}@{sos host}` with `sos_key`, fed to the node's console
hub for its whole life (backends/sshconsole.py): `ipmitool sol activate` types on the server's
real serial port. The SOS host is `sos_host`, `sos.{facility}.platformequinix.com`, or with
`sos_host: auto` the device's own `sos` field.

The API token is read from the environment variable `token_env` (never from the YAML); it
is never logged or shown. API calls are bounded by `api_timeout` (backends/metalapi.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from backends.base import (
    Backend,
    BackendError,
    BootDevice,
    Capabilities,
    PowerOp,
    PowerState,
)
from backends.settings import seconds as _seconds
from backends.sshloop import SshTarget, check_target_settings, check_types, require

if TYPE_CHECKING:
    from backends.metalapi import MetalApi
    from backends.sshconsole import RemoteConsole

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.equinix.com/metal/v1"
SOS_AUTO = "auto"
TRANSITIONS = {"powering_on": PowerState.ON, "powering_off": PowerState.OFF}
SETTLED = {"active": PowerState.ON, "inactive": PowerState.OFF}
#: why a device in a non-power state cannot be switched (the BackendError's explanation)
NOT_POWER_STATES = {
    "queued": "it waits to be provisioned",
    "provisioning": "it is being provisioned",
    "deprovisioning": "it is being deprovisioned",
    "reinstalling": "its operating system is being reinstalled",
    "failed": "its provisioning failed",
    "deleted": "it was deleted",
}




class MetalBackend(Backend):
    kind = "metal"

    def __init__(self, *, device_id: str, token_env: str = "METAL_AUTH_TOKEN",
                 base_url: str = DEFAULT_BASE_URL, facility: str | None = None,
                 sos_host: str | None = None, sos_port: int = 22, sos_key: str | None = None,
                 sos_known_hosts: str | None = None, sos_check_host_key: bool = True,
                 ipxe_script_url: str | None = None, pxe_clear_after: float | None = None,
                 api_timeout: float = 2.0, poll_interval: float = 30.0,
                 transition_poll: float = 1.0, state_cache: float = 1.0,
                 node_name: str = "") -> None:
        none = type(None)
        check_types(device_id=(device_id, str), token_env=(token_env, str),
                    base_url=(base_url, str), facility=(facility, (str, none)),
                    sos_host=(sos_host, (str, none)),
                    ipxe_script_url=(ipxe_script_url, (str, none)),
                    sos_check_host_key=(sos_check_host_key, bool))
        try:
            self.device_id = str(uuid.UUID(device_id))
        except ValueError:
            raise ValueError(f"device_id: {device_id!r} is not a device UUID") from None
        if not isinstance(token_env, str) or not token_env:
            raise ValueError("token_env: must name an environment variable")
        if not os.environ.get(token_env):
            raise ValueError(f"token_env: the environment variable {token_env} (the API "
                             "token; it never goes in the config) is not set")
        self.token_env = token_env
        parsed = urlparse(base_url) if isinstance(base_url, str) else None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url: {base_url!r} is not an http(s) URL")
        self.base_url = base_url
        if ipxe_script_url is not None and urlparse(ipxe_script_url).scheme not in (
                "http", "https"):
            raise ValueError(f"ipxe_script_url: {ipxe_script_url!r} is not an http(s) URL")
        self.ipxe_script_url = ipxe_script_url
        self.pxe_clear_after = (None if pxe_clear_after is None
                                else _seconds(pxe_clear_after, "pxe_clear_after", 0, 86400))
        self.api_timeout = _seconds(api_timeout, "api_timeout", 0.1, 300)
        self.idle_poll = _seconds(poll_interval, "poll_interval", 0.1, 86400)
        self.transition_poll = _seconds(transition_poll, "transition_poll", 0.1, 3600)
        self.state_cache = _seconds(state_cache, "state_cache", 0, 3600)
        self.node_name = node_name or "metal"
        # the SOS console
        if isinstance(sos_port, bool) or not isinstance(sos_port, int) or not 0 < sos_port < 65536:
            raise ValueError("sos_port: must be 1..65535")
        check_target_settings(sos_key, sos_known_hosts, "sos_")
        host = sos_host or (f"sos.{facility}.platformequinix.com" if facility else None)
        self.sos: SshTarget | None = None
        if host is not None:
            self.sos = SshTarget(host, sos_port, self.device_id, sos_key, sos_known_hosts,
                                 sos_check_host_key, connect_timeout=5.0)
        require("requests", "metal")
        if self.sos is not None:
            require("asyncssh", "metal")
        self.capabilities = Capabilities(
            power=frozenset({PowerOp.ON, PowerOp.OFF, PowerOp.SOFT_OFF, PowerOp.RESET,
                             PowerOp.CYCLE}),
            boot_devices=frozenset({BootDevice.PXE, BootDevice.DISK}),
            serial_console=self.sos is not None, virtual_media=False, media_slots=())
        self._lock = threading.Lock()
        self._api: MetalApi | None = None
        #: the last device read (or what our last action made of it) and when (monotonic)
        self._device: dict[str, Any] = {}
        self._read_at = -1e9
        self._error: BackendError | None = None  # the last read's failure, cached like a state
        #: the power state our last action leads to (a reboot passes through powering_off)
        self._expect: PowerState | None = None
        self._pxe_booted_at: float | None = None  # a PXE boot we made went active then
        self._pxe_boot_pending = False
        self._console: RemoteConsole | None = None
        self._sos_targets: set[SshTarget] = set()
        #: the device the last boot used (tests and logs)
        self.last_boot_device: BootDevice | None = None

    def __repr__(self) -> str:
        return f"MetalBackend({self.device_id})"

    @property
    def api(self) -> MetalApi:
        """The API client, made on first use (requests is imported only by Metal nodes)."""
        with self._lock:
            if self._api is None:
                from backends.metalapi import MetalApi

                self._api = MetalApi(self.base_url, os.environ.get(self.token_env, ""),
                                     self.token_env, patience=self.api_timeout)
            return self._api

    # -- the device's state -----------------------------------------------------------------
    @property
    def poll_interval(self) -> float:  # type: ignore[override]
        """Short while a transition is under way, so its end is seen soon; long otherwise."""
        with self._lock:
            moving = self._device.get("state") in TRANSITIONS or self._pxe_booted_at is not None
        return self.transition_poll if moving else self.idle_poll

    def _read(self) -> dict[str, Any]:
        """The device, from the cache if it is fresh (a failed read is cached too: a broken
        API costs one `api_timeout` per `state_cache`, not one per caller)."""
        with self._lock:
            if time.monotonic() - self._read_at < self.state_cache:
                if self._error is not None:
                    raise self._error
                return dict(self._device)
        try:
            device = self.api.get_device(self.device_id)
        except BackendError as exc:
            with self._lock:
                self._error, self._read_at = exc, time.monotonic()
            raise
        self._remember(device)
        return device

    def _remember(self, device: dict[str, Any]) -> None:
        with self._lock:
            self._device, self._read_at, self._error = dict(device), time.monotonic(), None

    def _assume(self, **fields: Any) -> None:
        """What our own request just changed, as the API would now say (saves a read)."""
        with self._lock:
            self._device.update(fields)
            self._read_at, self._error = time.monotonic(), None

    def power_state(self) -> PowerState:
        device = self._read()
        state = device.get("state")
        if state in SETTLED:
            with self._lock:
                self._expect = None
            self._after_boot(device)
            return SETTLED[state]
        if state in TRANSITIONS:
            with self._lock:
                return self._expect or TRANSITIONS[state]
        why = NOT_POWER_STATES.get(str(state), "the API reports no power state for it")
        raise BackendError(f"Metal device {self.device_id} is {state!r}: {why}; its power "
                           "cannot be read or switched now")

    # -- power ------------------------------------------------------------------------------
    def power_on(self, boot_device: BootDevice) -> None:
        self._set_boot(boot_device)
        self._act("power_on", "powering_on", PowerState.ON, ("active", "powering_on"))
        self._booting(boot_device)

    def power_off(self) -> None:
        self._act("power_off", "powering_off", PowerState.OFF, ("inactive", "powering_off"))

    def reset(self, boot_device: BootDevice) -> None:
        self._set_boot(boot_device)
        if not self._act("reboot", "powering_off", PowerState.ON, ("powering_on",),
                         quiet=("inactive",)):
            # it was off after all (the API saw it differently than we did): start it
            self._act("power_on", "powering_on", PowerState.ON, ("active", "powering_on"))
        self._booting(boot_device)

    def power_cycle(self, boot_device: BootDevice) -> None:
        self.reset(boot_device)

    def _act(self, action: str, becomes: str, target: PowerState, done: tuple[str, ...],
             quiet: tuple[str, ...] = ()) -> bool:
        """POST the action. A 422 (the state does not allow it) is success when the device is
        in or on its way to the target (`done`); False when it is in a `quiet` state."""
        from backends.metalapi import MetalApiError

        try:
            self.api.action(self.device_id, action)
        except MetalApiError as refused:
            if refused.status != 422:
                raise
            with self._lock:
                self._read_at = -1e9  # read it again: the API disagrees with our cache
            state = self._read().get("state")
            if state in done:
                return True
            if state in quiet:
                return False
            raise BackendError(f"Metal device {self.device_id} is {state}: {refused}") from None
        with self._lock:
            self._expect = target
        self._assume(state=becomes)
        return True

    # -- boot device ------------------------------------------------------------------------
    def _set_boot(self, boot_device: BootDevice) -> None:
        """Make the coming boot PXE (always_pxe) or not. Only a change is sent."""
        pxe = boot_device is BootDevice.PXE
        wanted: dict[str, Any] = {"always_pxe": pxe}
        if pxe and self.ipxe_script_url:
            wanted["ipxe_script_url"] = self.ipxe_script_url
        try:
            current = self._read()
        except BackendError:
            current = {}
        if all(current.get(key) == value for key, value in wanted.items()):
            return
        self._remember(self.api.update_device(self.device_id, **wanted))

    def _booting(self, boot_device: BootDevice) -> None:
        self.last_boot_device = boot_device
        with self._lock:
            self._pxe_boot_pending = boot_device is BootDevice.PXE
            self._pxe_booted_at = None

    def _after_boot(self, device: dict[str, Any]) -> None:
        """With `pxe_clear_after`: clear always_pxe once our PXE boot has been active long
        enough (called on each settled read; one PUT per PXE boot)."""
        if self.pxe_clear_after is None or device.get("state") != "active":
            return
        now = time.monotonic()
        with self._lock:
            if self._pxe_boot_pending:
                self._pxe_boot_pending, self._pxe_booted_at = False, now
            booted = self._pxe_booted_at
            if booted is None or now - booted < self.pxe_clear_after:
                return
            self._pxe_booted_at = None
        if not device.get("always_pxe"):
            return
        try:
            self._remember(self.api.update_device(self.device_id, always_pxe=False))
            log.info("%s: the PXE boot is done: always_pxe cleared", self.node_name)
        except BackendError as exc:  # next read tries again
            with self._lock:
                self._pxe_booted_at = booted
            log.warning("%s: cannot clear always_pxe after the PXE boot: %s", self.node_name,
                        exc)

    # -- the SOS console --------------------------------------------------------------------
    def attach_console(self, output: Callable[[bytes], None]) -> bool:
        if self.sos is None:
            return False
        if self._console is None:
            from backends.sshconsole import RemoteConsole, ssh_channel

            resolve = self._resolve_sos if self.sos.host == SOS_AUTO else None
            self._console = RemoteConsole(self.node_name, ssh_channel(self.sos, None, resolve),
                                          f"SOS console ({self.device_id}@{self.sos.host})")
            if resolve is None:
                self._use_sos(self.sos)
        self._console.start(output)
        return True

    async def _resolve_sos(self) -> SshTarget:
        """The SOS host the API names for this device (`sos_host: auto`)."""
        import asyncio
        from dataclasses import replace

        assert self.sos is not None
        device = await asyncio.get_running_loop().run_in_executor(None, self._read)
        host = device.get("sos")
        if not host:
            raise BackendError(f"the Metal API names no SOS host for {self.device_id}")
        target = replace(self.sos, host=host)
        self._use_sos(target)
        return target

    def _use_sos(self, target: SshTarget) -> None:
        """Count this backend as a user of the SSH connection to `target` (closed with it)."""
        from backends.sshloop import pool

        with self._lock:
            if target in self._sos_targets:
                return
            self._sos_targets.add(target)
        pool.use(target)

    def write_console(self, data: bytes) -> None:
        if self._console is not None:
            self._console.write(data)

    def close(self) -> None:
        if self._console is not None:
            self._console.close()
        with self._lock:
            api, self._api = self._api, None
            targets, self._sos_targets = self._sos_targets, set()
        if targets:
            from backends.sshloop import pool

            for target in targets:
                pool.release(target)
        if api is not None:
            api.close()
