"""The `redfish` backend: the server is a real one, behind a Redfish-only BMC (via sushy).

The reverse of the `ipmi` backend: IPMI clients (ironic's ipmitool driver, MAAS, scripts) and
our own Redfish service in front of a BMC that only speaks Redfish. Power goes out as
`ComputerSystem.Reset`, the boot device as a one-time `Boot` override (PATCH, with the ETag
sushy reads) right before the power-on, reset or cycle that uses it.

sushy does the Redfish: sessions (or Basic auth), re-login when a session expires, ETags,
error bodies. All of it runs on one worker thread per backend, so every call here has a hard
deadline (`timeout`, 2 s by default) even where sushy itself would retry or wait: a call that
does not finish in time is a BackendError now, and the worker finishes it in the background
(sushy's own timeouts, set to the same value, bound that).

What the BMC behind offers decides what works: once connected, `capabilities` lists only the
power operations and boot targets its system offers, so the front ends refuse the others at
once. A reset type it does not list is replaced by an equivalent where one exists (PowerCycle
by ForceRestart, or ForceOff then On), otherwise the call is a BackendError naming what it
does offer; the same for boot targets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from backends.base import (
    Backend,
    BackendError,
    BootDevice,
    Capabilities,
    PowerOp,
    PowerState,
)
from backends.credentials import PasswordSource
from backends.settings import seconds as _seconds

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Redfish PowerState -> ours; a transition counts as where it is going
_POWER = {"On": PowerState.ON, "PoweringOn": PowerState.ON, "Paused": PowerState.ON,
          "Off": PowerState.OFF, "PoweringOff": PowerState.OFF}


class RedfishProxyBackend(Backend):
    kind = "redfish"

    def __init__(self, *, url: str, system: str | None = None, username: str = "",
                 password_env: str | None = None, password_file: str | None = None,
                 auth: Literal["auto", "session", "basic"] = "auto", verify_tls: bool = True,
                 ca_file: str | None = None, timeout: float = 2.0,
                 poll_interval: float | None = 10.0, node_name: str = "") -> None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url: must be the BMC's http:// or https:// base URL, "
                             f"got {url!r}")
        if parts.username or parts.password:
            raise ValueError("url: must not contain credentials (use username and "
                             "password_env or password_file)")
        if parts.path not in ("", "/"):
            raise ValueError("url: the base URL only (scheme, host, port): the service root "
                             "is found at /redfish/v1")
        if system is not None and (not isinstance(system, str) or not system.strip("/")):
            raise ValueError(f"system: must be the ComputerSystem's Id or path, got {system!r}")
        if not isinstance(username, str):
            raise TypeError("username: must be a string")
        if auth not in ("auto", "session", "basic"):
            raise ValueError(f"auth: must be auto, session or basic, got {auth!r}")
        if not isinstance(verify_tls, bool):
            raise TypeError("verify_tls: must be true or false")
        if ca_file is not None and not isinstance(ca_file, str):
            raise TypeError("ca_file: must be a file's path")
        self.timeout = _seconds(timeout, "timeout", 0.2, 60)
        if poll_interval is not None:
            poll_interval = _seconds(poll_interval, "poll_interval", 1, 3600)
        self.url = f"{parts.scheme}://{parts.netloc}"
        self.system_id = system
        self.username = username
        self.password = PasswordSource.from_settings(password_env, password_file)
        self.auth = auth
        self.verify: bool | str = ca_file if ca_file is not None else verify_tls
        self.node_name = node_name
        self.poll_interval = poll_interval
        self.capabilities = Capabilities(virtual_media=False)
        #: sushy's objects: made, used and dropped on the worker thread only
        self._root: Any = None
        self._system: Any = None
        self._deadline = 0.0  # of the call the worker is running
        self._worker = ThreadPoolExecutor(max_workers=1,
                                          thread_name_prefix=f"redfish-proxy-{node_name}")
        self._closed = threading.Event()
        #: the device the last boot asked the BMC for (tests and logs)
        self.last_boot_device: BootDevice | None = None

    def __repr__(self) -> str:
        return f"RedfishProxyBackend({self.url}, user {self.username!r})"

    # -- power --------------------------------------------------------------------------------
    def power_state(self) -> PowerState:
        return self._call("power state", self._read_power)

    def power_on(self, boot_device: BootDevice) -> None:
        self._call("power on", lambda: self._boot_and_reset(boot_device, "On", "ForceOn"))

    def power_off(self) -> None:
        self._call("power off", lambda: self._reset("ForceOff"))

    def soft_off(self) -> None:
        self._call("soft off", lambda: self._reset("GracefulShutdown"))

    def reset(self, boot_device: BootDevice) -> None:
        self._call("reset", lambda: self._boot_and_reset(
            boot_device, "ForceRestart", "GracefulRestart", "PowerCycle", fallback=self._off_on))

    def power_cycle(self, boot_device: BootDevice) -> None:
        # a restart is the nearest thing where the BMC has no PowerCycle (sushy-emulator)
        self._call("power cycle", lambda: self._boot_and_reset(
            boot_device, "PowerCycle", "ForceRestart", fallback=self._off_on))

    def nmi(self) -> None:
        self._call("NMI", lambda: self._reset("Nmi"))

    def close(self) -> None:
        self._closed.set()
        if self._root is not None:  # log out: best effort, briefly (many nodes stop at once)
            try:
                self._call("log out", self._logout, timeout=min(self.timeout, 0.5))
            except BackendError as exc:
                log.debug("%s: %s", self.node_name, exc)
        self._worker.shutdown(wait=False, cancel_futures=True)

    # -- the deadline ---------------------------------------------------------------------------
    def _call(self, what: str, work: Callable[[], T], timeout: float | None = None) -> T:
        """Run `work` on the worker; its result within `timeout` seconds or a BackendError."""
        if self._closed.is_set() and what != "log out":
            raise BackendError("the backend is closed")
        timeout = timeout or self.timeout
        started = time.monotonic()
        future: Future[T] = self._worker.submit(self._guarded, work, started + timeout)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()  # if it has not started (a previous call still holds the worker)
            raise BackendError(f"{self.url}: {what}: no answer within {timeout:g} s"
                               ) from None
        except BackendError as exc:
            log.debug("%s: %s failed after %.2f s: %s", self.node_name, what,
                      time.monotonic() - started, exc)
            raise BackendError(f"{self.url}: {what}: {exc}") from None

    def _guarded(self, work: Callable[[], T], deadline: float) -> T:
        """`work` with sushy's exceptions made BackendErrors (on the worker thread)."""
        from sushy import exceptions

        self._deadline = deadline
        try:
            return work()
        except exceptions.AccessError as exc:
            self._forget()  # a new session (or a rotated password) on the next call
            raise BackendError(f"access denied (HTTP {exc.status_code}: user name or password, "
                               "or the account's privileges)") from None
        except exceptions.ConnectionError as exc:
            self._forget()
            raise BackendError(f"cannot connect: {_root_cause(exc)}") from None
        except exceptions.HTTPError as exc:
            raise BackendError(f"the BMC answered HTTP {exc.status_code}: "
                               f"{exc.detail or exc.code}") from None
        except exceptions.SushyError as exc:
            self._forget()
            raise BackendError(str(exc)) from None

    # -- the work (on the worker thread) --------------------------------------------------------
    def _connect(self) -> Any:
        if self._system is not None:
            return self._system
        import sushy
        from sushy import auth as sushy_auth

        password = self.password.read()
        method = {"auto": sushy_auth.SessionOrBasicAuth, "session": sushy_auth.SessionAuth,
                  "basic": sushy_auth.BasicAuth}[self.auth]
        # one try each: the deadline, not sushy's retry loop (3 x 2 s), bounds a dead BMC
        root = sushy.Sushy(self.url, auth=method(self.username, password), verify=self.verify,
                           server_side_retries=1, server_side_retries_delay=0,
                           read_timeout=self.timeout, connect_timeout=self.timeout)
        self._root = root
        if self.system_id is None:
            try:
                self._system = root.get_system()
            except sushy.exceptions.UnknownDefaultError:
                members = root.get_system_collection().members_identities
                ids = [m.rstrip("/").rsplit("/", 1)[-1] for m in members]
                raise BackendError(f"the BMC has {len(ids)} systems ({', '.join(ids)}): say "
                                   "which one with `system:`") from None
        else:
            path = (self.system_id if self.system_id.startswith("/")
                    else f"{root.get_system_collection().path.rstrip('/')}/{self.system_id}")
            self._system = root.get_system(path)
        self.capabilities = _capabilities_of(self._system)
        log.info("%s: connected to %s, system %s", self.node_name, self.url,
                 self._system.path)
        return self._system

    def _forget(self) -> None:
        self._root = self._system = None

    def _logout(self) -> None:
        root, self._root, self._system = self._root, None, None
        if root is not None and getattr(root, "_auth", None) is not None:
            root._auth.close()
            root._auth = None  # sushy's __del__ would log out again

    def _read_power(self) -> PowerState:
        system = self._connect()
        system.refresh(force=True)
        state = _POWER.get(str(getattr(system.power_state, "value", system.power_state)))
        if state is None:
            raise BackendError(f"the system reports PowerState {system.power_state!r}")
        return state

    def _boot_and_reset(self, boot_device: BootDevice, *reset_types: str,
                        fallback: Callable[[], None] | None = None) -> None:
        system = self._connect()
        system.refresh(force=True)
        if boot_device is not BootDevice.NONE:
            self._set_boot(system, boot_device)
            self.last_boot_device = boot_device
        self._reset(*reset_types, fallback=fallback, refresh=False)

    def _set_boot(self, system: Any, boot_device: BootDevice) -> None:
        import sushy

        allowed = {str(getattr(v, "value", v)) for v in
                   system.get_allowed_system_boot_source_values()}
        if boot_device.value not in allowed:
            raise BackendError(f"the BMC cannot boot the system from {boot_device.value} "
                               f"(it offers {', '.join(sorted(allowed))})")
        mode: Any = (sushy.BootSourceOverrideMode.UEFI if self.boot_uefi
                     else sushy.BootSourceOverrideMode.LEGACY)
        # the mode only where the BMC has one and it differs: a BMC without the property
        # (sushy-emulator on libvirt) fails a PATCH that names it
        current = system.boot.mode if system.boot is not None else None
        if current is None or str(getattr(current, "value", current)) == mode.value:
            mode = None
        system.set_system_boot_options(sushy.BootSource(boot_device.value),
                                       enabled=sushy.BootSourceOverrideEnabled.ONCE, mode=mode)

    def _reset(self, *reset_types: str, fallback: Callable[[], None] | None = None,
               refresh: bool = True) -> None:
        import sushy

        system = self._connect()
        if refresh:
            system.refresh(force=True)
        allowed = {str(getattr(v, "value", v)) for v in system.get_allowed_reset_system_values()}
        chosen = next((t for t in reset_types if t in allowed), None)
        if chosen is None:
            if fallback is not None:
                fallback()
                return
            raise BackendError(f"the BMC does not offer {' or '.join(reset_types)} "
                               f"(it offers {', '.join(sorted(allowed)) or 'nothing'})")
        system.reset_system(sushy.ResetType(chosen))
        log.info("%s: %s: %s", self.node_name, self.url, chosen)

    def _off_on(self) -> None:
        """A cycle where the BMC offers no restart: off, then (once it is off) on."""
        self._reset("ForceOff", refresh=False)
        while self._read_power() is not PowerState.OFF:
            if time.monotonic() > self._deadline - 0.2:
                raise BackendError("the BMC has no restart, and did not power off in time "
                                   "for the power-on that would complete the cycle")
            time.sleep(0.1)
        self._reset("On", "ForceOn", refresh=False)


#: our power operations and the reset types that carry each out, in order of preference
_RESETS = {
    PowerOp.ON: ("On", "ForceOn"),
    PowerOp.OFF: ("ForceOff",),
    PowerOp.SOFT_OFF: ("GracefulShutdown",),
    PowerOp.RESET: ("ForceRestart", "GracefulRestart", "PowerCycle"),
    PowerOp.CYCLE: ("PowerCycle", "ForceRestart"),
    PowerOp.NMI: ("Nmi",),
}


def _capabilities_of(system: Any) -> Capabilities:
    """What the front ends may offer: what this BMC's system lists (reset types, boot
    targets), so that a client is refused at once rather than failing at the BMC later."""
    resets = {str(getattr(v, "value", v)) for v in system.get_allowed_reset_system_values()}
    power = {op for op, types in _RESETS.items() if resets.intersection(types)}
    if {"ForceOff", "On"} <= resets or {"ForceOff", "ForceOn"} <= resets:
        power |= {PowerOp.RESET, PowerOp.CYCLE}  # as off, then on
    targets = {str(getattr(v, "value", v)) for v in
               system.get_allowed_system_boot_source_values()}
    devices = frozenset(d for d in BootDevice if d.value in targets)
    return Capabilities(power=frozenset(power), boot_devices=devices, virtual_media=False)


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a connection failure (refused, timed out, TLS), briefly."""
    text = str(exc)
    for reason in ("Connection refused", "timed out", "Name or service not known",
                   "CERTIFICATE_VERIFY_FAILED", "No route to host"):
        if reason in text:
            return reason
    return text[:200]


