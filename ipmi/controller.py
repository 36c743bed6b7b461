"""State of the management controller that only IPMI sees: watchdog timer, global enables.

Kept per `BmcEndpoint` (not in the node model): Redfish has no view of these, and an IPMI
Cold Reset restarts them while the node keeps running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from backends.base import PowerState
from bmc.node import Node, PowerAction, RestartCause

log = logging.getLogger(__name__)

# watchdog timeout actions (IPMI 2.0 table 27-7, byte 2 bits 2:0)
WD_NO_ACTION, WD_HARD_RESET, WD_POWER_DOWN, WD_POWER_CYCLE = 0, 1, 2, 3
WD_ACTIONS = {
    WD_HARD_RESET: PowerAction.FORCE_RESTART,
    WD_POWER_DOWN: PowerAction.FORCE_OFF,
    WD_POWER_CYCLE: PowerAction.POWER_CYCLE,
}
#: Get BMC Global Enables after a reset: event message buffer and system event logging on
DEFAULT_GLOBAL_ENABLES = 0x0C


@dataclass
class Watchdog:
    """The BMC watchdog timer (IPMI 2.0 section 27), counting in 100 ms ticks."""

    clock: Callable[[], float]
    use: int = 0x04  # byte 1 of Set Watchdog Timer: don't-log bit 7, timer use bits 2:0
    actions: int = 0  # pre-timeout interrupt bits 6:4, timeout action bits 2:0
    pretimeout: int = 0  # seconds
    expired_flags: int = 0  # timer use expiration flags, bits 5:1
    initial: int = 0  # countdown in 100 ms
    configured: bool = False  # Reset Watchdog Timer needs a Set first
    deadline: float | None = None  # monotonic time of expiry while running
    stopped_at: int = 0  # the countdown left when it stopped

    @property
    def running(self) -> bool:
        return self.deadline is not None

    def present(self) -> int:
        """The countdown left, in 100 ms ticks."""
        if self.deadline is None:
            return self.stopped_at
        return max(0, round((self.deadline - self.clock()) * 10))

    def set(self, use: int, actions: int, pretimeout: int, clear_flags: int,
            initial: int) -> None:
        keep_running = bool(use & 0x40) and self.running
        self.use, self.actions, self.pretimeout = use & 0x87, actions & 0x77, pretimeout
        self.expired_flags &= ~clear_flags & 0x3E
        self.initial, self.configured = initial, True
        if keep_running:
            self.deadline = self.clock() + initial / 10
        else:
            self.deadline, self.stopped_at = None, initial

    def reset(self) -> None:
        """(Re)start the countdown from the initial value (Reset Watchdog Timer)."""
        self.deadline = self.clock() + self.initial / 10

    def poll(self, node: Node) -> None:
        """Fire the timeout action if the countdown ran out."""
        if self.deadline is None or self.clock() < self.deadline:
            return
        self.deadline, self.stopped_at = None, 0
        self.expired_flags |= 1 << (self.use & 0x07)
        action = WD_ACTIONS.get(self.actions & 0x07)
        log.info("%s: watchdog expired (action %s)", node.name,
                 action.value if action else "none")
        try:
            if action is not None and node.power_state is PowerState.ON:
                node.submit_power(action, cause=RestartCause.WATCHDOG)  # never wait here
        except Exception:  # a failing backend must not stop the server's sweep loop
            log.exception("%s: watchdog action failed", node.name)


@dataclass
class ControllerState:
    """What an IPMI Cold Reset sets back to its defaults."""

    clock: Callable[[], float]
    watchdog: Watchdog = field(init=False)
    global_enables: int = DEFAULT_GLOBAL_ENABLES
    lan_set_in_progress: int = 0  # LAN configuration parameter 0

    def __post_init__(self) -> None:
        self.watchdog = Watchdog(self.clock)
