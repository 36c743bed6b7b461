"""Account lockout, one for both protocols: failed logins lock out their source, not the account.

Redfish AccountService `AccountLockoutThreshold` / `AccountLockoutDuration` /
`AccountLockoutCounterResetAfter`, and IPMI's LAN parameter 26 (bad password threshold), are
this one policy: after `threshold` failed logins of an account from one source address, that
source may not log in to that account for `duration` seconds, through IPMI or Redfish. The
account stays usable from everywhere else, so nobody can keep an administrator out by typing
wrong passwords (a lockout per account would be a denial of service anyone can mount).

A source that fails many times across accounts (guessing names) is held off as a whole after
`SOURCE_FACTOR` × `threshold` failures. Only existing accounts are tracked per account, and
sources are bounded (the oldest forgotten first), so a flood of made-up names or addresses
costs bounded memory. A locked-out login is refused even with the right password.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bmc.state import NodeState

#: failures of a source across all accounts that hold the source off, as a multiple of the
#: per-account threshold
SOURCE_FACTOR = 4
#: sources remembered at most (per node)
MAX_SOURCES = 4096
#: the state store's kind (bmc/state.py) of the policy; who is locked out is not kept
LOCKOUT_KIND = "lockout"


@dataclass
class _Record:
    failures: int = 0
    last_failure: float = 0.0
    locked_until: float | None = None  # monotonic; inf = until an administrator unlocks


class AccountLockout:
    """Failed-login bookkeeping of one BMC. Thread-safe."""

    def __init__(self, threshold: int = 5, duration: float = 60.0, reset_after: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold  # 0 = never lock
        self.duration = duration  # 0 = locked until unlocked by an administrator
        self.reset_after = reset_after  # a failure this long after the last one starts over
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[tuple[str, str], _Record] = {}  # (account, source)
        self._sources: OrderedDict[str, _Record] = OrderedDict()
        self._state: NodeState | None = None

    def attach(self, state: NodeState) -> None:
        """Take back the saved policy (StateError if it does not make sense); save changes."""
        saved = state.get(LOCKOUT_KIND, "policy")
        if saved is not None:
            try:
                threshold, duration, reset_after = (saved["threshold"], saved["duration"],
                                                    saved["reset_after"])
                if not isinstance(threshold, int) or isinstance(threshold, bool) \
                        or threshold < 0 or not all(
                            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                            for v in (duration, reset_after)):
                    raise ValueError("expected numbers >= 0")
            except (KeyError, TypeError, ValueError) as exc:
                raise state.error(LOCKOUT_KIND, "policy", repr(exc)) from exc
            self.threshold, self.duration, self.reset_after = (threshold, float(duration),
                                                               float(reset_after))
        self._state = state

    def set_policy(self, *, threshold: int | None = None, duration: float | None = None,
                   reset_after: float | None = None) -> None:
        """Change the policy (Redfish AccountService, IPMI LAN parameter 26); saved before
        this returns. None leaves a value as it is."""
        with self._lock:
            if threshold is not None:
                self.threshold = threshold
            if duration is not None:
                self.duration = float(duration)
            if reset_after is not None:
                self.reset_after = float(reset_after)
            if self._state is not None:
                self._state.save(LOCKOUT_KIND, "policy", {
                    "threshold": self.threshold, "duration": self.duration,
                    "reset_after": self.reset_after})

    def is_locked(self, name: str, source: str | None = None) -> bool:
        """Whether `source` may not log in to `name` now; without a source: whether any
        source is locked out of `name` (what Redfish's `Locked` shows)."""
        now = self._clock()
        with self._lock:
            if source is None:
                return any(self._active(key, record, now) for key, record
                           in list(self._accounts.items()) if key[0] == name)
            record = self._accounts.get((name, source))
            if record is not None and self._active((name, source), record, now):
                return True
            held = self._sources.get(source)
            return held is not None and held.locked_until is not None \
                and now < held.locked_until

    def _active(self, key: tuple[str, str], record: _Record, now: float) -> bool:
        if record.locked_until is None:
            return False
        if now >= record.locked_until:
            del self._accounts[key]  # the lock ran out: a clean slate
            return False
        return True

    def failed(self, name: str, source: str = "", *, known: bool = True) -> bool:
        """Count a failed login of `name` from `source` (`known`: the account exists);
        True if that locked the source out of the account."""
        if self.threshold <= 0:
            return False
        now = self._clock()
        with self._lock:
            held = self._sources.pop(source, None) or _Record()
            self._count(held, now, self.threshold * SOURCE_FACTOR)
            self._sources[source] = held  # most recent last
            while len(self._sources) > MAX_SOURCES:
                self._sources.popitem(last=False)
            if not known:
                return False
            record = self._accounts.setdefault((name, source), _Record())
            return self._count(record, now, self.threshold)

    def _count(self, record: _Record, now: float, threshold: int) -> bool:
        if record.locked_until is not None and now < record.locked_until:
            return False
        if record.locked_until is not None or (
                record.failures and now - record.last_failure > self.reset_after):
            record.failures, record.locked_until = 0, None
        record.failures += 1
        record.last_failure = now
        if record.failures >= threshold:
            record.locked_until = now + self.duration if self.duration > 0 else float("inf")
            return True
        return False

    def succeeded(self, name: str, source: str = "") -> None:
        with self._lock:
            record = self._accounts.get((name, source))
            if record is not None and record.locked_until is None:
                del self._accounts[(name, source)]
            held = self._sources.get(source)
            if held is not None and held.locked_until is None:
                del self._sources[source]

    def unlock(self, name: str) -> None:
        """An administrator unlocks the account: every source may try again."""
        with self._lock:
            for key in [key for key in self._accounts if key[0] == name]:
                del self._accounts[key]

    def forget(self, name: str) -> None:
        """The account was deleted or renamed: drop what was counted for it."""
        self.unlock(name)
