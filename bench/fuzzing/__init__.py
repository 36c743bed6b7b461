"""Fuzz targets of the IPMI engine and the Redfish app, for every driver.

One harness, three drivers: a target asks a `Source` for each choice it makes (an integer in a
range, some bytes, one of a list), read from the input's bytes (`BytesSource`), so the same
target and the same inputs run under

- hypothesis (`st.binary()`): the bounded CI tests (tests/unit/test_fuzz_*.py), deterministic,
  whose failures shrink to a small input;
- atheris (libFuzzer's coverage feedback on the emulator's bytecode): the long run in
  `python -m bench.fuzz`;
- a seeded PRNG (`random_input`): the long run where atheris is not installed.

Targets keep their state from one input to the next, as a real BMC does (hypothesis sees plain
bytes, so that does not upset its generation; a failure it cannot replay is reported as flaky,
with the original failure attached).

Invariants, checked by the targets after every input: no exception escapes; no log record at
ERROR (the engine and the app log, and survive, any exception: "it did not raise" alone proves
nothing); IPMI replies parse, and those of our own sessions verify and decrypt; Redfish answers
no 5xx but the documented ones, and every error has a Redfish error body. A broken invariant
raises `FuzzFailure`.
"""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class FuzzFailure(AssertionError):
    """An invariant the emulator broke for some input."""


class Source(Protocol):
    """Where a target's choices come from."""

    def integer(self, lo: int, hi: int) -> int: ...

    def blob(self, max_size: int) -> bytes: ...

    def text(self, max_size: int) -> str: ...

    def boolean(self) -> bool: ...

    def choice(self, options: Sequence[T]) -> T: ...


class BytesSource:
    """Choices read from a byte string, as libFuzzer's FuzzedDataProvider does: every engine
    hands the targets bytes (atheris's input, hypothesis's `st.binary()`, a seeded PRNG's), so an
    input found by one replays under any other. An exhausted input reads as zeros, and choice 0
    is always the ordinary one (no mutation, the common value)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def _take(self, size: int) -> bytes:
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def integer(self, lo: int, hi: int) -> int:
        span = hi - lo
        if span <= 0:
            return lo
        size = (span.bit_length() + 7) // 8
        return lo + int.from_bytes(self._take(size).ljust(size, b"\0"), "little") % (span + 1)

    def blob(self, max_size: int) -> bytes:
        return self._take(self.integer(0, max_size))

    def text(self, max_size: int) -> str:
        chars = []
        for _ in range(self.integer(0, max_size)):
            kind = self.integer(0, 7)  # mostly ASCII; any plane; lone surrogates
            if kind <= 4:
                chars.append(chr(self.integer(32, 126)))
            elif kind == 5:
                chars.append(chr(self.integer(0, 0xFFFF)))
            elif kind == 6:
                chars.append(chr(self.integer(0xD800, 0xDFFF)))
            else:
                chars.append(chr(self.integer(0, 0x10FFFF)))
        return "".join(chars)

    def boolean(self) -> bool:
        return self.integer(0, 1) == 1

    def choice(self, options: Sequence[T]) -> T:
        return options[self.integer(0, len(options) - 1)]


def random_input(seed: int, max_size: int = 1024) -> bytes:
    """The input the PRNG engine makes for `seed` (no coverage feedback; reproducible)."""
    rng = random.Random(seed)
    return rng.randbytes(rng.randint(1, max_size))


class ErrorLog(logging.Handler):
    """Collects every record at ERROR or above, anywhere (the root logger's handler)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.total = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.total += 1
        if len(self.records) < 100:
            self.records.append(record)

    def install(self) -> ErrorLog:
        logging.getLogger().addHandler(self)
        return self

    def remove(self) -> None:
        logging.getLogger().removeHandler(self)

    def take(self) -> list[str]:
        """The records since the last call, formatted with their tracebacks."""
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        out = [formatter.format(r) for r in self.records]
        self.records.clear()
        return out

    def check(self, what: str) -> None:
        found = self.take()
        if found:
            raise FuzzFailure(f"{what}: ERROR logged:\n" + "\n".join(found))


# -- the network guard -----------------------------------------------------------------------------
#: the only place an event push may connect to while fuzzing (set by the Redfish target)
ALLOWED_CONNECT: set[tuple[str, int]] = set()


@contextmanager
def network_guard() -> Iterator[None]:
    """No traffic off this machine while fuzzing: fuzzed event subscriptions make the emulator
    push events (a real Deliverer thread) to whatever host a body names. Host names do not
    resolve (no DNS queries), and connections go only to ALLOWED_CONNECT (the target's own
    receiver); everything else fails as an unreachable host does, a path the emulator handles.
    """
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.create_connection

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else str(host)
        if text not in ("127.0.0.1", "localhost", "::1"):
            raise socket.gaierror(socket.EAI_NONAME, "fuzz network guard: not resolved")
        return real_getaddrinfo(host, port, *args, **kwargs)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        if (str(address[0]), int(address[1])) not in ALLOWED_CONNECT:
            raise ConnectionRefusedError("fuzz network guard: not the harness receiver")
        return real_connect(address, *args, **kwargs)

    socket.getaddrinfo, socket.create_connection = getaddrinfo, create_connection  # type: ignore
    try:
        yield
    finally:
        socket.getaddrinfo, socket.create_connection = real_getaddrinfo, real_connect


def restore_users(node: Any, users: dict[str, tuple[str, Any, int]]) -> bool:
    """Put the harness's users back in their slots, as it logs in with them (fuzzed requests
    rename, disable, lock out or delete them); True if anything had to change."""
    store, changed = node.users, False
    for name, (password, privilege, uid) in users.items():
        holder = store.by_name(name)
        if holder is not None and holder.user_id != uid:
            store.set_name(holder.user_id, "")
            changed = True
        slot = store.slot(uid)
        if slot is None or slot.name != name:
            store.set_name(uid, name)
            changed = True
        user = store.slot(uid)
        if store.authenticate(name, password) is None or user.password != password:
            store.set_password(uid, password)
            changed = True
        if not user.enabled or user.privilege != privilege or not user.ipmi_messaging:
            store.set_enabled(uid, True)
            store.set_access(uid, privilege=privilege, ipmi_messaging=True)
            changed = True
        node.lockout.unlock(name)
    return changed


def rss_mib() -> float:
    """This process's resident set size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
