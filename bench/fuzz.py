"""`python -m bench.fuzz`: the long fuzzing run of the IPMI engine and the Redfish app.

    python -m bench.fuzz                                  # 10^6 datagrams, 10^4 requests
    python -m bench.fuzz --datagrams 100000 --requests 2000 --seconds 300
    python -m bench.fuzz --engine random                  # no atheris: a seeded PRNG

The engine is atheris (libFuzzer's coverage feedback on the emulator's own bytecode); install
it with `pip install '.[bench]'` (CPython 3.11 has manylinux wheels, no compiler needed). Each
target runs in its own process (atheris.Fuzz never returns), bounded by its count and
`--seconds`, on the targets of `bench.fuzzing` (the same ones the CI tests drive with
hypothesis). The IPMI inputs are either a raw datagram (first byte < 0x40; the seed corpus is
every datagram of ipmitool's captured RMCP+ logins) or a structured program of operations.

Reported: executions and exec/s, failures (an exception, an ERROR log record, a 5xx, a
malformed reply: each is saved under the work dir with its input), Redfish status counts, RSS
after start-up, after warm-up (10%), at the middle and at the end, and the line and branch
coverage of ipmi/ and redfish/ reached by every input of the run, replayed in order on a fresh
target under coverage.py, the same for both engines (the socket front ends ipmi/server.py,
redfish/server.py and redfish/console_ws.py are left out: no in-process input reaches them).
The exit status is non-zero if anything failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
INSTRUMENTED = ["ipmi", "redfish", "bmc", "backends"]
SEED_PROGRAMS = 256


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datagrams", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=1800.0,
                        help="time limit of each target (default 1800)")
    parser.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="corpus, failures and figures (default: a new temporary dir)")
    parser.add_argument("--only", choices=("ipmi", "redfish"), default=None)
    parser.add_argument("--no-coverage", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--child", choices=("ipmi", "redfish", "coverage"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if _has_atheris() else "random"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bmc-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.child == "coverage":
        return _coverage_child(workdir)
    if args.child:
        limit = args.datagrams if args.child == "ipmi" else args.requests
        return _fuzz_child(args.child, limit, args.seconds, workdir, engine)
    if args.engine == "atheris" and not _has_atheris():
        print("atheris is not installed: pip install '.[bench]' (or atheris), or --engine random")
        return 2
    return _parent(args, engine, workdir)


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


# -- the parent: one child per target, then the coverage replay, then the report --------------
def _parent(args: argparse.Namespace, engine: str, workdir: Path) -> int:
    print(f"bench.fuzz: engine {engine}, work dir {workdir}", flush=True)
    report: dict[str, Any] = {"engine": engine, "workdir": str(workdir)}
    targets = [t for t in ("ipmi", "redfish") if args.only in (None, t)]
    for target in targets:
        cmd = [sys.executable, "-m", "bench.fuzz", "--child", target, "--engine", engine,
               "--workdir", str(workdir), "--datagrams", str(args.datagrams),
               "--requests", str(args.requests), "--seconds", str(args.seconds)]
        started = time.monotonic()
        with open(workdir / f"{target}.log", "w") as log:
            try:
                code = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                      timeout=args.seconds + 300).returncode
            except subprocess.TimeoutExpired:
                code = -1
        stats_file = workdir / f"{target}.json"
        stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        stats["exit_code"] = code
        stats["wall_seconds"] = round(time.monotonic() - started, 1)
        if not stats_file.exists():
            stats["failures"] = 1
            stats["failure_kinds"] = {f"the {target} child died (exit {code}), see "
                                      f"{workdir / (target + '.log')}": 1}
        report[target] = stats
        _print_target(target, stats)
    if not args.no_coverage:
        cmd = [sys.executable, "-m", "bench.fuzz", "--child", "coverage", "--engine", engine,
               "--workdir", str(workdir)]
        with open(workdir / "coverage.log", "w") as log:
            subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                           timeout=args.seconds + 600)
        cov_file = workdir / "coverage.json"
        report["coverage"] = json.loads(cov_file.read_text()) if cov_file.exists() else None
        for package, figures in (report["coverage"] or {}).items():
            print(f"coverage {package}: lines {figures['lines']}, branches {figures['branches']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    failed = sum(report[t].get("failures", 0) + (report[t].get("exit_code") != 0)
                 for t in targets)
    print("bench.fuzz: " + ("FAILED, see the work dir" if failed else "no failures"))
    return 1 if failed else 0


def _print_target(target: str, stats: dict[str, Any]) -> None:
    unit = "datagrams" if target == "ipmi" else "requests"
    rss = stats.get("rss_mib", {})
    print(f"{target}: {stats.get(unit, 0)} {unit} in {stats.get('executions', 0)} inputs, "
          f"{stats.get('seconds', 0)} s ({stats.get(unit + '_per_second', 0)} {unit}/s), "
          f"failures {stats.get('failures', 0)}, ERROR records {stats.get('error_records', 0)}")
    if target == "redfish":
        print(f"  status counts {stats.get('status', {})}; 5xx not documented: "
              f"{stats.get('undocumented_5xx', 0)}")
    print(f"  RSS MiB: start {rss.get('start')}, warm {rss.get('warm')}, middle "
          f"{rss.get('middle')}, end {rss.get('end')}, max {rss.get('max')}; after warm-up "
          f"{rss.get('growth_after_warmup')}")
    for kind, count in stats.get("failure_kinds", {}).items():
        print(f"  FAILURE x{count}: {kind}")
    if "still_works" in stats:
        print(f"  still works after the run: {stats['still_works']}")


# -- a fuzzing child ---------------------------------------------------------------------------
class _Run:
    """Counts, samples memory, keeps failures, and ends the process when a bound is hit."""

    def __init__(self, name: str, limit: int, seconds: float, workdir: Path, engine: str,
                 target: Any) -> None:
        from bench.fuzzing import rss_mib

        self.name, self.limit, self.seconds, self.workdir = name, limit, seconds, workdir
        self.engine, self.target = engine, target
        self.unit = "datagrams" if name == "ipmi" else "requests"
        self.rss = rss_mib
        self.started = time.monotonic()
        self.samples: list[tuple[int, float]] = [(0, rss_mib())]
        self.next_sample = max(1, limit // 100)
        self.executions = 0
        self.failures: dict[str, int] = {}
        self.failure_dir = workdir / f"{name}-failures"
        #: every input, in order: the coverage replay runs them all again on a fresh target,
        #: the same for every engine (a corpus alone misses the paths that need state)
        self.inputs = open(workdir / f"{name}-inputs.bin", "wb")  # noqa: SIM115 - to the end

    def count(self) -> int:
        return int(self.target.stats[self.unit])

    def one(self, run: Any, data: bytes) -> None:
        from bench.fuzzing import FuzzFailure

        self.executions += 1
        self.inputs.write(len(data).to_bytes(4, "little") + data)
        try:
            run(data)
        except FuzzFailure as exc:
            self.failed(str(exc), data)
        except Exception:  # the harness or the emulator raised: a finding either way
            self.failed(traceback.format_exc(), data)
        done = self.count()
        if done >= self.next_sample:
            self.samples.append((done, self.rss()))
            self.next_sample = done + max(1, self.limit // 100)
        if done >= self.limit or time.monotonic() - self.started > self.seconds:
            self.finish()

    def failed(self, text: str, data: bytes) -> None:
        lines = [line for line in text.splitlines() if line.strip()]
        kind = (lines[-1] if "Traceback" in text else lines[0])[:200] if lines else "?"
        self.failures[kind] = self.failures.get(kind, 0) + 1
        if self.failures[kind] <= 3:
            self.failure_dir.mkdir(exist_ok=True)
            digest = hashlib.sha1(data).hexdigest()[:16]
            (self.failure_dir / f"{digest}.input").write_bytes(data)
            (self.failure_dir / f"{digest}.txt").write_text(text)

    def finish(self) -> None:
        from bench.fuzzing import FuzzFailure

        elapsed = time.monotonic() - self.started
        self.samples.append((self.count(), self.rss()))
        try:
            self.target.still_works()
            works: Any = True
        except (FuzzFailure, Exception) as exc:  # noqa: B014 - say which
            works = str(exc)[:500]
            self.failed(f"still works after the run: {exc}", b"")
        errors = self.target.errors.total
        self.target.errors.remove()
        stats = {k: v for k, v in self.target.stats.items()}
        stats.update({
            "engine": self.engine, "executions": self.executions, "seconds": round(elapsed, 1),
            f"{self.unit}_per_second": round(self.count() / max(elapsed, 1e-9)),
            "executions_per_second": round(self.executions / max(elapsed, 1e-9)),
            "failures": sum(self.failures.values()), "failure_kinds": self.failures,
            "error_records": errors, "still_works": works, "rss_mib": self._rss_figures(),
            "rss_samples": self.samples,
        })
        if self.name == "redfish":
            stats["status"] = {str(k): v for k, v in sorted(stats["status"].items())}
            stats["undocumented_5xx"] = sum(
                1 for kind in self.failures if " -> 5" in kind)
        self.inputs.close()
        (self.workdir / f"{self.name}.json").write_text(json.dumps(stats, indent=2))
        sys.stdout.flush()
        os._exit(0)  # libFuzzer's loop never returns; our bound is reached

    def _rss_figures(self) -> dict[str, float]:
        values = [rss for _, rss in self.samples]
        warm = next((rss for done, rss in self.samples if done >= self.limit // 10), values[-1])
        middle = next((rss for done, rss in self.samples if done >= self.count() // 2),
                      values[-1])
        return {"start": round(values[0], 1), "warm": round(warm, 1), "middle": round(middle, 1),
                "end": round(values[-1], 1), "max": round(max(values), 1),
                "growth_after_warmup": round(values[-1] - warm, 1)}


def _make_target(name: str) -> Any:
    if name == "ipmi":
        from bench.fuzzing.ipmi import IpmiTarget

        return IpmiTarget()
    from bench.fuzzing.redfish import RedfishTarget

    return RedfishTarget()


def _fuzz_child(name: str, limit: int, seconds: float, workdir: Path, engine: str) -> int:
    from bench.fuzzing import network_guard, random_input

    guard = network_guard()
    guard.__enter__()  # for the life of this process (it ends in os._exit)
    if engine == "atheris":
        import atheris

        with atheris.instrument_imports(include=INSTRUMENTED):
            target = _make_target(name)
    else:
        target = _make_target(name)
    target.errors.install()
    run = _Run(name, limit, seconds, workdir, engine, target)
    if engine == "random":
        seed = 0
        while True:  # ends in run.finish()
            run.one(target.run_input, random_input(seed))
            seed += 1
    corpus = workdir / f"{name}-corpus"
    corpus.mkdir(exist_ok=True)
    if name == "ipmi":
        _write_seeds(corpus, target)
    for seed in range(SEED_PROGRAMS):  # programs of several operations to start from: libFuzzer
        (corpus / f"program-{seed}").write_bytes(random_input(seed))  # alone starts from b""

    def test_one_input(data: bytes) -> None:
        run.one(target.run_input, data)

    atheris.Setup([sys.argv[0], str(corpus), "-max_len=4096", "-len_control=0",
                   "-rss_limit_mb=4096", "-timeout=30", "-use_value_profile=1",
                   f"-artifact_prefix={workdir}/{name}-", "-print_final_stats=1",
                   f"-max_total_time={int(seconds) + 60}"], test_one_input)
    atheris.Fuzz()
    return 0


def _write_seeds(corpus: Path, target: Any) -> None:
    """Real frames as raw-mode inputs: ipmitool's logins, and our own clients' frames."""
    frames = list(target.seeds)
    from ipmi.crypto import SUITE_3, SUITE_17

    for suite in (SUITE_17, SUITE_3):
        client = target.session(suite)
        target.command(client, 0x06, 0x01)
        frames += client.sent
    for frame in frames:
        data = b"\x00" + frame  # below RAW_MODE: one raw datagram
        (corpus / f"seed-{hashlib.sha1(data).hexdigest()[:16]}").write_bytes(data)


# -- the coverage replay -----------------------------------------------------------------------
def _coverage_child(workdir: Path) -> int:
    import coverage

    cov = coverage.Coverage(branch=True, source=["ipmi", "redfish"], data_file=None)
    cov.start()
    from bench.fuzzing import ErrorLog, FuzzFailure, network_guard

    with network_guard():
        for name in ("ipmi", "redfish"):
            stats_file = workdir / f"{name}.json"
            if not stats_file.exists():
                continue
            target = _make_target(name)
            target.errors = ErrorLog()  # not installed: failures were counted in the run
            for data in _replay_inputs(workdir, name):
                try:
                    target.run_input(data)
                except (FuzzFailure, Exception):  # noqa: B014, S112 - counted in the run
                    continue
            target.close()
    cov.stop()
    figures = {}
    for package in ("ipmi", "redfish"):
        out = workdir / f"coverage-{package}.json"
        # the socket front ends (server.py, the WebSocket console) are not in-process targets
        cov.json_report(outfile=str(out), include=[str(ROOT / package / "*")],
                        omit=[str(ROOT / package / m) for m in ("server.py", "console_ws.py")])
        totals = json.loads(out.read_text())["totals"]
        figures[package] = {
            "lines": _share(totals["covered_lines"], totals["num_statements"]),
            "branches": _share(totals["covered_branches"], totals["num_branches"]),
        }
    (workdir / "coverage.json").write_text(json.dumps(figures, indent=2))
    return 0


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / max(whole, 1):.1f}%)"


def _replay_inputs(workdir: Path, name: str) -> Iterator[bytes]:
    with open(workdir / f"{name}-inputs.bin", "rb") as inputs:
        while header := inputs.read(4):
            yield inputs.read(int.from_bytes(header, "little"))


if __name__ == "__main__":
    sys.exit(main())
