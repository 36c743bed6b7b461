"""bench.peer_scale's pure parts: the sweep's counting, when to stop growing, the inputs."""

from __future__ import annotations

import argparse
import ast
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from bench.peer_scale import (
    PeerResult,
    domains_xml,
    fake_systems,
    largest_reached,
    parse_counts,
    stop_reason,
    sweep,
    table,
)


def reached(nodes: int, rss: float = 10.0, **fields: object) -> PeerResult:
    base = {"answered": nodes, "sweep_ok": nodes, "sweep_s": 1.0, "rss_mib": rss}
    return PeerResult("peer", "IPMI only", nodes, nodes, **{**base, **fields})  # type: ignore


def test_sweep_counts_failures_and_exceptions_and_runs_in_parallel() -> None:
    running, peak, lock = 0, 0, threading.Lock()

    def call(i: int) -> str | None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1
        if i == 3:
            raise ValueError("boom")
        return "refused" if i % 10 == 0 else None

    done = sweep(range(40), call, parallel=8)
    assert (done.ok, done.errors) == (35, 5)  # 0, 10, 20, 30 refused; 3 raised
    assert done.first_error == "refused"
    assert 1 < peak <= 8


def test_sweep_counts_what_the_budget_left_unstarted_as_errors() -> None:
    done = sweep(range(6), lambda i: time.sleep(0.05), parallel=1, budget=0.01)
    assert done.ok < 6 and done.ok + done.errors == 6
    assert done.first_error == "not started: sweep budget spent"


def test_reached_needs_every_node_ready_and_every_sweep_call_ok() -> None:
    assert reached(10).reached
    assert not reached(10, answered=9).reached
    assert not reached(10, sweep_ok=9, sweep_errors=1).reached
    assert not reached(10, problem="not ready").reached


def test_stop_reason_stops_on_failure_and_projected_memory() -> None:
    assert stop_reason(reached(50, rss=50 * 40.0), 100, limit_mib=8192) is None
    why = stop_reason(reached(100, rss=100 * 47.0), 200, limit_mib=8192)
    assert why is not None and "9400 MiB" in why
    assert stop_reason(reached(50, answered=10), 100) is not None


def test_largest_reached_ignores_failed_counts_and_other_peers() -> None:
    results = [reached(1), reached(50), reached(100, sweep_errors=3, sweep_ok=97)]
    results.append(PeerResult("other", "Redfish only", 1000, 1, answered=1000, sweep_ok=1000))
    best = largest_reached(results, "peer")
    assert best is not None and best.nodes == 50
    assert largest_reached(results, "nobody") is None
    assert "peer: largest count reached: 50 nodes" in table(results)


def test_parse_counts() -> None:
    assert parse_counts("100, 1,50,1") == [1, 50, 100]
    assert parse_counts("") == []
    for bad in ("1,x", "0", "-5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_counts(bad)


def test_inputs_hold_n_distinct_domains_and_systems() -> None:
    domains = ET.fromstring(domains_xml(300)).findall("domain")
    assert len({d.findtext("name") for d in domains}) == 300
    assert len({d.findtext("uuid") for d in domains}) == 300
    systems = fake_systems(70000)  # more than 16 bits: MACs must stay distinct
    macs = {s["nics"][0]["mac"] for s in systems}  # type: ignore[index]
    assert len(macs) == len({s["uuid"] for s in systems}) == 70000
    # sushy-emulator reads its config as Python: the systems must round-trip through repr
    assert ast.literal_eval(repr(systems[:3])) == systems[:3]
