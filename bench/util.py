"""Small helpers shared by the benchmark modules: ports, processes, memory, statistics."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
#: below Linux's ephemeral range (32768+), so clients' own sockets do not take our ports
PORT_RANGE = (20000, 32767)

T = TypeVar("T")


# -- ports --------------------------------------------------------------------------------------
def port_is_free(port: int, kind: str, host: str = HOST) -> bool:
    """Whether `port` can be bound now on `host`; kind "udp" or "tcp"."""
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, sock_type) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(kind: str, count: int = 1, taken: set[int] | None = None) -> int:
    """The first of `count` consecutive free ports of `kind` not in `taken` (which grows)."""
    taken = taken if taken is not None else set()
    for _ in range(500):
        first = random.randint(PORT_RANGE[0], PORT_RANGE[1] - count)
        ports = range(first, first + count)
        if not taken.intersection(ports) and all(port_is_free(p, kind) for p in ports):
            taken.update(ports)
            return first
    raise RuntimeError(f"no {count} consecutive free {kind} ports in {PORT_RANGE}")


# -- processes ----------------------------------------------------------------------------------
@dataclass
class Proc:
    """A process the benchmark started (in its own process group) and must stop."""

    popen: subprocess.Popen[bytes]
    started: float  # time.monotonic() just before the process was created
    log_path: Path
    log_file: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to the group we created, SIGKILL after `timeout`; reaps the process."""
        stop_group(self.popen, timeout)
        # children of the group (e.g. ipmi_sim's helper script) must not outlive it
        signal_group(self.popen.pid, signal.SIGKILL)
        self.log_file.close()


def stop_group(popen: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Stop a process started in a session of its own: SIGTERM to its group, SIGKILL after
    `timeout`; reaps it."""
    if popen.poll() is not None:
        return
    signal_group(popen.pid, signal.SIGTERM)
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        signal_group(popen.pid, signal.SIGKILL)
        popen.wait(5)


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def start(cmd: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    """Start `cmd` in a new session (its own process group), output to `log_path`."""
    log_file = open(log_path, "wb")  # noqa: SIM115 - closed by Proc.stop
    started = time.monotonic()
    popen = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=log_file,
                             stderr=subprocess.STDOUT, env=env, cwd=cwd,
                             start_new_session=True)
    return Proc(popen, started, log_path, log_file)


def run(cmd: Sequence[str], timeout: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text output captured and a timeout (raises TimeoutExpired)."""
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]


# -- CPUs ---------------------------------------------------------------------------------------
def two_cpus() -> tuple[int, int] | None:
    """Two CPUs this process may use (server, client), or None on a one-CPU machine."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


@contextlib.contextmanager
def pinned(pid: int, cpu: int) -> Iterator[None]:
    """Every thread of `pid` and its descendants on `cpu` for the block, then as before.

    Threads they start meanwhile inherit the pin. (sched_setaffinity on a pid pins only that
    thread, hence the walk over /proc/PID/task.)
    """
    before: dict[int, set[int]] = {}
    pending, seen = [pid], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError):  # a thread that just ended
                    tid = int(task)
                    before[tid] = os.sched_getaffinity(tid)
                    os.sched_setaffinity(tid, {cpu})
        pending += _children(current)
    try:
        yield
    finally:
        for tid, cpus in before.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


# -- memory -------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
    return kids


def rss_mib(pid: int, tree: bool = True) -> float | None:
    """Resident memory of `pid` (and its descendants if `tree`) in MiB; None if it is gone."""
    total_kib, pending, seen = 0, [pid], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total_kib += int(line.split()[1])
                        break
        except OSError:
            if current == pid:
                return None
            continue
        if tree:
            pending += _children(current)
    return total_kib / 1024


# -- time and statistics ------------------------------------------------------------------------
def ms_since(t0: float) -> float:
    return (time.monotonic() - t0) * 1000


def poll_until(check: Callable[[], T | None], deadline: float, interval: float = 0.002
               ) -> T | None:
    """Call `check` until it returns non-None or time.monotonic() passes `deadline`."""
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
