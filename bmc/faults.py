"""Fault injection: a node's BMC made slow, lossy, erroring, stuck or unreachable on purpose.

For people testing Ironic, agents and platforms against misbehaving BMCs. A node's `Faults` come
from its config (`faults:`, or `defaults.faults`) or from the management API while it runs
(`bmc-emulator nodes faults NAME ...`). Off by default: a node without faults has
`node.faults is None`, and that one attribute check is all the front ends pay.

What each fault does (the front ends carry them out; this module decides):

- `latency`: seconds (or a range "0.2-1.5", each request drawing from it) before the BMC
  answers. IPMI datagrams are held by the IPMI server's loop and handled when due, so the
  one IPMI thread keeps serving other nodes; Redfish requests sleep on their worker thread
  (the thread is held for the delay).
- `ipmi_drop`: percent of inbound IPMI datagrams dropped unanswered.
- `redfish_error_rate` / `redfish_error_status`: percent of Redfish requests answered with a
  500 (InternalError) or 503 (ServiceTemporarilyUnavailable, with Retry-After) Redfish error.
- `stuck_power`: power actions are accepted (IPMI completion code 0, Redfish 202 with a task)
  but never carried out: the power state stays, a Redfish task stays Running. When the fault
  is cleared, the stuck actions fail (their tasks end in Exception); they never run.
- `unreachable`: seconds (or `true`: until cleared) during which the BMC is gone: IPMI
  datagrams are dropped both ways, Redfish connections are closed without an answer. It ends
  by itself when the seconds have passed.

Random choices use the node's own `random.Random` per protocol, seeded from `seed` (and the
node's name) when given, so a test can replay the same drops and errors.

A `FaultState` is immutable in what it injects: a change swaps `node.faults` for a new one (an
atomic attribute store), so the front ends' threads read it without a lock.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import weakref
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bmc.messages import value_kind

if TYPE_CHECKING:
    from bmc.node import Node

log = logging.getLogger(__name__)

#: the longest latency and unreachable period that may be asked for, in seconds
MAX_LATENCY = 60.0
MAX_UNREACHABLE = 7 * 86400.0
#: Redfish statuses an injected error may have
ERROR_STATUSES = (500, 503)
#: the Retry-After of an injected 503, in seconds
RETRY_AFTER = 2
#: power actions a stuck node accepts before it reports itself busy (bounded: each is kept)
MAX_STUCK = 8
#: the keys of a `faults:` mapping
KEYS = ("latency", "ipmi_drop", "redfish_error_rate", "redfish_error_status", "stuck_power",
        "unreachable", "seed")


@dataclass(frozen=True)
class Faults:
    """What to inject into one node; the default injects nothing."""

    latency: tuple[float, float] = (0.0, 0.0)  # (min, max) seconds, drawn uniformly
    ipmi_drop: float = 0.0  # percent of inbound IPMI datagrams
    redfish_error_rate: float = 0.0  # percent of Redfish requests
    redfish_error_status: int = 503
    stuck_power: bool = False
    unreachable: float = 0.0  # seconds from when the faults are set; math.inf: until cleared
    seed: int | None = None

    @property
    def any(self) -> bool:
        """Something is injected."""
        return (self.latency[1] > 0 or self.ipmi_drop > 0 or self.redfish_error_rate > 0
                or self.stuck_power or self.unreachable > 0)

    def summary(self) -> str:
        """One line for the log: what is injected."""
        parts = []
        low, high = self.latency
        if high > 0:
            parts.append(f"latency {low:g}-{high:g} s" if low != high else f"latency {low:g} s")
        if self.ipmi_drop:
            parts.append(f"IPMI drop {self.ipmi_drop:g} %")
        if self.redfish_error_rate:
            parts.append(f"Redfish {self.redfish_error_status} on "
                         f"{self.redfish_error_rate:g} % of requests")
        if self.stuck_power:
            parts.append("power actions stuck")
        if self.unreachable == math.inf:
            parts.append("unreachable until cleared")
        elif self.unreachable:
            parts.append(f"unreachable for {self.unreachable:g} s")
        return ", ".join(parts) or "none"


# -- reading faults (config file, management API) -----------------------------------------------
def parse(raw: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A `faults:` mapping checked: its values as `Faults` takes them (only the keys given),
    and every problem as (key, message), all at once."""
    if not isinstance(raw, dict):
        return {}, [("", f"must be a mapping (key: value), got {value_kind(raw)}")]
    values: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for key, value in raw.items():
        check = _CHECKS.get(key) if isinstance(key, str) else None
        if check is None:
            problems.append((str(key), f"unknown key (known: {', '.join(KEYS)})"))
            continue
        try:
            values[key] = check(value)
        except ValueError as exc:
            problems.append((key, str(exc)))
    return values, problems


def build(*layers: dict[str, Any] | None) -> Faults | None:
    """Faults from checked values (`parse`), later layers winning key by key (a node's own
    over `defaults.faults`); None when nothing is injected."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer or {})
    faults = Faults(**merged)
    return faults if faults.any else None


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of {what}, got {value_kind(value)}")
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number of {what}")
    return float(value)


def _latency(value: Any) -> tuple[float, float]:
    """0.5, "0.5", "0.2-1.5" or [0.2, 1.5] seconds."""
    if isinstance(value, str):
        low_text, dash, high_text = value.strip().partition("-")
        try:
            low = float(low_text)
            high = float(high_text) if dash else low
        except ValueError:
            raise ValueError(f"{value!r} is not seconds or a range of seconds such as "
                             "'0.2-1.5'") from None
    elif isinstance(value, list | tuple):
        if len(value) != 2:
            raise ValueError("a range is two numbers of seconds: [min, max]")
        low, high = (_number(v, "seconds") for v in value)
    else:
        low = high = _number(value, "seconds")
    if not (0 <= low <= high <= MAX_LATENCY and math.isfinite(high)):
        raise ValueError(f"{value!r}: seconds must satisfy 0 <= min <= max <= {MAX_LATENCY:g}")
    return (low, high)


def _percent(value: Any) -> float:
    number = _number(value, "percent")
    if not 0 <= number <= 100:
        raise ValueError(f"{number:g} is out of range 0..100 percent")
    return number


def _status(value: Any) -> int:
    if value not in ERROR_STATUSES or isinstance(value, bool):
        raise ValueError(f"{value!r} is not one of {', '.join(map(str, ERROR_STATUSES))}")
    return int(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value_kind(value)}")
    return value


def _unreachable(value: Any) -> float:
    """Seconds, `true` (until cleared) or `false`/0 (reachable)."""
    if isinstance(value, bool):
        return math.inf if value else 0.0
    seconds = _number(value, "seconds (or true: until cleared)")
    if not 0 <= seconds <= MAX_UNREACHABLE:
        raise ValueError(f"{seconds:g} is out of range 0..{MAX_UNREACHABLE:g} seconds")
    return seconds


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, got {value_kind(value)}")
    return value


_CHECKS = {"latency": _latency, "ipmi_drop": _percent, "redfish_error_rate": _percent,
           "redfish_error_status": _status, "stuck_power": _flag, "unreachable": _unreachable,
           "seed": _seed}


# -- a node's faults at run time --------------------------------------------------------------
#: what was injected into each node, kept across changes of its faults (`nodes show`)
_COUNTERS: weakref.WeakKeyDictionary[Any, Counter[str]] = weakref.WeakKeyDictionary()
_COUNTERS_LOCK = threading.Lock()


class FaultState:
    """The faults of one node while it runs, and the decisions they make. Thread-safe."""

    def __init__(self, faults: Faults, name: str, counters: Counter[str] | None = None,
                 clock: Any = time.monotonic) -> None:
        self.faults = faults
        self.name = name
        self.clock = clock
        self.since = clock()
        self.until = self.since + faults.unreachable if faults.unreachable else None
        seed = faults.seed
        # one generator per protocol: Redfish traffic never shifts the IPMI drop sequence
        self._ipmi_random = random.Random(f"{seed}:{name}:ipmi" if seed is not None else None)
        self._redfish_random = random.Random(f"{seed}:{name}:redfish"
                                             if seed is not None else None)
        self.counters = counters if counters is not None else Counter()
        self._lock = threading.Lock()
        self._over_logged = False
        self._stuck: list[Future[None]] = []

    def _count(self, what: str) -> None:
        with self._lock:
            self.counters[what] += 1

    def unreachable(self) -> bool:
        """The node is unreachable now (logs once when its period is over)."""
        until = self.until
        if until is None:
            return False
        if until == math.inf or self.clock() < until:
            return True
        if not self._over_logged:
            with self._lock:
                first, self._over_logged = not self._over_logged, True
            if first:
                log.info("%s: fault injection: reachable again (unreachable for %g s is over)",
                         self.name, self.faults.unreachable)
        return False

    def _latency(self, rng: random.Random) -> float:
        low, high = self.faults.latency
        return low if low == high else rng.uniform(low, high)

    # -- IPMI (ipmi/server.py) --------------------------------------------------------------
    def ipmi_datagram(self) -> float | None:
        """An inbound IPMI datagram: None to drop it, else the seconds to hold it first."""
        if self.unreachable():
            self._count("ipmi_dropped_unreachable")
            return None
        faults = self.faults
        if faults.ipmi_drop and self._ipmi_random.random() * 100 < faults.ipmi_drop:
            self._count("ipmi_dropped")
            return None
        self._count("ipmi_received")
        if faults.latency[1] > 0:
            self._count("ipmi_delayed")
            return self._latency(self._ipmi_random)
        return 0.0

    def ipmi_held_over(self) -> None:
        """A datagram dropped because too many are already held (latency under a flood)."""
        self._count("ipmi_dropped_held")

    # -- Redfish (redfish/app.py) -----------------------------------------------------------
    def redfish_request(self) -> tuple[str | None, float]:
        """A Redfish request: ("close", 0) to close the connection unanswered, ("error",
        delay) to answer with the injected error, (None, delay) to serve it; delay in s."""
        if self.unreachable():
            self._count("redfish_closed_unreachable")
            return "close", 0.0
        faults = self.faults
        delay = 0.0
        if faults.latency[1] > 0:
            self._count("redfish_delayed")
            delay = self._latency(self._redfish_random)
        if faults.redfish_error_rate and \
                self._redfish_random.random() * 100 < faults.redfish_error_rate:
            self._count(f"redfish_errors_{faults.redfish_error_status}")
            return "error", delay
        return None, delay

    # -- power (bmc/node.py) ----------------------------------------------------------------
    def stuck_action(self, action: str) -> Future[None]:
        """A power action accepted and never carried out: a Future that ends only when the
        fault is cleared (failing then). NodeBusy past MAX_STUCK kept at once."""
        from bmc.power import NodeBusy

        with self._lock:
            if len(self._stuck) >= MAX_STUCK:
                raise NodeBusy(f"{self.name}: {len(self._stuck)} power actions are stuck")
            future: Future[None] = Future()
            future.set_running_or_notify_cancel()
            self._stuck.append(future)
            self.counters["power_actions_stuck"] += 1
        log.debug("%s: fault injection: power action %s accepted, never carried out",
                  self.name, action)
        return future

    def _release_stuck(self) -> list[Future[None]]:
        with self._lock:
            stuck, self._stuck = self._stuck, []
        return stuck

    def _adopt_stuck(self, futures: list[Future[None]]) -> None:
        with self._lock:
            self._stuck.extend(futures)

    # -- what `nodes show` shows --------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The faults as `faults:` would give them, and how long the node stays unreachable."""
        faults = self.faults
        shown: dict[str, Any] = {}
        low, high = faults.latency
        if high > 0:
            shown["latency"] = low if low == high else [low, high]
        if faults.ipmi_drop:
            shown["ipmi_drop"] = faults.ipmi_drop
        if faults.redfish_error_rate:
            shown["redfish_error_rate"] = faults.redfish_error_rate
            shown["redfish_error_status"] = faults.redfish_error_status
        if faults.stuck_power:
            shown["stuck_power"] = True
        if faults.unreachable == math.inf:
            shown["unreachable"] = True
            shown["unreachable_left"] = "until cleared"
        elif faults.unreachable:
            shown["unreachable"] = faults.unreachable
            shown["unreachable_left"] = round(max(0.0, (self.until or 0) - self.clock()), 1)
        if faults.seed is not None:
            shown["seed"] = faults.seed
        return shown


def counters(node: Node) -> dict[str, int]:
    """What was injected into `node` since it started (every fault it has had)."""
    with _COUNTERS_LOCK:
        found = _COUNTERS.get(node)
        return dict(sorted(found.items())) if found else {}


def set_faults(node: Node, faults: Faults | None, why: str) -> FaultState | None:
    """Give `node` these faults (None: none), replacing what it had; logged at INFO once.

    Stuck power actions stay stuck while the new faults keep `stuck_power`; otherwise they
    fail now (they were never carried out)."""
    from backends.base import BackendError

    with _COUNTERS_LOCK:
        tally = _COUNTERS.setdefault(node, Counter())
    old: FaultState | None = node.faults
    state = FaultState(faults, node.name, tally) if faults is not None else None
    stuck = old._release_stuck() if old is not None else []
    if state is not None and faults is not None and faults.stuck_power:
        state._adopt_stuck(stuck)
        stuck = []
    node.faults = state  # one store: the front ends see the old faults or the new ones
    for future in stuck:
        if not future.done():
            future.set_exception(BackendError(
                "the power action was never carried out (stuck_power fault cleared)"))
    if state is not None:
        log.info("%s: fault injection (%s): %s", node.name, why, state.faults.summary())
    elif old is not None:
        log.info("%s: fault injection cleared (%s)", node.name, why)
    return state
