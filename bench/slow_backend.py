"""Slow backends must not slow IPMI down: power status stays fast while every node is busy.

    python -m bench.slow_backend [--nodes 100] [--delay 3] [--json FILE]

Serves N `memory` nodes whose every power action takes DELAY seconds, opens one `ipmitool
shell` session per node (ipmitool's own kept session, driven on a pty) plus four measuring
sessions, then sends `power on` to every node at once. While the actions run, the measuring
sessions ask `power status` back to back, on nodes that are themselves busy. Reported: the
`power status` latency (p50/p99/max, ipmitool's own time included), how many `power on`
requests were answered (each must be: a real BMC answers Chassis Control at once) and how
quickly, and when every node was really On.

The server runs on CPU 0, the clients on CPU 1 (when there are two), so that the figure is
the server's, not the clients' competition for one core. A peer comparison does not apply:
VirtualBMC, sushy-tools and ipmi_sim have no slow-backend setting (VirtualBMC and sushy call
libvirt in the request and answer when it returns).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from bench.util import free_ports, percentile, start

HOST = "127.0.0.1"
PROMPT = "ipmitool> "
MEASURING_SESSIONS = 4


@dataclass
class Result:
    nodes: int
    delay: float
    status_samples: int = 0
    status_p50_ms: float = 0.0
    status_p99_ms: float = 0.0
    status_max_ms: float = 0.0
    actions_answered: int = 0
    action_answer_p99_ms: float = 0.0
    all_on_after_s: float | None = None
    problems: list[str] = field(default_factory=list)


def _shell(port: int):  # type: ignore[no-untyped-def]
    import pexpect

    child = pexpect.spawn("ipmitool", ["-I", "lanplus", "-H", HOST, "-p", str(port), "-U",
                                       "admin", "-P", "password", "shell"],
                          encoding="utf-8", timeout=20)
    child.delaybeforesend = None  # pexpect waits 50 ms before every send by default
    return child


def _ask(child, command: str, timeout: float = 5.0) -> tuple[str, float]:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    child.sendline(command)
    child.expect_exact(PROMPT, timeout=timeout)
    return child.before, (time.perf_counter() - began) * 1000


def _pin(cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        if len(os.sched_getaffinity(0)) > 1:
            os.sched_setaffinity(0, {cpu})


def run(nodes: int, delay: float, workdir: Path) -> Result:
    result = Result(nodes, delay)
    ipmi_base = free_ports("udp", nodes)
    redfish_base = free_ports("tcp", nodes)
    config = {"nodes": [{"name": f"slow-{i}",
                         "backend": {"type": "memory", "action_delay": delay},
                         "ipmi": {"address": HOST, "port": ipmi_base + i},
                         "redfish": {"address": HOST, "port": redfish_base + i}}
                        for i in range(nodes)]}
    config_path = workdir / "slow.yaml"
    config_path.write_text(yaml.safe_dump(config))
    _pin(0)  # the server inherits CPU 0
    server = start([sys.executable, "-m", "bmc.cli", "serve", "--config", str(config_path)],
                   workdir / "serve.log", cwd=Path(__file__).resolve().parents[1])
    _pin(1)  # and every client CPU 1
    shells = []
    try:
        deadline = time.monotonic() + 60
        while "ready" not in server.log_path.read_text(errors="replace"):
            if not server.alive() or time.monotonic() > deadline:
                result.problems.append(f"the server did not start: {server.log_tail()}")
                return result
            time.sleep(0.05)
        shells = [_shell(ipmi_base + i) for i in range(nodes)]
        watchers = [_shell(ipmi_base + i * nodes // MEASURING_SESSIONS)
                    for i in range(MEASURING_SESSIONS)]
        for child in [*shells, *watchers]:
            child.expect_exact(PROMPT, timeout=60)
        latencies: list[float] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                for child in watchers:
                    text, ms = _ask(child, "power status")
                    if "Chassis Power is" not in text:
                        result.problems.append(f"power status said {text.strip()!r}")
                    latencies.append(ms)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        time.sleep(0.5)  # a baseline before the storm
        fired = time.perf_counter()
        for child in shells:
            child.sendline("power on")
        answers = []
        for child in shells:
            try:
                child.expect_exact(PROMPT, timeout=5)
                if "Up/On" in child.before:
                    answers.append((time.perf_counter() - fired) * 1000)
                else:
                    result.problems.append(f"power on said {child.before.strip()!r}")
            except Exception as exc:  # pexpect.TIMEOUT/EOF: unanswered
                result.problems.append(f"power on unanswered: {type(exc).__name__}")
        result.actions_answered = len(answers)
        result.action_answer_p99_ms = round(percentile(answers, 99), 1) if answers else 0.0
        # every node On: asked of the node's own session, bounded
        deadline = time.monotonic() + delay * 3 + 30
        pending = list(shells)
        while pending and time.monotonic() < deadline:
            pending = [child for child in pending
                       if "is on" not in _ask(child, "power status")[0]]
            if pending:
                time.sleep(0.1)
        if pending:
            result.problems.append(f"{len(pending)} nodes never reached On")
        else:
            result.all_on_after_s = round(time.perf_counter() - fired, 2)
        time.sleep(0.3)
        stop.set()
        watcher.join(10)
        result.status_samples = len(latencies)
        if latencies:
            result.status_p50_ms = round(percentile(latencies, 50), 2)
            result.status_p99_ms = round(percentile(latencies, 99), 2)
            result.status_max_ms = round(max(latencies), 2)
        for child in shells + watchers:
            with contextlib.suppress(Exception):
                child.sendline("exit")
    finally:
        for child in shells:
            with contextlib.suppress(Exception):
                child.close(force=True)
        server.stop()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slow_backend",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--delay", type=float, default=3.0,
                        help="seconds every power action takes (default 3)")
    parser.add_argument("--json", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bmc-bench-slow-") as tmp:
        result = run(args.nodes, args.delay, Path(tmp))
    print(f"{result.nodes} nodes, every power action takes {result.delay:g} s; `power on` "
          f"sent to all at once")
    print(f"  power on answered:   {result.actions_answered}/{result.nodes} "
          f"(p99 {result.action_answer_p99_ms} ms after the burst began)")
    print(f"  power status:        p50 {result.status_p50_ms} ms, p99 {result.status_p99_ms} "
          f"ms, max {result.status_max_ms} ms over {result.status_samples} requests "
          f"(target: p99 < 20 ms)")
    print(f"  every node On after: {result.all_on_after_s} s")
    for problem in result.problems[:10]:
        print(f"  PROBLEM: {problem}")
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))
    ok = (not result.problems and result.actions_answered == result.nodes
          and result.status_p99_ms < 20)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
