"""Fuzz targets of the IPMI engine and the Redfish app, for every driver.

One harness, three drivers: a target asks a `Source` for each choice it makes (an integer in a
range, some bytes, one of a list), so the same target runs under

- hypothesis (`HypothesisSource`): the bounded CI tests (tests/unit/test_fuzz_*.py), whose
  failures shrink to a small example;
- atheris (`AtherisSource`, libFuzzer's coverage feedback on the engine's bytecode): the long
  run in `python -m bench.fuzz`;
- a seeded `random.Random` (`RandomSource`): the long run where atheris is not installed.

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


class RandomSource:
    """Choices from a seeded PRNG: no coverage feedback, but reproducible by seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def blob(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_size))

    def text(self, max_size: int) -> str:
        size = self.rng.randint(0, max_size)
        # mostly ASCII, some of every plane, lone surrogates included
        return "".join(chr(self.rng.choice((self.rng.randint(32, 126), self.rng.randint(0, 0xFFFF),
                                            self.rng.randint(0xD800, 0xDFFF),
                                            self.rng.randint(0, 0x10FFFF))))
                       for _ in range(size))

    def boolean(self) -> bool:
        return self.rng.random() < 0.5

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]


class AtherisSource:
    """Choices consumed from a libFuzzer input (atheris.FuzzedDataProvider)."""

    def __init__(self, provider: Any) -> None:
        self.fdp = provider

    def integer(self, lo: int, hi: int) -> int:
        return int(self.fdp.ConsumeIntInRange(lo, hi))

    def blob(self, max_size: int) -> bytes:
        return bytes(self.fdp.ConsumeBytes(self.fdp.ConsumeIntInRange(0, max_size)))

    def text(self, max_size: int) -> str:
        return str(self.fdp.ConsumeUnicode(self.fdp.ConsumeIntInRange(0, max_size)))

    def boolean(self) -> bool:
        return bool(self.fdp.ConsumeBool())

    def choice(self, options: Sequence[T]) -> T:
        return options[self.fdp.ConsumeIntInRange(0, len(options) - 1)]


class HypothesisSource:
    """Choices drawn from hypothesis's `st.data()`: shrinkable, replayed from its database."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st
        # every code point, lone surrogates included (hypothesis leaves them out by default)
        self._chars = st.characters(exclude_categories=())

    def integer(self, lo: int, hi: int) -> int:
        return int(self.data.draw(self.st.integers(lo, hi)))

    def blob(self, max_size: int) -> bytes:
        return bytes(self.data.draw(self.st.binary(max_size=max_size)))

    def text(self, max_size: int) -> str:
        return str(self.data.draw(self.st.text(self._chars, max_size=max_size)))

    def boolean(self) -> bool:
        return bool(self.data.draw(self.st.booleans()))

    def choice(self, options: Sequence[T]) -> T:
        return options[self.data.draw(self.st.integers(0, len(options) - 1))]


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


def rss_mib() -> float:
    """This process's resident set size."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
