"""A node's power: the state the backend last reported, and actions carried out on the node's
worker (`bmc.power`), never on a front end's thread.

`PowerControl` is part of `Node` (its base class): it uses the node's lock, backend, worker,
store and events, and keeps the power state, the action under way and the backend's fault.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from backends.base import Backend, BackendError, BootDevice, PowerState
from bmc.node_types import ACTION_OPS, ACTION_TARGETS, PowerAction, RestartCause
from bmc.power import BackendUnavailable, NodeBusy, NodeWorker, Unsupported, poller

if TYPE_CHECKING:
    import threading

    from bmc.faults import FaultState
    from bmc.state import NodeState

log = logging.getLogger("bmc.node")

#: seconds between state reads of a failing backend, until it answers again
FAULT_POLL_SECONDS = 2.0
#: how long start-up waits for a polled backend's first power state
INITIAL_READ_SECONDS = 0.5
#: ... and for the first sensors and identity of a backend that reads them from the server
#: (the node's sensor profile is built from them)
INITIAL_DATA_SECONDS = 3.0


class PowerControl:
    """Power state and actions of a `Node` (mixed into it; see the module's docstring)."""

    # what the node provides
    name: str
    backend: Backend
    state: NodeState | None
    worker: NodeWorker
    faults: FaultState | None
    _lock: threading.RLock
    _power: PowerState
    _transition: PowerState | None
    _fault: str | None
    _saved_power: PowerState | None
    _booted: BootDevice | None
    _restart_cause: RestartCause

    if TYPE_CHECKING:  # the node's own (or the other base's): never shadow them at run time
        def build_features(self) -> None: ...
        def _emit(self, kind: str, **detail: Any) -> None: ...
        def _take_boot_device(self) -> BootDevice: ...
        def _initial_reads(self) -> None: ...
        def _refresh_all(self) -> None: ...

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

    @property
    def restart_cause(self) -> RestartCause:
        """Why the server last (re)started (UNKNOWN until it does under our watch)."""
        with self._lock:
            return self._restart_cause

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
