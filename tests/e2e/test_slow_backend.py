"""A slow backend delays only its own node: ipmitool and Redfish answer at once elsewhere,
the action is answered at once and carried out afterwards (issue: non-blocking power path)."""

from __future__ import annotations

import subprocess
import time

import requests

DELAY = 2.0  # seconds every power action of the slow node takes


def _run(cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return done, time.monotonic() - began


def test_a_slow_node_never_holds_up_ipmi_or_redfish(emulator_factory) -> None:
    bmc = emulator_factory(nodes=[
        {"name": "slow", "backend": {"type": "memory", "action_delay": DELAY}},
        {"name": "quick", "backend": {"type": "memory"}},
    ])
    slow, quick = bmc.nodes
    auth = (bmc.username, bmc.password)
    done, took = _run(bmc.ipmitool(slow, "chassis", "power", "on"))
    assert done.returncode == 0 and "Up/On" in done.stdout, done.stderr
    assert took < DELAY, f"chassis control waited for the backend ({took:.2f} s)"
    # meanwhile: the other node and the busy node itself answer at once
    done, took = _run(bmc.ipmitool(quick, "chassis", "power", "status"))
    assert done.returncode == 0 and took < 1.5
    done, _ = _run(bmc.ipmitool(slow, "chassis", "power", "status"))
    assert "is off" in done.stdout  # honest: not on until the backend says so
    system = requests.get(f"{slow.redfish_url}/redfish/v1/Systems/slow", auth=auth, timeout=5)
    assert system.json()["PowerState"] == "PoweringOn"
    deadline = time.monotonic() + DELAY + 10
    while "is on" not in _run(bmc.ipmitool(slow, "chassis", "power", "status"))[0].stdout:
        assert time.monotonic() < deadline, "the accepted action was never carried out"
        time.sleep(0.2)
    # the SEL has the power-on, as if it had been instant
    sel = subprocess.run(bmc.ipmitool(slow, "sel", "elist"), capture_output=True, text=True,
                         timeout=30)
    assert "S0/G0: working" in sel.stdout, sel.stdout


def test_a_slow_redfish_reset_is_a_task_that_completes(emulator_factory) -> None:
    bmc = emulator_factory(nodes=[
        {"name": "slow", "backend": {"type": "memory", "action_delay": DELAY}}])
    node = bmc.nodes[0]
    auth = (bmc.username, bmc.password)
    base = f"{node.redfish_url}/redfish/v1"
    began = time.monotonic()
    reply = requests.post(f"{base}/Systems/slow/Actions/ComputerSystem.Reset",
                          json={"ResetType": "On"}, auth=auth, timeout=10)
    assert reply.status_code == 202, reply.text
    assert time.monotonic() - began < DELAY
    monitor = reply.headers["Location"]
    deadline = time.monotonic() + DELAY + 10
    while (status := requests.get(f"{node.redfish_url}{monitor}", auth=auth,
                                  timeout=5)).status_code == 202:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert status.status_code == 200 and status.json()["TaskState"] == "Completed"
    system = requests.get(f"{base}/Systems/slow", auth=auth, timeout=5).json()
    assert system["PowerState"] == "On"
