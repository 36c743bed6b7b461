"""Account lockout: too many failed logins in a row lock an account for a while.

Redfish AccountService `AccountLockoutThreshold` / `AccountLockoutDuration` /
`AccountLockoutCounterResetAfter`. Only existing accounts are tracked (a flood of made-up
names costs no memory); a locked account is refused even with the right password.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


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
        self._records: dict[str, _Record] = {}

    def is_locked(self, name: str) -> bool:
        with self._lock:
            record = self._records.get(name)
            if record is None or record.locked_until is None:
                return False
            if self._clock() >= record.locked_until:
                del self._records[name]  # the lock ran out: a clean slate
                return False
            return True

    def failed(self, name: str) -> bool:
        """Count a failed login of `name`; True if that locked the account."""
        if self.threshold <= 0:
            return False
        now = self._clock()
        with self._lock:
            record = self._records.setdefault(name, _Record())
            if record.locked_until is not None:
                return False
            if record.failures and now - record.last_failure > self.reset_after:
                record.failures = 0
            record.failures += 1
            record.last_failure = now
            if record.failures >= self.threshold:
                record.locked_until = now + self.duration if self.duration > 0 else float("inf")
                return True
            return False

    def succeeded(self, name: str) -> None:
        with self._lock:
            record = self._records.get(name)
            if record is not None and record.locked_until is None:
                del self._records[name]

    def unlock(self, name: str) -> None:
        with self._lock:
            self._records.pop(name, None)

    def forget(self, name: str) -> None:
        """The account was deleted or renamed: drop what was counted for it."""
        self.unlock(name)
