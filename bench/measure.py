"""One round for one target: start it, take every figure that applies to it, stop it."""

from __future__ import annotations

import contextlib
import json
import math
import ssl
import subprocess
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench import httpload, install
from bench.probes import have_ipmitool, http_json, http_status, ipmi_answers, ipmitool
from bench.targets import Running, Target
from bench.util import REPO, ms_since, percentile, pinned, poll_until, rss_mib, run, two_cpus

START_TIMEOUT = 30.0  # seconds for a target to answer at all
STALL_MS = 250  # a pyghmi command this slow waited for its retry timer (answers take ~1 ms)


@dataclass(frozen=True)
class Settings:
    """How much of each load one round does (all bounded in count and time)."""

    ipmitool_runs: int = 5
    default_cipher_runs: int = 3
    exec_commands: int = 300  # `power status` lines in one `ipmitool exec` session
    pyghmi_commands: int = 3000
    pyghmi_seconds: float = 2.0
    http_seconds: float = 5.0
    http_concurrency: int = 16


QUICK = Settings(ipmitool_runs=2, default_cipher_runs=1, exec_commands=50, pyghmi_commands=300,
                 pyghmi_seconds=0.5, http_seconds=1.0)


@dataclass
class Samples:
    """Every value measured for one target, by metric key, plus what went wrong."""

    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    problems: list[str] = field(default_factory=list)
    tools: set[str] = field(default_factory=set)

    def add(self, metric: str, value: float | None) -> None:
        if value is not None and not math.isnan(value):
            self.values[metric].append(value)

    def problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)


def one_round(target: Target, workdir: Path, settings: Settings, samples: Samples) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    running = target.start(workdir)
    try:
        if not _startup(running, samples):
            tail = running.proc.log_tail()
            samples.problem(f"did not answer within {START_TIMEOUT:.0f} s"
                            + (f"; log: {tail}" if tail else ""))
            return
        samples.add("rss_idle_mib", rss_mib(running.proc.pid))
        if running.ipmi is not None:
            _ipmi_figures(target, running, settings, samples, workdir)
        if running.redfish is not None:
            _redfish_figures(running, settings, samples)
        samples.add("rss_after_mib", rss_mib(running.proc.pid))
        if not running.proc.alive():
            samples.problem(f"exited during the round: {running.proc.log_tail()}")
    finally:
        running.proc.stop()


# -- start-up -----------------------------------------------------------------------------------
def _startup(running: Running, samples: Samples) -> bool:
    """Time from process start to the first answers; True if everything answered."""
    t0, deadline = running.proc.started, running.proc.started + START_TIMEOUT
    ok = {"ipmi": running.ipmi is None, "redfish": running.redfish is None}

    def ipmi() -> None:
        assert running.ipmi is not None
        host, port = running.ipmi
        if poll_until(lambda: True if ipmi_answers(host, port) else None, deadline, 0.001):
            samples.add("start_ipmi_ms", ms_since(t0))
            if have_ipmitool():
                # launched the moment the BMC first answers: start -> first ipmitool answer
                result = ipmitool(host, port, "power", "status", cipher=3)
                if result.ok:
                    samples.add("start_ipmitool_ms", ms_since(t0))
            ok["ipmi"] = True

    def redfish() -> None:
        assert running.redfish is not None
        host, port = running.redfish
        if poll_until(lambda: http_status(host, port, "/redfish/v1", timeout=2.0), deadline,
                      0.001):
            samples.add("start_redfish_ms", ms_since(t0))
            ok["redfish"] = True

    threads = [threading.Thread(target=fn, daemon=True) for fn, wanted in
               ((ipmi, running.ipmi), (redfish, running.redfish)) if wanted is not None]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(START_TIMEOUT + 20)
    return all(ok.values())


# -- IPMI ---------------------------------------------------------------------------------------
def _ipmi_figures(target: Target, running: Running, settings: Settings, samples: Samples,
                  workdir: Path) -> None:
    assert running.ipmi is not None
    host, port = running.ipmi
    if not have_ipmitool():
        samples.problem("ipmitool not installed: no ipmitool figures")
    else:
        for metric, cipher, count in (("ipmitool_c3_ms", 3, settings.ipmitool_runs),
                                      ("ipmitool_default_ms", None,
                                       settings.default_cipher_runs)):
            for _ in range(count):
                result = ipmitool(host, port, "power", "status", cipher=cipher)
                if result.ok:
                    samples.add(metric, result.ms)
                else:
                    samples.problem(f"ipmitool{'' if cipher is None else f' -C {cipher}'} "
                                    f"failed: {result.output[-120:]}")
        _ipmitool_exec(host, port, settings.exec_commands, workdir, samples)
    _pyghmi(target, running.proc.pid, host, port, settings, samples)


def _ipmitool_exec(host: str, port: int, count: int, workdir: Path, samples: Samples) -> None:
    """Kept session, ipmitool's way: `count` power status commands in one `exec` session."""
    script = workdir / "power-status.txt"
    script.write_text("power status\n" * count)
    result = ipmitool(host, port, "exec", str(script), cipher=3, timeout=30 + count * 0.1)
    answered = result.output.count("Chassis Power is")
    if result.ok and answered == count:
        samples.add("exec_cmds_per_s", count / (result.ms / 1000))
    else:
        samples.problem(f"ipmitool exec: {answered} of {count} answered")


def _pyghmi(target: Target, running_pid: int, host: str, port: int, settings: Settings,
            samples: Samples) -> None:
    python = install.pyghmi_python()
    if python is None:
        samples.problem("pyghmi not installed: no kept-session figures")
        return
    cmd = [python, str(REPO / "bench" / "pyghmi_client.py"), host, str(port),
           str(settings.pyghmi_commands), str(settings.pyghmi_seconds)]
    if target.pyghmi_sha1:
        cmd.append("--sha1")
    # client and server on different CPUs: on a shared one, pyghmi's lost wakeup (see
    # pyghmi_client.py) strikes often enough to measure pyghmi rather than the server
    cpus = two_cpus()
    if cpus is None:
        samples.problem("pyghmi: one CPU, client and server not pinned apart (expect stalls)")
    try:
        with pinned(running_pid, cpus[0]) if cpus else contextlib.nullcontext():
            result = run([*cmd, "--cpu", str(cpus[1])] if cpus else cmd,
                         timeout=settings.pyghmi_seconds + 60)
        answer = json.loads(result.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        samples.problem("pyghmi client gave no answer")
        return
    if "error" in answer:
        samples.problem(f"pyghmi: {answer['error']}")
        return
    latencies = answer["latencies_ms"]
    if latencies:
        samples.add("pyghmi_cmds_per_s", answer["count"] / answer["seconds"])
        samples.add("pyghmi_p50_ms", percentile(latencies, 50))
        samples.add("pyghmi_p99_ms", percentile(latencies, 99))
        stalls = sum(1 for x in latencies if x > STALL_MS)
        if stalls:
            samples.problem(f"pyghmi: {stalls} of {len(latencies)} commands stalled > "
                            f"{STALL_MS} ms (pyghmi's lost wakeup: the reply came before its "
                            "waiter was registered; the 0.5-1 s retry timer woke it)")


# -- Redfish ------------------------------------------------------------------------------------
def _redfish_figures(running: Running, settings: Settings, samples: Samples) -> None:
    assert running.redfish is not None
    host, port = running.redfish
    path = system_path(host, port, running.redfish_auth)
    if path is None:
        samples.problem("no ComputerSystem found under /redfish/v1/Systems")
        return
    result = httpload.load(f"http://{host}:{port}{path}",
                           concurrency=settings.http_concurrency,
                           seconds=settings.http_seconds, auth=running.redfish_auth)
    samples.tools.add(result.tool)
    if result.requests == 0:
        samples.problem(f"{result.tool}: no request answered")
        return
    if result.errors:
        samples.problem(f"{result.tool}: {result.errors} of {result.requests} requests failed")
    samples.add("rf_get_rps", result.rps)
    samples.add("rf_get_p50_ms", result.p50_ms)
    samples.add("rf_get_p99_ms", result.p99_ms)


def system_path(host: str, port: int, auth: tuple[str, str] | None,
                tls: ssl.SSLContext | None = None) -> str | None:
    """The @odata.id of the first ComputerSystem, answering 200 (over HTTPS with `tls`)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        collection = http_json(host, port, "/redfish/v1/Systems", auth, tls=tls)
        members = (collection or {}).get("Members") or []
        if members:
            path = members[0].get("@odata.id")
            if path and http_status(host, port, path, auth, tls=tls) == 200:
                return str(path)
        time.sleep(0.1)
    return None
