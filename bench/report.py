"""Turning samples into the printed tables (medians, min–max, ratios, targets) and JSON."""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import Samples
from bench.scale import ScaleResult
from bench.targets import Target
from bench.util import median

US = "us"


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool = False


METRICS = [
    Metric("start_ipmi_ms", "start -> first IPMI answer (probe)", "ms"),
    Metric("start_ipmitool_ms", "start -> first ipmitool -C 3 answer", "ms"),
    Metric("start_redfish_ms", "start -> first GET /redfish/v1", "ms"),
    Metric("ipmitool_c3_ms", "ipmitool -C 3 power status", "ms"),
    Metric("ipmitool_default_ms", "ipmitool power status, default cipher", "ms"),
    Metric("exec_cmds_per_s", "ipmitool exec kept session (-C 3)", "cmd/s",
           higher_is_better=True),
    Metric("pyghmi_cmds_per_s", "pyghmi kept session", "cmd/s", higher_is_better=True),
    Metric("pyghmi_p50_ms", "pyghmi kept session p50", "ms"),
    Metric("pyghmi_p99_ms", "pyghmi kept session p99", "ms"),
    Metric("rf_get_rps", "GET System, 16 connections", "req/s", higher_is_better=True),
    Metric("rf_get_p50_ms", "GET System p50", "ms"),
    Metric("rf_get_p99_ms", "GET System p99", "ms"),
    Metric("rss_idle_mib", "RSS idle", "MiB"),
    Metric("rss_after_mib", "RSS after the loads", "MiB"),
]


def num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def med(samples: dict[str, Samples], key: str, metric: str) -> float | None:
    values = samples[key].values.get(metric) if key in samples else None
    return median(values) if values else None


def _table(rows: Sequence[Sequence[str]], out: Callable[[str], None]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                      strict=True)]
        out("  ".join(cells).rstrip())
        if n == 0:
            out("  ".join("-" * w for w in widths))


def figures_table(targets: list[Target], samples: dict[str, Samples],
                  out: Callable[[str], None]) -> None:
    """Medians with [min–max] over every sample of every round."""
    rows = [["figure", "unit", *[t.label for t in targets]]]
    for metric in METRICS:
        cells = []
        for target in targets:
            values = samples[target.key].values.get(metric.key) if target.key in samples else None
            if values:
                spread = (f" [{num(min(values))}-{num(max(values))}]" if len(values) > 1 else "")
                cells.append(f"{num(median(values))}{spread}")
            else:
                cells.append("-")
        if any(c != "-" for c in cells):
            rows.append([metric.label, metric.unit, *cells])
    _table(rows, out)


def ratios_table(targets: list[Target], samples: dict[str, Samples],
                 out: Callable[[str], None]) -> None:
    """us/peer of the medians; '<' marks where we are better (lower time, higher rate)."""
    peers = [t for t in targets if t.key != US]
    rows = [["ratio us/peer (median)", *[f"us/{t.label}" for t in peers]]]
    for metric in METRICS:
        ours = med(samples, US, metric.key)
        cells = []
        for peer in peers:
            theirs = med(samples, peer.key, metric.key)
            if ours is None or not theirs:
                cells.append("-")
                continue
            ratio = ours / theirs
            better = ratio > 1 if metric.higher_is_better else ratio < 1
            cells.append(f"{ratio:.2f}x {'better' if better else 'worse'}")
        if any(c != "-" for c in cells):
            rows.append([f"{metric.label} ({metric.unit})", *cells])
    if len(rows) > 1 and peers:
        _table(rows, out)


# -- targets ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Goal:
    text: str
    met: bool | None  # None: could not be judged (a figure is missing)
    figures: str


def _goal(text: str, values: Sequence[float | None], check: Callable[..., bool],
          show: Callable[..., str]) -> Goal:
    if any(v is None for v in values):
        return Goal(text, None, "not measured")
    return Goal(text, check(*values), show(*values))


def goals(samples: dict[str, Samples], scale: list[ScaleResult]) -> list[Goal]:
    def m(key: str, metric: str) -> float | None:
        return med(samples, key, metric)

    sushy_first = [v for v in (m("sushy-fake", "start_redfish_ms"),
                               m("sushy-libvirt", "start_redfish_ms")) if v is not None]
    fastest_sushy = min(sushy_first) if sushy_first else None
    rss_idle = m(US, "rss_idle_mib")
    result = [
        _goal("start -> first ipmitool answer <= 100 ms (3 nodes, IPMI + Redfish)",
              [m(US, "start_ipmitool_ms")], lambda a: a <= 100, lambda a: f"{num(a)} ms"),
        _goal("first Redfish answer <= 0.5x sushy-emulator's (the faster driver)",
              [m(US, "start_redfish_ms"), fastest_sushy], lambda a, b: a <= 0.5 * b,
              lambda a, b: f"{num(a)} vs {num(b)} ms = {a / b:.2f}x"),
        _goal("ipmitool -C 3 power status <= 1.0x ipmi_sim's",
              [m(US, "ipmitool_c3_ms"), m("ipmi_sim", "ipmitool_c3_ms")],
              lambda a, b: a <= b, lambda a, b: f"{num(a)} vs {num(b)} ms = {a / b:.2f}x"),
        _goal("ipmitool default cipher <= 35 ms", [m(US, "ipmitool_default_ms")],
              lambda a: a <= 35, lambda a: f"{num(a)} ms"),
        *[_goal(f"kept-session cmds/s >= {factor}ipmi_sim's ({client})".replace("1x", ""),
                [m(US, metric), m("ipmi_sim", metric)], lambda a, b: a >= b,
                lambda a, b: f"{num(a)} vs {num(b)} = {a / b:.2f}x")
          for client, metric, factor in (("pyghmi", "pyghmi_cmds_per_s", "1x"),
                                         ("ipmitool exec", "exec_cmds_per_s", "1x"))],
        *[_goal(f"kept-session cmds/s >= 2x VirtualBMC's ({client})",
                [m(US, metric), m("vbmc", metric)], lambda a, b: a >= 2 * b,
                lambda a, b: f"{num(a)} vs {num(b)} = {a / b:.2f}x")
          for client, metric in (("pyghmi", "pyghmi_cmds_per_s"),
                                 ("ipmitool exec", "exec_cmds_per_s"))],
        _goal("Redfish GET >= 10x sushy-emulator fake req/s (16 connections)",
              [m(US, "rf_get_rps"), m("sushy-fake", "rf_get_rps")],
              lambda a, b: a >= 10 * b, lambda a, b: f"{num(a)} vs {num(b)} = {a / b:.1f}x"),
        _goal("Redfish GET p99 < 50 ms", [m(US, "rf_get_p99_ms")], lambda a: a < 50,
              lambda a: f"{num(a)} ms"),
        _goal("RSS after load <= 1.2x idle", [m(US, "rss_after_mib"), rss_idle],
              lambda a, b: a <= 1.2 * b, lambda a, b: f"{num(b)} -> {num(a)} MiB = {a / b:.2f}x"),
    ]
    result += _scale_goal(scale, 1000, 200, None)
    result += _scale_goal(scale, 10000, 500, 10.0)
    return result


def _scale_goal(scale: list[ScaleResult], nodes: int, rss_mb: float,
                ready_s: float | None) -> list[Goal]:
    """The target of `nodes` in one process: all answer, RSS under `rss_mb` MB, ready within
    `ready_s`, and (if swept) the sweep without errors; n/a where part was not measured."""
    what = (f"{nodes:,} nodes in one process: all answer, RSS < {rss_mb:g} MB"
            + (f", ready < {ready_s:g} s" if ready_s else "") + ", sweep without errors")
    runs = [s for s in scale if s.nodes == nodes]
    if not runs:
        return [Goal(what, None, "not measured")]
    goals = []
    for s in runs:
        rss = s.rss_after_mib
        small = rss is not None and rss * 1.048576 < rss_mb
        quick = ready_s is None or (s.ready_s is not None and s.ready_s < ready_s)
        clean = s.sweep_s is None or (s.sweep_redfish_errors == 0
                                      and s.sweep_ipmi_errors in (0, None)
                                      and s.sweep_nodes == s.nodes)
        met = False if not (small and quick and clean) or s.all_answer is False \
            else s.all_answer
        goals.append(Goal(
            what.replace(" in one process", f" in one process ({s.layout}"
                         f"{', HTTPS' if s.tls else ''})"), met,
            f"ready {num(s.ready_s)} s, IPMI {s.ipmi_answered}/{s.nodes}, Redfish "
            f"{s.redfish_answered}/{s.nodes}, sample: {s.sample_text}, RSS {num(rss)} MiB, "
            f"sweep: {_sweep_text(s)}" + (f" ({s.problem})" if s.problem else "")))
    return goals


def goals_table(items: list[Goal], out: Callable[[str], None]) -> None:
    rows = [["target", "met", "figures"]]
    for goal in items:
        met = "n/a" if goal.met is None else ("yes" if goal.met else "NO")
        rows.append([goal.text, met, goal.figures])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for n, row in enumerate(rows):
        out("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            out("  ".join("-" * w for w in widths))


def scale_table(results: list[ScaleResult], out: Callable[[str], None]) -> None:
    rows = [["nodes", "layout", "ready (s)", "RSS ready (MiB)", "RSS after (MiB)",
             "MiB/node", "IPMI answered", "Redfish answered", "sample", "sweep"]]
    for r in results:
        per_node = ((r.rss_after_mib or 0) / r.nodes) if r.rss_after_mib else None
        layout = r.layout + (" https" if r.tls else "")
        rows.append([str(r.nodes), layout, num(r.ready_s), num(r.rss_ready_mib),
                     num(r.rss_after_mib), num(per_node), f"{r.ipmi_answered}/{r.nodes}",
                     f"{r.redfish_answered}/{r.nodes}", r.sample_text
                     + (f"  {r.problem}" if r.problem else ""), _sweep_text(r)])
    _table(rows, out)


def _sweep_text(r: ScaleResult) -> str:
    if r.sweep_s is None:
        return "-"
    ipmi = "not measured" if r.sweep_ipmi_errors is None else str(r.sweep_ipmi_errors)
    return (f"{r.sweep_nodes}/{r.nodes} nodes in {r.sweep_s} s, errors IPMI {ipmi}, "
            f"Redfish {r.sweep_redfish_errors}")


# -- JSON ---------------------------------------------------------------------------------------
def write_json(path: Path, *, targets: list[Target], skipped: dict[str, str],
               samples: dict[str, Samples], scale: list[ScaleResult], items: list[Goal],
               settings: dict[str, Any], seconds: float) -> None:
    data = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": _cpus()},
        "settings": settings,
        "seconds": seconds,
        "skipped": skipped,
        "targets": {
            t.key: {
                "label": t.label,
                "notes": t.notes,
                "problems": samples[t.key].problems if t.key in samples else [],
                "tools": sorted(samples[t.key].tools) if t.key in samples else [],
                "samples": dict(samples[t.key].values) if t.key in samples else {},
                "medians": {k: median(v) for k, v in samples[t.key].values.items() if v}
                if t.key in samples else {},
            } for t in targets},
        "ratios_us_over_peer": {
            t.key: {m.key: ours / theirs for m in METRICS
                    if (ours := med(samples, US, m.key)) is not None
                    and (theirs := med(samples, t.key, m.key))}
            for t in targets if t.key != US},
        "goals": [{"target": g.text, "met": g.met, "figures": g.figures} for g in items],
        "scale": [r.as_dict() for r in scale],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def _cpus() -> int | None:
    import os

    return os.cpu_count()
