"""The open-file budget is checked before anything starts (no "Too many open files" later)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.util import free_ports

REPO = Path(__file__).resolve().parents[2]


def _serve_with_limit(limit: int, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bmc.cli", "serve", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, preexec_fn=lower)
    return done, time.monotonic() - began


def test_a_fleet_past_the_limit_is_refused_at_once_saying_what_to_do() -> None:
    ipmi, redfish = free_ports("udp", 300), free_ports("tcp", 300)
    done, took = _serve_with_limit(300, "--nodes", "300", "--ipmi-port-base", str(ipmi),
                                   "--redfish-port-base", str(redfish))
    assert done.returncode == 1
    assert "300 nodes need about" in done.stderr and "the hard limit is 300" in done.stderr
    assert "--address-base" in done.stderr
    assert took < 30  # at once: before any node or socket, not minutes later


def test_the_same_fleet_on_its_own_addresses_fits() -> None:
    ipmi, redfish = free_ports("udp"), free_ports("tcp")
    process = subprocess.Popen(
        [sys.executable, "-m", "bmc.cli", "serve", "--nodes", "300", "--address-base",
         "127.6.0.1", "--ipmi-port-base", str(ipmi), "--redfish-port-base", str(redfish)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300)))
    try:
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        for line in process.stdout:
            if "bmc-emulator ready: 300 nodes" in line:
                break
            assert time.monotonic() < deadline
        else:
            raise AssertionError(process.stderr.read() if process.stderr else "no output")
    finally:
        process.terminate()
        process.wait(15)
