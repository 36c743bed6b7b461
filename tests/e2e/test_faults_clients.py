"""Fault injection against the real server, seen by real clients (ipmitool, freeipmi, requests,
sushy): a lossy, slow, erroring, stuck or unreachable node, and its neighbours unharmed;
faults set and cleared at run time with `bmc-emulator nodes faults`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import sushy
from conftest import REPO, Emulator, EmulatorNode
from e2e_helpers import run
from sushy.connector import Connector

AUTH = ("admin", "password")


def ipmitool(node: EmulatorNode, *command: str, retries: int = 1) -> tuple[int, str, float]:
    """(exit status, output, seconds) of one ipmitool run with a short timeout (-N 1)."""
    start = time.monotonic()
    result = run(["ipmitool", "-I", "lanplus", "-H", node.ipmi_address, "-p",
                  str(node.ipmi_port), "-U", "admin", "-P", "password", "-N", "1", "-R",
                  str(retries), *command])
    return result.returncode, result.stdout + result.stderr, time.monotonic() - start


def nodes_cli(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bmc.cli", "nodes", *args, "--socket",
                           str(socket)], cwd=REPO, capture_output=True, text=True, timeout=60)


def shown(socket: Path, name: str) -> dict[str, Any]:
    result = nodes_cli(socket, "show", name)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_node_dropping_every_datagram_fails_fast_while_another_answers(
        emulator_factory: Any) -> None:
    bmc: Emulator = emulator_factory(nodes=[{"name": "lossy", "faults": {"ipmi_drop": 100}},
                                            {"name": "fine"}])
    status, output, seconds = ipmitool(bmc.node("lossy"), "power", "status")
    assert status != 0 and "Unable to establish" in output, output
    assert seconds < 10  # -R 1 -N 1: two tries, not a hang
    status, output, _ = ipmitool(bmc.node("fine"), "power", "status")
    assert status == 0 and "Chassis Power is off" in output, output
    # Redfish is not IPMI: the lossy node's Redfish answers
    assert requests.get(f"{bmc.node('lossy').redfish_url}/redfish/v1/Systems", auth=AUTH,
                        timeout=5).status_code == 200
    assert "lossy: fault injection (config): IPMI drop 100 %" in bmc.stderr


def test_half_the_datagrams_dropped_a_retrying_client_still_gets_through(
        emulator_factory: Any, tmp_path: Path) -> None:
    """freeipmi retransmits each packet (here every 100 ms, for up to 20 s): with half the
    datagrams dropped (seeded: the same ones each run) every command still succeeds. The
    session limit is raised because a dropped Close Session leaves its session open until
    it idles out, as on a real BMC behind a lossy link. (ipmitool is not used here: it does
    not retransmit RAKP messages but restarts the whole handshake a few times, and gives up
    after ~60 s on most runs at 50 % loss.)"""
    socket = tmp_path / "manage.sock"
    bmc: Emulator = emulator_factory(
        nodes=[{"name": "half", "ipmi": {"session_limit": 63},
                "faults": {"ipmi_drop": 50, "seed": 1}}],
        args=["--manage-socket", str(socket)])
    node = bmc.node("half")
    runs = 6
    for _ in range(runs):
        result = run(["ipmi-chassis", "-h", f"{node.ipmi_address}:{node.ipmi_port}", "-u",
                      "admin", "-p", "password", "-D", "LAN_2_0", "--session-timeout=20000",
                      "--retransmission-timeout=100", "--get-chassis-status"], timeout=40)
        assert result.returncode == 0 and "System Power" in result.stdout, result.stderr
    counted = shown(socket, "half")["faults_injected"]
    dropped, received = counted["ipmi_dropped"], counted["ipmi_received"]
    assert received >= runs * 5  # each run is a whole session: 5+ datagrams got through
    assert 0.3 < dropped / (dropped + received) < 0.7, counted


def test_latency_slows_one_node_and_no_other(emulator_factory: Any) -> None:
    delay = 0.4
    bmc: Emulator = emulator_factory(nodes=[{"name": "slow", "faults": {"latency": delay}},
                                            {"name": "fast"}])
    slow, fast = bmc.node("slow"), bmc.node("fast")
    # IPMI: one ipmitool session to the slow node (a dozen round trips, each held ~0.4 s by
    # the server's loop) while the fast node is asked three times
    slow_run: list[tuple[int, str, float]] = []
    thread = threading.Thread(target=lambda: slow_run.append(ipmitool(slow, "power", "status",
                                                                      retries=3)))
    thread.start()
    time.sleep(0.3)
    fast_runs = [ipmitool(fast, "power", "status") for _ in range(3)]
    still_running = thread.is_alive()
    thread.join(60)
    assert slow_run and slow_run[0][0] == 0, slow_run
    assert slow_run[0][2] >= 5 * delay  # at least 5 delayed round trips
    assert still_running  # the fast node answered three times while the slow one worked
    assert all(status == 0 for status, _, _ in fast_runs), fast_runs
    assert max(seconds for _, _, seconds in fast_runs) < 1.0, fast_runs
    # Redfish: the same, with requests
    slow_times: list[float] = []

    def slow_requests() -> None:
        for _ in range(3):
            start = time.monotonic()
            answer = requests.get(f"{slow.redfish_url}/redfish/v1/Systems", auth=AUTH,
                                  timeout=10)
            assert answer.status_code == 200
            slow_times.append(time.monotonic() - start)

    thread = threading.Thread(target=slow_requests)
    thread.start()
    fast_times = []
    with requests.Session() as session:
        for _ in range(5):
            start = time.monotonic()
            assert session.get(f"{fast.redfish_url}/redfish/v1/Systems", auth=AUTH,
                               timeout=10).status_code == 200
            fast_times.append(time.monotonic() - start)
    thread.join(30)
    assert len(slow_times) == 3 and min(slow_times) >= delay, slow_times
    assert max(fast_times) < 0.3, fast_times


def test_redfish_errors_on_every_request(emulator_factory: Any) -> None:
    bmc: Emulator = emulator_factory(nodes=[
        {"name": "busy", "faults": {"redfish_error_rate": 100}},
        {"name": "broken", "faults": {"redfish_error_rate": 100, "redfish_error_status": 500}}])
    busy, broken = bmc.node("busy"), bmc.node("broken")
    for path in ("/redfish/v1", "/redfish/v1/Systems/busy"):
        answer = requests.get(f"{busy.redfish_url}{path}", auth=AUTH, timeout=5)
        assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"
        assert answer.headers["OData-Version"] == "4.0"
        assert answer.json()["error"]["code"] == "Base.1.22.1.ServiceTemporarilyUnavailable"
    answer = requests.get(f"{broken.redfish_url}/redfish/v1/Systems", auth=AUTH, timeout=5)
    assert answer.status_code == 500 and "Retry-After" not in answer.headers
    assert answer.json()["error"]["code"] == "Base.1.22.1.InternalError"
    # sushy (what Ironic uses) raises its server-side error, after its retries
    connector = Connector(busy.redfish_url, server_side_retries=2,
                          server_side_retries_delay=0.01, default_request_timeout=5)
    with pytest.raises(sushy.exceptions.ServerSideError) as caught:
        sushy.Sushy(busy.redfish_url, auth=sushy.auth.BasicAuth(*AUTH),
                    connector=connector).get_system("/redfish/v1/Systems/busy")
    assert caught.value.status_code == 503
    # IPMI is not Redfish: it answers
    assert ipmitool(busy, "power", "status")[0] == 0


def test_stuck_power_is_accepted_and_never_done(emulator_factory: Any) -> None:
    bmc: Emulator = emulator_factory(nodes=[{"name": "stuck", "faults": {"stuck_power": True}}])
    node = bmc.node("stuck")
    status, output, _ = ipmitool(node, "power", "on")
    assert status == 0 and "Chassis Power Control: Up/On" in output, output
    answer = requests.post(f"{node.redfish_url}/redfish/v1/Systems/stuck/Actions/"
                           "ComputerSystem.Reset", json={"ResetType": "On"}, auth=AUTH,
                           timeout=10)
    assert answer.status_code == 202, answer.text
    task = answer.headers["Location"]
    time.sleep(1.5)
    status, output, _ = ipmitool(node, "power", "status")
    assert "Chassis Power is off" in output, output
    system = requests.get(f"{node.redfish_url}/redfish/v1/Systems/stuck", auth=AUTH,
                          timeout=5).json()
    assert system["PowerState"] == "Off"
    monitor = requests.get(f"{node.redfish_url}{task}", auth=AUTH, timeout=5)
    assert monitor.status_code == 202  # a task monitor answers 202 while the task runs
    tasks = requests.get(f"{node.redfish_url}/redfish/v1/TaskService/Tasks", auth=AUTH,
                         timeout=5).json()["Members"]
    states = [requests.get(f"{node.redfish_url}{t['@odata.id']}", auth=AUTH,
                           timeout=5).json()["TaskState"] for t in tasks]
    assert states == ["Running"]


def test_unreachable_for_a_while_then_back_by_itself(emulator_factory: Any,
                                                     tmp_path: Path) -> None:
    socket = tmp_path / "manage.sock"
    bmc: Emulator = emulator_factory(nodes=[{"name": "away"}, {"name": "here"}],
                                     args=["--manage-socket", str(socket)])
    away, here = bmc.node("away"), bmc.node("here")
    kept = requests.Session()  # a connection open before: closed too
    assert kept.get(f"{away.redfish_url}/redfish/v1", timeout=5).ok
    result = nodes_cli(socket, "faults", "away", "--unreachable", "3")
    assert result.returncode == 0, result.stderr
    gone = time.monotonic()
    assert ipmitool(away, "power", "status")[0] != 0
    for client in (kept, requests):
        with pytest.raises(requests.ConnectionError):
            client.get(f"{away.redfish_url}/redfish/v1", auth=AUTH, timeout=5)
    assert ipmitool(here, "power", "status")[0] == 0  # the neighbour never noticed
    assert requests.get(f"{here.redfish_url}/redfish/v1", timeout=5).ok
    # back by itself, without anyone clearing it
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{away.redfish_url}/redfish/v1", timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    back = time.monotonic() - gone
    assert 2.5 < back < 6, back
    assert ipmitool(away, "power", "status")[0] == 0
    assert "away: fault injection: reachable again (unreachable for 3 s is over)" in bmc.stderr
    counted = shown(socket, "away")["faults_injected"]
    assert counted["ipmi_dropped_unreachable"] >= 2  # -R 1: two tries
    assert counted["redfish_closed_unreachable"] >= 2
    # the per-request closes are not logged (only the change is)
    assert "Client disconnected" not in bmc.stderr


def test_faults_set_shown_and_cleared_at_run_time(emulator_factory: Any, tmp_path: Path) -> None:
    socket = tmp_path / "manage.sock"
    bmc: Emulator = emulator_factory(nodes=[{"name": "n"}], args=["--manage-socket", str(socket)],
                                     log_level="info")
    node = bmc.node("n")
    assert "faults" not in shown(socket, "n")  # off by default: nothing to show
    result = nodes_cli(socket, "faults", "n", "--ipmi-drop", "100", "--redfish-errors", "100",
                       "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["faults"] == {
        "ipmi_drop": 100.0, "redfish_error_rate": 100.0, "redfish_error_status": 503, "seed": 3}
    assert ipmitool(node, "power", "status")[0] != 0
    assert requests.get(f"{node.redfish_url}/redfish/v1", timeout=5).status_code == 503
    state = shown(socket, "n")
    assert state["faults"]["ipmi_drop"] == 100.0
    assert state["faults_injected"]["ipmi_dropped"] >= 2
    assert state["faults_injected"]["redfish_errors_503"] == 1
    # bad input: every problem, nothing changed
    bad = nodes_cli(socket, "faults", "n", "--ipmi-drop", "200", "--latency", "5-1")
    assert bad.returncode == 2
    assert "faults.ipmi_drop: 200 is out of range 0..100 percent" in bad.stderr, bad.stderr
    assert "faults.latency: '5-1'" in bad.stderr
    assert shown(socket, "n")["faults"]["ipmi_drop"] == 100.0
    assert nodes_cli(socket, "faults", "nobody", "--stuck-power").returncode == 1
    # cleared: both protocols answer again; the counters stay for the record
    result = nodes_cli(socket, "faults", "n", "--clear")
    assert result.returncode == 0 and json.loads(result.stdout)["faults"] is None, result.stderr
    assert ipmitool(node, "power", "status")[0] == 0
    assert requests.get(f"{node.redfish_url}/redfish/v1", timeout=5).status_code == 200
    assert shown(socket, "n")["faults_injected"]["redfish_errors_503"] == 1
    log = bmc.stderr
    assert log.count("n: fault injection (management API): IPMI drop 100 %, Redfish 503 on "
                     "100 % of requests") == 1
    assert log.count("n: fault injection cleared (management API)") == 1
