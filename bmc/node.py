"""The node model: one simulated server as its BMC sees it.

Both front ends (`ipmi/`, `redfish/`) call a `Node`; the node calls its backend. State the BMC
itself owns (boot override flags, users, identity) lives here, behind one lock, so a change made
through one protocol is what the other reads next.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from backends.base import Backend, BootDevice, PowerState, SensorReading
from bmc.console import ConsoleHub
from bmc.node_power import (
    FAULT_POLL_SECONDS,
    INITIAL_DATA_SECONDS,
    INITIAL_READ_SECONDS,
    PowerControl,
)
from bmc.node_reads import ForwardedReads, _sensor_values
from bmc.node_types import (
    ACTION_OPS,
    ACTION_TARGETS,
    DEFAULT_IDENTIFY_SECONDS,
    BootOverride,
    EventListener,
    Identify,
    IdentifyState,
    Identity,
    NodeEvent,
    PowerAction,
    PowerRestorePolicy,
    RestartCause,
    node_uuid,
)
from bmc.power import NodeWorker, poller
from bmc.users import UserStore

if TYPE_CHECKING:
    from bmc.bios import Bios
    from bmc.faults import FaultState
    from bmc.firmware import Firmware
    from bmc.inventory import Inventory
    from bmc.lockout import AccountLockout
    from bmc.logs import SystemLog
    from bmc.secure_boot import SecureBoot
    from bmc.sel import SavedSel, SystemEventLog
    from bmc.sensors import SensorModel, SensorSpec
    from bmc.state import NodeState
    from bmc.tasks import TaskStore
    from bmc.virtual_media import VirtualMedia

#: re-exported: the front ends and features import the node's values from here
__all__ = ["ACTION_OPS", "ACTION_TARGETS", "DEFAULT_IDENTIFY_SECONDS", "FAULT_POLL_SECONDS",
           "INITIAL_DATA_SECONDS", "INITIAL_READ_SECONDS", "BootOverride", "EventListener",
           "Identify", "IdentifyState", "Identity", "Node", "NodeEvent", "PowerAction",
           "PowerRestorePolicy", "RestartCause", "node_uuid"]

log = logging.getLogger(__name__)


#: the node's BMC features: built together on first use, see `Node.build_features`
FEATURES = frozenset({"sensors", "sel", "inventory", "lockout", "tasks", "system_log", "bios",
                      "secure_boot", "virtual_media", "firmware"})
#: the state store kinds (bmc/state.py) the features keep: bios.BIOS_KIND,
#: virtual_media.MEDIA_KIND, secure_boot.SECURE_BOOT_KIND, lockout.LOCKOUT_KIND
FEATURE_KINDS = frozenset({"bios", "virtual_media", "secure_boot", "lockout"})


class Node(PowerControl, ForwardedReads):
    """One simulated server. Thread-safe: every public method takes the node's lock.

    Its power (bmc/node_power.py) and what it reads from the server itself
    (bmc/node_reads.py) are in base classes of their own; the values it deals in are in
    bmc/node_types.py (and importable from here)."""

    # the BMC features (`FEATURES`), each in its own module; attributes once built
    sensors: SensorModel
    sel: SystemEventLog
    inventory: Inventory
    lockout: AccountLockout
    tasks: TaskStore
    system_log: SystemLog
    bios: Bios
    secure_boot: SecureBoot
    virtual_media: VirtualMedia
    firmware: Firmware
    #: injected faults (bmc/faults.py); None, the default, costs the front ends one check
    faults: FaultState | None = None

    def __init__(self, name: str, backend: Backend, users: UserStore | None = None,
                 uuid: str | None = None, identity: Identity | None = None,
                 sensors: list[SensorSpec] | None = None,
                 console: ConsoleHub | None = None, state: NodeState | None = None) -> None:
        self.name = name
        #: what survives a restart (bmc/state.py); None: everything lives in memory only
        self.state = state
        self.backend = backend
        # the serial console (IPMI SOL, WebSocket), and news of the server stopping by itself
        self.console = console or ConsoleHub(backend, name=name)
        backend.on_power_change = self._power_changed
        self.users = users if users is not None else UserStore()
        self.uuid = uuid or node_uuid(name)
        self.identity = identity or Identity(serial=self.default_serial(name, uuid))
        self._lock = threading.RLock()
        self._boot = BootOverride()
        self._listeners: list[EventListener] = []
        self._restart_cause = RestartCause.UNKNOWN
        self._restore_policy = PowerRestorePolicy.ALWAYS_OFF
        self._identify_until: float | None = 0.0  # monotonic deadline; None = indefinitely
        self.clock: Callable[[], float] = time.monotonic  # identify deadlines; tests replace it
        self._booted: BootDevice | None = None  # device of the boot the current action made
        self._sensor_specs = sensors
        self._features_lock = threading.RLock()
        self._features_state = "missing"  # "building", "built"
        # power: what the backend last said, and the calls to it, off the front ends' threads
        self.worker = NodeWorker(name)
        self._power = PowerState.OFF
        self._transition: PowerState | None = None
        self._fault: str | None = None
        # the server's own sensors and event log, for a backend that reads them (capabilities)
        self._backend_readings: list[SensorReading] | None = None
        self._log_cursor: str | None = None
        self._saved_sel: SavedSel | None = None  # read at start, used when the SEL is built
        self._build_at_start = False
        self._saved_power: PowerState | None = None  # what the store holds (memory nodes)
        try:
            self._restore()
            self._read_initial_power()
            if self._build_at_start:
                self.build_features()
        except BaseException:  # unreadable saved state: the start fails, no thread left
            self.worker.close()
            raise
        if self._power is not PowerState.OFF or self._fault is not None:
            # a running server can stop by itself: the SEL must have seen it running
            self.build_features()

    def _restore(self) -> None:
        """Take back the saved boot override, and the power of a backend that keeps none."""
        if self.state is None:
            return
        from bmc.sel import read_saved

        self._saved_sel = read_saved(self.state)  # an unreadable row stops the start, here
        self.console.attach_state(self.state)  # the SOL settings
        # features with saved state are built at start, so that theirs is read (and checked)
        # before the node serves; the others stay lazy (a large fleet starts fast)
        self._build_at_start = (self._saved_sel.meta is not None
                                or bool(self.state.kinds() & FEATURE_KINDS))
        saved = self.state.get("boot", "override")
        if saved is not None:
            try:
                self._boot = BootOverride(BootDevice(saved["device"]),
                                          bool(saved["persistent"]), bool(saved["uefi"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise self.state.error("boot", "override", repr(exc)) from exc
        saved = self.state.get("power", "state") if self.backend.volatile else None
        if saved is not None:
            try:
                power = PowerState(saved)
            except ValueError as exc:
                raise self.state.error("power", "state", repr(exc)) from exc
            self._saved_power = power
            if power is not self.backend.power_state():
                # the server "kept running" while the emulator was down: no boot, no SEL
                if power is PowerState.ON:
                    self.backend.power_on(BootDevice.NONE)
                else:
                    self.backend.power_off()

    def _save_boot(self) -> None:  # with the lock held: saves land in the order of changes
        if self.state is not None:
            boot = self._boot
            self.state.save("boot", "override", {"device": boot.device.value,
                                                 "persistent": boot.persistent,
                                                 "uefi": boot.uefi})

    def build_features(self) -> None:
        """Build the BMC features now (sensors, SEL, logs, BIOS, ...) unless they are built.

        They are built on first use, or before the node's state first changes (every state
        change goes through the node while the server is off), so whatever follows the node's
        events sees all of them. Building them late lets `serve` answer IPMI before their
        modules are even imported; `serve` builds them once both front ends answer.
        """
        if self._features_state == "built":
            return
        with self._features_lock:
            if self._features_state != "missing":
                return  # built meanwhile, or being built by this very thread
            self._features_state = "building"
            from bmc.bios import Bios
            from bmc.firmware import Firmware
            from bmc.inventory import default_inventory
            from bmc.lockout import AccountLockout
            from bmc.logs import SystemLog
            from bmc.secure_boot import SecureBoot
            from bmc.sel import SystemEventLog, record_node_events
            from bmc.sensors import SensorModel
            from bmc.tasks import TaskStore
            from bmc.virtual_media import VirtualMedia

            # sensors (default profile unless `sensors`) and the SEL, which logs power actions
            # and threshold crossings; FRU data comes from bmc.fru.node_fru(node)
            if self.backend.capabilities.sensors:  # the server's own sensors, as first read
                from bmc.sensors import profile_from_readings

                readings = self._backend_readings or []
                if self._backend_readings is None:
                    log.warning("%s: the server's sensors were not read yet: none shown",
                                self.name)
                self.sensors = SensorModel(profile_from_readings(readings), seed=self.name,
                                           powered=lambda: self.power_state is PowerState.ON,
                                           external=True)
                self.sensors.feed(_sensor_values(readings))
            else:
                self.sensors = SensorModel(self._sensor_specs, seed=self.name,
                                           powered=lambda: self.power_state is PowerState.ON)
            self.sel = SystemEventLog(refresh=self.sensors.poll)
            if self.state is not None:
                self.sel.attach(self.state, self._saved_sel)
                self._saved_sel = None
            record_node_events(self)
            # the features behind Redfish; most follow the node's events (Redfish's event
            # service, redfish.event_service, listens to them once a client asks for it)
            self.inventory = default_inventory(self.name)
            self.lockout = AccountLockout()
            if self.state is not None:
                self.lockout.attach(self.state)
            self.tasks = TaskStore()
            self.system_log = SystemLog(self)
            self.bios = Bios(self)
            self.secure_boot = SecureBoot(self)
            self.virtual_media = VirtualMedia(self)
            self.firmware = Firmware(self, self.tasks)
            self._features_state = "built"

    def __getattr__(self, name: str) -> Any:
        # only called for attributes not set: a feature before it is built
        if name in FEATURES and "_features_lock" in self.__dict__:
            self.build_features()
            if name in self.__dict__:
                return self.__dict__[name]
            raise AttributeError(f"node feature {name!r} used while being built (or after "
                                 "building failed)")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @staticmethod
    def default_serial(name: str, uuid: str | None = None) -> str:
        """The serial number a node reports unless its config names one."""
        return f"SN-{(uuid or node_uuid(name))[:8].upper()}"

    # -- events -----------------------------------------------------------------------------
    def subscribe(self, listener: EventListener) -> None:
        self.build_features()  # they listen first, as when they were built with the node
        self._listeners.append(listener)

    def _emit(self, kind: str, **detail: Any) -> None:
        self.build_features()  # they follow events: they must exist before the first one
        event = NodeEvent(kind, detail)
        for listener in list(self._listeners):
            listener(self, event)

    # -- power restore policy ---------------------------------------------------------------
    @property
    def power_restore_policy(self) -> PowerRestorePolicy:
        with self._lock:
            return self._restore_policy

    def set_power_restore_policy(self, policy: PowerRestorePolicy | str) -> None:
        """Set the policy (a Redfish name is fine: "AlwaysOn", "AlwaysOff", "LastState")."""
        policy = PowerRestorePolicy(policy)  # ValueError for an unknown name
        with self._lock:
            self._restore_policy = policy
        self._emit("power-restore-policy", policy=policy.value)

    # -- chassis identify (IPMI Chassis Identify, Redfish IndicatorLED) ---------------------
    @property
    def identify(self) -> Identify:
        with self._lock:
            until = self._identify_until
            if until is None:
                return Identify(IdentifyState.ON)
            remaining = until - self.clock()
            if remaining <= 0:
                return Identify(IdentifyState.OFF)
            return Identify(IdentifyState.TIMED, remaining)

    def set_identify(self, seconds: float | None) -> Identify:
        """Light the identify LED for `seconds` (0 = turn it off, None = until turned off)."""
        with self._lock:
            if seconds is None:
                self._identify_until = None
            else:
                self._identify_until = self.clock() + seconds if seconds > 0 else 0.0
        state = self.identify
        self._emit("identify", state=state.state.value, seconds=seconds)
        return state

    @property
    def bmc_mac(self) -> str:
        """The BMC's MAC address: stable per node, locally administered, unicast."""
        digest = bytearray(hashlib.sha256(self.uuid.encode()).digest()[:6])
        digest[0] = (digest[0] & 0xFC) | 0x02
        return ":".join(f"{b:02x}" for b in digest)

    def _take_boot_device(self) -> BootDevice:
        """The device this boot uses; a one-time override is consumed by it."""
        with self._lock:
            override = self._boot
            self._booted = override.device
            self.backend.boot_uefi = override.uefi  # the firmware's mode for this boot
            if not override.persistent and override.device is not BootDevice.NONE:
                self._boot = BootOverride(uefi=override.uefi)
                self._save_boot()
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
            self._save_boot()
            boot = self._boot
        self._emit("boot-override", device=boot.device.value, persistent=boot.persistent,
                   uefi=boot.uefi)
        return boot

    @property
    def last_boot_media(self) -> str | None:
        """The virtual media image URL the last boot used (None: it booted no media)."""
        return self.virtual_media.last_boot_media

    def close(self) -> None:
        poller.remove(id(self))
        self.worker.close()
        tasks = self.__dict__.get("tasks")  # not built: nothing to stop
        if tasks is not None:
            tasks.close()
        self.console.close()
        self.backend.close()
