"""Fault injection (bmc/faults.py): reading `faults:`, the seeded decisions, stuck power, and
the Redfish app's answers (Werkzeug's test client; the real servers are in tests/e2e)."""

from __future__ import annotations

import logging
import math
from concurrent.futures import Future
from pathlib import Path

import pytest
from waitress.channel import ClientDisconnected

from backends.base import BackendError, PowerState
from backends.memory import MemoryBackend
from bmc import faults as faults_module
from bmc.config import ConfigError, load_config
from bmc.faults import MAX_STUCK, Faults, FaultState, build, counters, parse, set_faults
from bmc.node import Node, PowerAction
from bmc.power import NodeBusy
from redfish import NODE_ENVIRON_KEY
from redfish.app import create_app


# -- reading --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "expected"), [
    ({"latency": 0.5}, Faults(latency=(0.5, 0.5))),
    ({"latency": "0.2-1.5"}, Faults(latency=(0.2, 1.5))),
    ({"latency": [0, 2]}, Faults(latency=(0.0, 2.0))),
    ({"latency": "0.25"}, Faults(latency=(0.25, 0.25))),
    ({"ipmi_drop": 30}, Faults(ipmi_drop=30.0)),
    ({"redfish_error_rate": 12.5, "redfish_error_status": 500},
     Faults(redfish_error_rate=12.5, redfish_error_status=500)),
    ({"stuck_power": True}, Faults(stuck_power=True)),
    ({"unreachable": 10}, Faults(unreachable=10.0)),
    ({"unreachable": True}, Faults(unreachable=math.inf)),
    ({"ipmi_drop": 5, "seed": 7}, Faults(ipmi_drop=5.0, seed=7)),
])
def test_good_faults(raw: dict, expected: Faults) -> None:
    values, problems = parse(raw)
    assert problems == []
    assert build(values) == expected


def test_nothing_injected_is_no_faults_at_all() -> None:
    for raw in ({}, {"latency": 0, "ipmi_drop": 0, "stuck_power": False, "unreachable": False},
                {"seed": 3}, {"redfish_error_status": 500}):
        values, problems = parse(raw)
        assert problems == [] and build(values) is None, raw


def test_every_problem_at_once() -> None:
    _values, problems = parse({"latency": "2-1", "ipmi_drop": 101, "redfish_error_rate": "x",
                               "redfish_error_status": 404, "stuck_power": "yes",
                               "unreachable": -3, "seed": 1.5, "colour": "blue"})
    found = dict(problems)
    assert set(found) == {"latency", "ipmi_drop", "redfish_error_rate", "redfish_error_status",
                          "stuck_power", "unreachable", "seed", "colour"}
    assert "min <= max" in found["latency"]
    assert "out of range 0..100" in found["ipmi_drop"]
    assert "not one of 500, 503" in found["redfish_error_status"]
    assert found["colour"].startswith("unknown key")
    assert parse([1, 2]) == ({}, [("", "must be a mapping (key: value), got a list")])
    assert dict(parse({"latency": math.nan})[1])["latency"].startswith("must be a finite")
    assert dict(parse({"latency": 61})[1])["latency"].endswith("<= 60")
    assert dict(parse({"ipmi_drop": True})[1])["ipmi_drop"].startswith("must be a number")


def test_a_nodes_faults_override_the_defaults_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "bmc.yaml"
    path.write_text("defaults:\n"
                    "  faults: {latency: 0.1, ipmi_drop: 10}\n"
                    "nodes:\n"
                    "  - name: a\n"
                    "    faults: {ipmi_drop: 0, stuck_power: true}\n"
                    "  - name: b\n"
                    "  - name: c\n"
                    "    faults: {latency: 0, ipmi_drop: 0}\n")
    a, b, c = load_config(path).nodes
    assert a.faults == Faults(latency=(0.1, 0.1), stuck_power=True)
    assert b.faults == Faults(latency=(0.1, 0.1), ipmi_drop=10.0)
    assert c.faults is None
    # generated nodes get the defaults' faults too
    path.write_text("defaults:\n  faults: {unreachable: true}\n")
    assert {n.faults for n in load_config(path).nodes} == {Faults(unreachable=math.inf)}
    # and a file without faults has none
    path.write_text("nodes:\n  - name: a\n")
    assert load_config(path).nodes[0].faults is None


def test_config_problems_name_file_line_node_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bmc.yaml"
    path.write_text("defaults:\n"
                    "  faults:\n"
                    "    ipmi_drop: 200\n"
                    "nodes:\n"
                    "  - name: a\n"
                    "    faults:\n"
                    "      latency: slow\n"
                    "      unreachable: -1\n"
                    "  - name: b\n"
                    "    faults: 3\n"
                    "  - name: c\n"
                    "    port: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    messages = [str(p) for p in caught.value.problems]
    assert f"{path}:3: defaults.faults.ipmi_drop: 200 is out of range 0..100 percent" \
        in messages
    assert any(m.startswith(f"{path}:7: node 'a': faults.latency: 'slow' is not seconds")
               for m in messages), messages
    assert f"{path}:8: node 'a': faults.unreachable: -1 is out of range 0..604800 seconds" \
        in messages
    assert any(m.startswith(f"{path}:10: node 'b': faults:") for m in messages), messages
    assert f"{path}:12: node 'c': port: unknown key" in messages  # and the rest, at once


# -- decisions ------------------------------------------------------------------------------------
def test_seeded_drops_replay_and_match_the_rate() -> None:
    def drops(seed: int, name: str = "n") -> list[bool]:
        state = FaultState(Faults(ipmi_drop=30.0, seed=seed), name)
        return [state.ipmi_datagram() is None for _ in range(10_000)]

    first = drops(1)
    assert first == drops(1)  # same seed, same node: the same datagrams are dropped
    assert first != drops(2) and first != drops(1, "other")  # per node, per seed
    assert 2700 < sum(first) < 3300
    none = FaultState(Faults(ipmi_drop=0.0, stuck_power=True), "n")
    every = FaultState(Faults(ipmi_drop=100.0), "n")
    assert all(none.ipmi_datagram() == 0.0 for _ in range(1000))
    assert all(every.ipmi_datagram() is None for _ in range(1000))
    assert every.counters["ipmi_dropped"] == 1000


def test_latency_is_drawn_from_its_range() -> None:
    fixed = FaultState(Faults(latency=(0.5, 0.5)), "n")
    assert fixed.ipmi_datagram() == 0.5 and fixed.redfish_request() == (None, 0.5)
    ranged = FaultState(Faults(latency=(0.2, 1.5), seed=3), "n")
    delays = [ranged.ipmi_datagram() for _ in range(2000)]
    assert all(d is not None and 0.2 <= d <= 1.5 for d in delays)
    assert min(delays) < 0.3 and max(delays) > 1.4  # spread over the range


def test_redfish_errors_follow_the_rate_and_status() -> None:
    state = FaultState(Faults(redfish_error_rate=25.0, redfish_error_status=500, seed=5), "n")
    verdicts = [state.redfish_request()[0] for _ in range(4000)]
    assert set(verdicts) == {None, "error"}
    assert 850 < verdicts.count("error") < 1150
    assert state.counters["redfish_errors_500"] == verdicts.count("error")


def test_unreachable_ends_by_itself_and_logs_it_once(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    state = FaultState(Faults(unreachable=2.0), "n", clock=lambda: now[0])
    assert state.ipmi_datagram() is None and state.redfish_request() == ("close", 0.0)
    now[0] = 101.9
    assert state.unreachable()
    now[0] = 102.0
    with caplog.at_level(logging.INFO, "bmc.faults"):
        assert not state.unreachable() and not state.unreachable()
        assert state.ipmi_datagram() == 0.0 and state.redfish_request() == (None, 0.0)
    assert [r.getMessage() for r in caplog.records] == [
        "n: fault injection: reachable again (unreachable for 2 s is over)"]
    forever = FaultState(Faults(unreachable=math.inf), "n", clock=lambda: now[0])
    now[0] = 1e9
    assert forever.unreachable()
    assert forever.describe() == {"unreachable": True, "unreachable_left": "until cleared"}


# -- stuck power (bmc/node.py) --------------------------------------------------------------------
@pytest.fixture
def node() -> Node:
    node = Node("node-1", MemoryBackend())
    node.users.add("admin", "password")
    yield node
    node.close()


def test_stuck_power_accepts_and_never_carries_out(node: Node,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    assert node.faults is None  # off by default
    with caplog.at_level(logging.INFO, "bmc.faults"):
        set_faults(node, Faults(stuck_power=True), "test")
    futures: list[Future[None]] = [node.submit_power(PowerAction.ON) for _ in range(MAX_STUCK)]
    with pytest.raises(NodeBusy):  # bounded: each stuck action is kept
        node.submit_power(PowerAction.ON)
    assert node.settle(1.0)
    assert node.power_state is PowerState.OFF and node.backend.power_state() is PowerState.OFF
    assert node.power_transition is None and not any(f.done() for f in futures)
    # new faults that keep stuck_power keep them stuck; clearing fails them, never runs them
    set_faults(node, Faults(stuck_power=True, latency=(0.1, 0.1)), "test")
    assert not any(f.done() for f in futures)
    with caplog.at_level(logging.INFO, "bmc.faults"):
        set_faults(node, None, "test")
    for future in futures:
        with pytest.raises(BackendError, match="never carried out"):
            future.result(0)
    assert node.power_state is PowerState.OFF
    assert counters(node) == {"power_actions_stuck": MAX_STUCK}
    assert [r.getMessage() for r in caplog.records] == [
        "node-1: fault injection (test): power actions stuck",
        "node-1: fault injection cleared (test)"]
    node.power(PowerAction.ON, timeout=5)  # without the fault, actions work again
    assert node.power_state is PowerState.ON


# -- the Redfish app ------------------------------------------------------------------------------
def client(node: Node):  # noqa: ANN201 - Flask's test client
    test_client = create_app().test_client()
    test_client.environ_base[NODE_ENVIRON_KEY] = node
    return test_client


@pytest.mark.parametrize(("status", "message_id"), [(503, "ServiceTemporarilyUnavailable"),
                                                    (500, "InternalError")])
def test_redfish_injected_errors_are_redfish_errors(node: Node, status: int,
                                                    message_id: str) -> None:
    set_faults(node, Faults(redfish_error_rate=100.0, redfish_error_status=status), "test")
    for path in ("/redfish/v1", "/redfish/v1/Systems/node-1"):
        answer = client(node).get(path, auth=("admin", "password"))
        assert answer.status_code == status
        assert answer.headers["OData-Version"] == "4.0"
        assert (answer.headers.get("Retry-After") == "2") == (status == 503)
        error = answer.get_json()["error"]
        assert error["code"] == f"Base.1.22.1.{message_id}"
        assert error["@Message.ExtendedInfo"][0]["MessageId"].endswith(message_id)
    set_faults(node, None, "test")
    assert client(node).get("/redfish/v1").status_code == 200


def test_redfish_unreachable_drops_the_connection_quietly(
        node: Node, caplog: pytest.LogCaptureFixture) -> None:
    set_faults(node, Faults(unreachable=math.inf), "test")
    with pytest.raises(ClientDisconnected):  # waitress closes the connection, answering nothing
        client(node).get("/redfish/v1")
    with caplog.at_level(logging.INFO, "waitress"):
        logging.getLogger("waitress").info("Client disconnected while serving /redfish/v1")
        logging.getLogger("waitress").info("Client disconnected while serving /x")
    # the first was the injected close's (filtered); a real disconnect is still logged
    assert [r.getMessage() for r in caplog.records] == [
        "Client disconnected while serving /x"]
    assert counters(node) == {"redfish_closed_unreachable": 1}


def test_no_faults_cost_one_check(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node without faults never reaches the fault code (it would raise here)."""
    def boom(*_args: object) -> None:
        raise AssertionError("fault code ran for a node without faults")

    monkeypatch.setattr(faults_module.FaultState, "redfish_request", boom)
    monkeypatch.setattr(faults_module.FaultState, "stuck_action", boom)
    assert client(node).get("/redfish/v1").status_code == 200
    node.power(PowerAction.ON, timeout=5)


def test_the_readme_example_loads(tmp_path: Path) -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    section = readme.read_text().split("## Fault injection", 1)[1]
    path = tmp_path / "faults.yaml"
    path.write_text(section.split("```yaml", 1)[1].split("```", 1)[0])
    flaky, stuck, gone = load_config(path).nodes
    assert flaky.faults == Faults(latency=(0.2, 1.5), ipmi_drop=30.0, redfish_error_rate=20.0,
                                  seed=42)
    assert stuck.faults == Faults(stuck_power=True)
    assert gone.faults == Faults(unreachable=60.0)
