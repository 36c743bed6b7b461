"""`python -m bench`: our emulator side by side with its peers, then many BMCs in one process.

Targets run interleaved, one at a time (round 1: A B C, round 2: C B A, ...), so that machine
noise lands on all of them alike; every figure is the median over the rounds, with min-max.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench import install, measure, report, scale
from bench.httpload import have_wrk
from bench.probes import have_ipmitool
from bench.targets import Target, all_targets

FULL_BUDGET = 540.0  # seconds for the rounds; the scale runs come on top (~1 min)
QUICK_BUDGET = 35.0


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    keys = [t.key for t in all_targets()]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="one short round, scale 1 and 100 nodes, no installs (CI smoke)")
    parser.add_argument("--only", metavar="KEYS",
                        help=f"comma-separated targets to run, of: {', '.join(keys)}")
    parser.add_argument("--rounds", type=int, metavar="N",
                        help="rounds of every target (default 5, quick 1)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument("--no-install", action="store_true",
                        help="never apt-get/pip install; skip what is missing")
    parser.add_argument("--scale", metavar="COUNTS",
                        help="node counts for the scale run (default 1,100,1000; quick 1,100; "
                             "'none' to skip)")
    parser.add_argument("--layout", choices=("ports", "addresses", "both"),
                        help="scale run: port ranges on 127.0.0.1, one 127.x.y.z address per "
                             "node (ports 623/8000), or both (default: both for full runs)")
    parser.add_argument("--sweep", action="store_true",
                        help="scale run: also sweep the fleet (one ipmitool power status and "
                             "one GET System per node, 32 clients at once)")
    parser.add_argument("--tls", action="store_true",
                        help="scale run: Redfish over HTTPS (serve --tls); every Redfish probe "
                             "makes a TLS handshake")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, configs)")
    args = parser.parse_args(argv)
    if args.only:
        unknown = set(args.only.split(",")) - set(keys)
        if unknown:
            parser.error(f"unknown target(s) {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(keys)}")
    return args


def _install(targets: list[Target]) -> None:
    installer = install.Installer(log)
    wanted = {t.key for t in targets}
    steps = [("ipmitool", lambda: installer.tool("ipmitool", "ipmitool")),
             ("wrk", lambda: installer.tool("wrk", "wrk"))]
    if "ipmi_sim" in wanted:
        steps.append(("ipmi_sim", lambda: installer.tool("ipmi_sim", "openipmi")))
    if wanted & {"vbmc", "sushy-fake", "sushy-libvirt"}:
        steps.append(("VirtualBMC/sushy-tools", installer.python_peers))
    for name, step in steps:
        problem = step()
        if problem:
            log(f"cannot install {name}: {problem}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    targets = [t for t in all_targets() if not args.only or t.key in args.only.split(",")]
    if not args.quick and not args.no_install:
        _install(targets)
    skipped = {t.key: reason for t in targets if (reason := t.unavailable())}
    runnable = [t for t in targets if t.key not in skipped]
    for key, reason in skipped.items():
        log(f"skipping {key}: {reason}")
    rounds = args.rounds or (1 if args.quick else 5)
    settings = measure.QUICK if args.quick else measure.Settings()
    budget = QUICK_BUDGET if args.quick else FULL_BUDGET
    counts = _counts(args)
    layouts = _layouts(args)
    workdir = Path(tempfile.mkdtemp(prefix="bmc-bench-"))
    samples = {t.key: measure.Samples() for t in runnable}
    try:
        done = _rounds(runnable, rounds, settings, samples, workdir, began + budget)
        scale_results = scale.run_all(counts, workdir / "scale", layouts, log,
                                      sweep=args.sweep, tls=args.tls)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.monotonic() - began
    shown = [t for t in targets if t.key in samples]
    _print(shown, skipped, samples, scale_results, done, rounds, settings, seconds)
    items = report.goals(samples, scale_results)
    print("\nTargets")
    report.goals_table(items, print)
    if args.json:
        report.write_json(args.json, targets=shown, skipped=skipped, samples=samples,
                          scale=scale_results, items=items,
                          settings={"rounds_done": done, **asdict(settings),
                                    "quick": args.quick}, seconds=seconds)
        log(f"results written to {args.json}")
    if args.keep:
        log(f"work dir kept: {workdir}")
    return 0


def _counts(args: argparse.Namespace) -> list[int]:
    if args.scale == "none":
        return []
    if args.scale:
        return [int(n) for n in args.scale.split(",")]
    return [1, 100] if args.quick else [1, 100, 1000]


def _layouts(args: argparse.Namespace) -> list[str]:
    layout = args.layout or ("ports" if args.quick else "both")
    return ["ports", "addresses"] if layout == "both" else [layout]


def _rounds(targets: list[Target], rounds: int, settings: measure.Settings,
            samples: dict[str, measure.Samples], workdir: Path, deadline: float) -> int:
    """Run the rounds (alternating the order) until done or past `deadline`; rounds done."""
    for n in range(rounds):
        order = targets if n % 2 == 0 else list(reversed(targets))
        for target in order:
            if time.monotonic() > deadline:
                log(f"time budget used up after {n} round(s)")
                return n
            log(f"round {n + 1}/{rounds}: {target.label}")
            try:
                measure.one_round(target, workdir / f"round-{n}" / target.key, settings,
                                  samples[target.key])
            except Exception as exc:  # one broken peer must not stop the others
                samples[target.key].problem(f"{type(exc).__name__}: {exc}")
    return rounds


def _print(targets: list[Target], skipped: dict[str, str], samples: dict[str, measure.Samples],
           scale_results: list[scale.ScaleResult], done: int, rounds: int,
           settings: measure.Settings, seconds: float) -> None:
    http_tool = "wrk (1 thread)" if have_wrk() else "Python client (wrk not installed)"
    print(f"bmc-emulator benchmark: {done}/{rounds} round(s), interleaved, {seconds:.0f} s; "
          f"medians [min-max] over all samples")
    print(f"clients: ipmitool {'-N 1 -R 1' if have_ipmitool() else '(not installed)'}, "
          f"pyghmi kept session ({settings.pyghmi_commands} cmds / {settings.pyghmi_seconds} s "
          f"max), HTTP load {http_tool}, {settings.http_concurrency} connections, "
          f"{settings.http_seconds:g} s")
    for target in targets:
        for note in target.notes:
            print(f"  - {note}")
        if target.pyghmi_sha1:
            print(f"  - {target.label}: pyghmi forced to cipher suite 3 (SHA1): its suite-17 "
                  "attempt fails against this server")
    for key, reason in skipped.items():
        print(f"  - NOT MEASURED {key}: {reason}")
    print()
    report.figures_table(targets, samples, print)
    print()
    report.ratios_table(targets, samples, print)
    problems = [(t.label, p) for t in targets for p in samples[t.key].problems]
    if problems:
        print("\nProblems seen")
        for label, problem in problems:
            print(f"  - {label}: {problem}")
    if scale_results:
        print("\nMany BMCs in one process (bmc-emulator serve --nodes N, default backend)")
        report.scale_table(scale_results, print)
