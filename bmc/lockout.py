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

#: failures of a source across all accounts that hold the source off, as a multiple of the
#: per-account threshold
SOURCE_FACTOR = 4
#: sources remembered at most (per node)
MAX_SOURCES = 4096


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
