"""The node model: one simulated server as its BMC sees it.

Both front ends (`ipmi/`, `redfish/`) call a `Node`; the node calls its backend. State the BMC
itself owns (boot override flags, users, identity) lives here, behind one lock, so a change made
through one protocol is what the other reads next.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any

from backends.base import Backend, BackendError, BootDevice, PowerOp, PowerState, SensorReading
from bmc.console import ConsoleHub
from bmc.power import BackendUnavailable, NodeBusy, NodeWorker, Unsupported, poller
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


#: the backend operations each action may use (the action is offered only if all exist)
ACTION_OPS: dict[PowerAction, frozenset[PowerOp]] = {
    PowerAction.ON: frozenset({PowerOp.ON}),
    PowerAction.FORCE_OFF: frozenset({PowerOp.OFF}),
    PowerAction.GRACEFUL_SHUTDOWN: frozenset({PowerOp.SOFT_OFF}),
    PowerAction.GRACEFUL_RESTART: frozenset({PowerOp.ON, PowerOp.RESET}),
    PowerAction.FORCE_RESTART: frozenset({PowerOp.ON, PowerOp.RESET}),
    PowerAction.NMI: frozenset({PowerOp.NMI}),
    PowerAction.PUSH_POWER_BUTTON: frozenset({PowerOp.ON, PowerOp.SOFT_OFF}),
    PowerAction.POWER_CYCLE: frozenset({PowerOp.ON, PowerOp.CYCLE}),
}
#: where each action takes the server (None: nowhere; "toggle": the power button)
ACTION_TARGETS: dict[PowerAction, PowerState | str | None] = {
    PowerAction.ON: PowerState.ON,
    PowerAction.FORCE_OFF: PowerState.OFF,
    PowerAction.GRACEFUL_SHUTDOWN: PowerState.OFF,
    PowerAction.GRACEFUL_RESTART: PowerState.ON,
    PowerAction.FORCE_RESTART: PowerState.ON,
    PowerAction.NMI: None,
    PowerAction.PUSH_POWER_BUTTON: "toggle",
    PowerAction.POWER_CYCLE: PowerState.ON,
}
#: seconds between state reads of a failing backend, until it answers again
FAULT_POLL_SECONDS = 2.0
#: how long start-up waits for a polled backend's first power state
INITIAL_READ_SECONDS = 0.5
#: ... and for the first sensors and identity of a backend that reads them from the server
#: (the node's sensor profile is built from them)
INITIAL_DATA_SECONDS = 3.0


class RestartCause(IntEnum):
    """Why the server last (re)started; values are IPMI Get System Restart Cause codes."""

    UNKNOWN = 0x0
    CHASSIS_CONTROL = 0x1  # a remote command: IPMI Chassis Control, Redfish Reset
    RESET_BUTTON = 0x2
    POWER_BUTTON = 0x3  # also Redfish PushPowerButton
    WATCHDOG = 0x4
    ALWAYS_RESTORE = 0x6  # power restored, policy always-on
    PREVIOUS_RESTORE = 0x7  # power restored, policy previous state
    SOFT_RESET = 0xA


class PowerRestorePolicy(StrEnum):
    """What the server does when AC power returns; values are Redfish PowerRestorePolicy."""

    ALWAYS_OFF = "AlwaysOff"
    LAST_STATE = "LastState"  # IPMI "previous"
    ALWAYS_ON = "AlwaysOn"


class IdentifyState(StrEnum):
    """The chassis identify LED; values are Redfish IndicatorLED."""

    OFF = "Off"
    TIMED = "Blinking"  # on for an interval (IPMI "temporary (timed) on")
    ON = "Lit"  # on until turned off (IPMI "indefinite on", Chassis Identify force)


@dataclass(frozen=True)
class Identify:
    state: IdentifyState
    remaining: float | None = None  # seconds left when TIMED

    @property
    def active(self) -> bool:
        """Redfish LocationIndicatorActive."""
        return self.state is not IdentifyState.OFF


#: the interval of an IPMI Chassis Identify without one (IPMI 2.0 section 28.5)
DEFAULT_IDENTIFY_SECONDS = 15.0


@dataclass(frozen=True)
class NodeEvent:
    """Something that happened to a node (fed to the SEL, logs and Redfish events)."""

    kind: str  # "power", "boot-override", ...
    detail: dict[str, Any]
    timestamp: float = field(default_factory=time.time)


EventListener = Callable[["Node", NodeEvent], None]

log = logging.getLogger(__name__)


@dataclass
class Identity:
    """What the BMC reports about itself and its server (Get Device ID, Redfish System)."""

    manufacturer: str = "bmc-emulator"
    product: str = "Virtual Server"
    serial: str = ""
    #: IANA enterprise number in Get Device ID: 32473, RFC 5612's "Example Enterprise Number
    #: for Documentation Use" (no vendor's; ipmitool and freeipmi name it), not "Reserved (0)"
    manufacturer_id: int = 32473
    product_id: int = 0x0001
    firmware_version: str = "1.0"
    #: the product part number (FRU); "" = derived from the IDs
    part_number: str = ""


def node_uuid(name: str) -> str:
    """A stable UUID per node name, so a node keeps its identity across restarts."""
    return str(uuidlib.uuid5(uuidlib.NAMESPACE_DNS, f"{name}.bmc-emulator"))


#: the node's BMC features: built together on first use, see `Node.build_features`
FEATURES = frozenset({"sensors", "sel", "inventory", "lockout", "tasks", "system_log", "bios",
                      "secure_boot", "virtual_media", "firmware"})
#: the state store kinds (bmc/state.py) the features keep: bios.BIOS_KIND,
#: virtual_media.MEDIA_KIND, secure_boot.SECURE_BOOT_KIND, lockout.LOCKOUT_KIND
FEATURE_KINDS = frozenset({"bios", "virtual_media", "secure_boot", "lockout"})


class Node:
    """One simulated server. Thread-safe: every public method takes the node's lock."""

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

    def _save_power(self, state: PowerState) -> None:  # with the lock held
        # an action's result is usually the intent saved when it was asked for: no second
        # fsync (it would also hold the store, which the IPMI thread's next save waits for)
        if self.state is not None and self.backend.volatile and state is not self._saved_power:
            self.state.save("power", "state", state.value)
            self._saved_power = state

    def _read_initial_power(self) -> None:
        """The power state at start: asked directly of a backend whose state is its own
        (memory, process, and those that report every change), through the worker with a
        short wait for one that must be polled (a remote API: it may be slow or down)."""
        backend = self.backend
        caps = backend.capabilities
        if caps.sensors or caps.inventory or caps.event_log:
            future = self.worker.submit(self._initial_reads, force=True)
            with contextlib.suppress(TimeoutError):  # they land later (or never: logged)
                future.result(INITIAL_DATA_SECONDS)
            if backend.poll_interval is not None:
                poller.add(id(self), self._poll, backend.poll_interval)
            return
        if backend.poll_interval is None:
            try:
                self._power = backend.power_state()
            except BackendError as exc:
                self._failed("power state", exc)
            return
        future = self.worker.submit(self._refresh, force=True)
        with contextlib.suppress(TimeoutError):  # the refresh lands later
            future.result(INITIAL_READ_SECONDS)
        poller.add(id(self), self._poll, backend.poll_interval)

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

    # -- power ------------------------------------------------------------------------------
    @property
    def power_state(self) -> PowerState:
        """What the backend last reported: instant, never a backend call."""
        return self._power

    @property
    def power_transition(self) -> PowerState | None:
        """The state an action under way is taking the server to (None: none under way)."""
        return self._transition

    @property
    def backend_fault(self) -> str | None:
        """Why the backend's last call failed, until a call succeeds again (None: healthy)."""
        return self._fault

    def supports(self, action: PowerAction) -> bool:
        """The backend has every power operation `action` may need."""
        return ACTION_OPS[action] <= self.backend.capabilities.power

    def submit_power(self, action: PowerAction, *,
                     cause: RestartCause | None = None) -> Future[None]:
        """Queue a power action on the node's worker and return at once.

        The Future ends when the backend has carried it out (BackendError if it failed).
        Raises Unsupported (no such capability), BackendUnavailable (the backend is failing)
        or NodeBusy (too many actions waiting) instead of queueing.
        """
        if not self.supports(action):
            raise Unsupported(f"{action.value} is not supported by the "
                              f"{self.backend.kind or 'node'}'s backend")
        injected = self.faults
        if injected is not None and injected.faults.stuck_power:
            return injected.stuck_action(action.value)  # accepted, never carried out
        fault = self._fault
        if fault is not None:
            raise BackendUnavailable(fault)
        self.build_features()  # before the change, so the sensors and the SEL see it happen
        with self._lock:  # shown (PoweringOn/Off) from now until the queue has run dry
            target = ACTION_TARGETS.get(action, "toggle")
            if target == "toggle":  # the power button: on when off, off when on
                target = PowerState.OFF if self._power is PowerState.ON else PowerState.ON
            previous = self._transition
            if isinstance(target, PowerState):
                self._transition = target
                # the intent, before the client hears "accepted" (IPMI answers at once)
                self._save_power(target)
        try:
            return self.worker.submit(lambda: self._carry_out(action, cause))
        except NodeBusy:
            with self._lock:
                self._transition = previous
            raise

    def power(self, action: PowerAction, *, cause: RestartCause | None = None,
              timeout: float | None = None) -> None:
        """Carry out a power action and wait for it (BackendError if the backend failed).

        For callers that may block (tests, scripts); front ends use `submit_power`.
        Restarts from Off power the server on. If the server (re)starts, `cause` (default:
        from the action) is what Get System Restart Cause reports next.
        """
        self.submit_power(action, cause=cause).result(timeout)

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until the actions queued so far are carried out (False: timed out)."""
        return self.worker.wait_idle(timeout)

    def _carry_out(self, action: PowerAction, cause: RestartCause | None) -> None:
        """Run `action` against the backend: on the node's worker, never with the lock held
        (a backend call may take seconds, and readers of the node must not wait for it)."""
        backend = self.backend
        self._booted = None
        try:
            before = backend.power_state()
            is_on = before is PowerState.ON
            match action:
                case PowerAction.ON:
                    if not is_on:
                        backend.power_on(self._take_boot_device())
                case PowerAction.FORCE_OFF:
                    backend.power_off()
                case PowerAction.GRACEFUL_SHUTDOWN:
                    if is_on:
                        backend.soft_off()
                case PowerAction.PUSH_POWER_BUTTON:
                    if is_on:
                        backend.soft_off()
                    else:
                        backend.power_on(self._take_boot_device())
                case PowerAction.FORCE_RESTART | PowerAction.GRACEFUL_RESTART:
                    if is_on:
                        backend.reset(self._take_boot_device())
                    else:
                        backend.power_on(self._take_boot_device())
                case PowerAction.POWER_CYCLE:
                    if is_on:
                        backend.power_cycle(self._take_boot_device())
                    else:
                        backend.power_on(self._take_boot_device())
                case PowerAction.NMI:
                    if is_on:
                        backend.nmi()
            after = backend.power_state()
        except BackendError as exc:
            self._failed(action.value, exc)
            raise
        finally:
            if self.worker.pending() == 0:
                self._transition = None
        restarts = (PowerAction.FORCE_RESTART, PowerAction.GRACEFUL_RESTART,
                    PowerAction.POWER_CYCLE)
        with self._lock:
            self._power = after
            self._save_power(after)
            self._fault = None
            if after is PowerState.ON and (not is_on or action in restarts):
                default = (RestartCause.POWER_BUTTON if action is PowerAction.PUSH_POWER_BUTTON
                           else RestartCause.CHASSIS_CONTROL)
                self._restart_cause = cause or default
            booted = self._booted
        # boot_device is set only if the server booted (None: it did not), for BIOS & co.
        self._emit("power", action=action.value, before=before.value, after=after.value,
                   boot_device=booted.value if booted is not None else None)

    def _failed(self, what: str, exc: BackendError) -> None:
        """A backend call failed: remember why (actions are refused until it recovers), log
        it, and poll the backend until it answers again."""
        first = self._fault is None
        self._fault = str(exc) or type(exc).__name__
        log.warning("%s: backend failed (%s): %s", self.name, what, self._fault)
        if first:
            self._emit("backend-failed", action=what, error=self._fault)
        poller.add(id(self), self._poll, FAULT_POLL_SECONDS)

    def _poll(self) -> float | None:
        """Poller thread: queue a state refresh; the seconds until the next (None: stop)."""
        if not self.worker.busy:
            try:
                self.worker.submit(self._refresh_all, force=True)
            except NodeBusy:  # closing
                return None
        if self._fault is not None:
            return FAULT_POLL_SECONDS
        return self.backend.poll_interval

    def _refresh(self) -> None:
        """Worker: read the backend's power state; a change is news (made from outside)."""
        try:
            state = self.backend.power_state()
        except BackendError as exc:
            self._failed("power state", exc)
            return
        recovered = self._fault is not None
        self._fault = None
        if recovered:
            log.info("%s: backend answers again", self.name)
            self._emit("backend-recovered")
        self._power_changed(state, "seen by the BMC")

    # -- the server's own sensors, event log and identity (backend capabilities) -----------
    def _initial_reads(self) -> None:
        """Worker, at start: sensors and identity first (the features are built from them,
        possibly by the power state's news), then the power state, then the event log."""
        self._read_sensors()
        self._read_inventory()
        if self.backend.poll_interval is None:
            try:
                self._power = self.backend.power_state()
            except BackendError as exc:
                self._failed("power state", exc)
        else:
            self._refresh()
        self._read_log()

    def _refresh_all(self) -> None:
        """Worker, each poll: the power state, then (if it answers) sensors and event log."""
        self._refresh()
        if self._fault is None:
            self._read_sensors()
            self._read_log()

    def _read_sensors(self) -> None:
        if not self.backend.capabilities.sensors:
            return
        try:
            readings = self.backend.read_sensors()
        except BackendError as exc:
            log.warning("%s: reading the server's sensors failed: %s", self.name, exc)
            readings = None
        if self._backend_readings is None:
            self._backend_readings = readings
        if self._features_state == "built" and self.sensors.external:
            # a failed read leaves no reading rather than a stale one
            values = (_sensor_values(readings) if readings is not None
                      else dict.fromkeys((s.name for s in self.sensors.specs), None))
            self.sensors.feed(values)

    def _read_inventory(self) -> None:
        if not self.backend.capabilities.inventory:
            return
        try:
            info = self.backend.read_inventory()
        except BackendError as exc:
            log.warning("%s: reading the server's identity failed: %s", self.name, exc)
            return
        if info is None:
            return
        known = {key: value for key, value in (
            ("manufacturer", info.manufacturer), ("product", info.product),
            ("serial", info.serial), ("part_number", info.part_number)) if value}
        with self._lock:
            self.identity = replace(self.identity, **known)

    def _read_log(self) -> None:
        if not self.backend.capabilities.event_log:
            return
        try:
            records = self.backend.read_log(self._log_cursor)
        except BackendError as exc:
            log.warning("%s: reading the server's event log failed: %s", self.name, exc)
            return
        if not records:
            return
        from bmc.sel import forward_record

        self.build_features()
        for record in records:
            forward_record(self.sel, record, self.sensors)
        self._log_cursor = records[-1].id

    @property
    def restart_cause(self) -> RestartCause:
        """Why the server last (re)started (UNKNOWN until it does under our watch)."""
        with self._lock:
            return self._restart_cause

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

    def _power_changed(self, state: PowerState, reason: str) -> None:
        """The backend saw the server's power change without us: it stopped by itself (its
        process exited, ...) or was switched from outside (`docker start`, virsh)."""
        with self._lock:
            if self._power is state:
                return  # already known (our own action's result, or an earlier report)
            self._power = state
            self._save_power(state)
        action = "ServerExited" if state is PowerState.OFF else "ServerStarted"
        before = PowerState.ON if state is PowerState.OFF else PowerState.OFF
        self._emit("power", action=action, before=before.value, after=state.value,
                   boot_device=None, reason=reason)

    def close(self) -> None:
        poller.remove(id(self))
        self.worker.close()
        tasks = self.__dict__.get("tasks")  # not built: nothing to stop
        if tasks is not None:
            tasks.close()
        self.console.close()
        self.backend.close()


def _sensor_values(readings: list[SensorReading]) -> dict[str, float | None]:
    """Readings by the names the node's sensor profile gives them (16 characters at most)."""
    return {reading.name[:16]: reading.value for reading in readings}
