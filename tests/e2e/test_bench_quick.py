"""`python -m bench --quick --only us` keeps working: it measures us, prints its tables, exits 0.

No peer is installed here (quick mode never installs); the full comparison is run by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60


def test_quick_bench_of_us_prints_its_tables(tmp_path: Path) -> None:
    results = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "us",
                           "--json", str(results)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for heading in ("bmc-emulator benchmark: 1/1 round(s)", "figure", "Targets",
                    "Many BMCs in one process"):
        assert heading in out, out
    rows = {line.split("  ")[0].strip(): line for line in out.splitlines()}
    # the figures every machine with ipmitool and wrk (or the Python client) can take
    assert "GET System, 16 connections" in rows, out
    assert "RSS idle" in rows, out
    data = json.loads(results.read_text())
    us = data["targets"]["us"]
    assert us["medians"]["rf_get_rps"] > 0
    assert us["medians"]["start_redfish_ms"] > 0
    assert [s["nodes"] for s in data["scale"]] == [1, 100]
    assert all(s["all_answer"] for s in data["scale"]), data["scale"]
