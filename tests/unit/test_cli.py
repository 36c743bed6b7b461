"""The `bmc-emulator` command and the serve orchestration, with stand-in protocol servers."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import bmc.serve
from backends.memory import MemoryBackend
from bmc import __version__
from bmc.backend_settings import setting_names
from bmc.cli import main
from bmc.config import Config, default_config

REPO = Path(__file__).parents[2]


def runner() -> CliRunner:
    try:  # click < 8.2 mixes stderr into stdout unless told not to
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


class FakeServer:
    """Records what the orchestration does; `fail` makes start() raise like a port conflict."""

    def __init__(self, label: str, bindings: list[tuple[str, int, Any]], events: list[str],
                 fail: bool = False, on_start: Any = None) -> None:
        self.label, self.bindings, self.events = label, bindings, events
        self.fail, self.on_start = fail, on_start
        events.append(f"{label} created")

    def start(self) -> None:
        if self.fail:
            address, port, _ = self.bindings[0]
            raise OSError(98, f"{self.label} port {address}:{port}: Address already in use")
        self.events.append(f"{self.label} started")
        if self.on_start:
            self.on_start()

    def stop(self) -> None:
        self.events.append(f"{self.label} stopped")


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand-ins for both servers; the Redfish one sends SIGTERM to us once started."""
    events: list[str] = []
    monkeypatch.setattr(bmc.serve, "_ipmi_server", lambda config, nodes: FakeServer(
        "IPMI", bmc.serve._bindings(nodes, [n.ipmi for n in config.nodes]), events))
    monkeypatch.setattr(bmc.serve, "_redfish_server", lambda config, nodes: FakeServer(
        "Redfish", bmc.serve._bindings(nodes, [n.redfish for n in config.nodes]), events,
        on_start=lambda: os.kill(os.getpid(), signal.SIGTERM)))
    return events


def fail_server(monkeypatch: pytest.MonkeyPatch, which: str, events: list[str]) -> None:
    monkeypatch.setattr(bmc.serve, which, lambda config, nodes: FakeServer(
        "Redfish" if "redfish" in which else "IPMI",
        [("127.0.0.1", 8000 if "redfish" in which else 6230, None)], events, fail=True))


def test_version() -> None:
    result = runner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"bmc-emulator, version {__version__}"


def test_serve_help_lists_the_flags() -> None:
    result = runner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--nodes", "--bind", "--ipmi-port-base", "--redfish-port-base", "--config",
                 "--username", "--password"):
        assert flag in result.output


def test_serve_runs_until_sigterm(events: list[str]) -> None:
    result = runner().invoke(main, ["serve", "--password", "s3cret"])
    assert result.exit_code == 0, result.stderr
    # IPMI first, and everything stopped again (Redfish first: the reverse of starting)
    assert events == ["IPMI created", "IPMI started", "Redfish created", "Redfish started",
                      "Redfish stopped", "IPMI stopped"]
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NODE", "IPMI", "(UDP)", "REDFISH", "USER"]
    assert lines[1].split() == ["node-0", "127.0.0.1:6230", "http://127.0.0.1:8000", "admin"]
    assert lines[3].split() == ["node-2", "127.0.0.1:6232", "http://127.0.0.1:8002", "admin"]
    assert lines[-1] == "bmc-emulator ready: 3 nodes"
    assert "s3cret" not in result.stdout + result.stderr


def test_serve_passes_the_flags_on(events: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Config] = []
    real_run = bmc.serve.run
    monkeypatch.setattr(bmc.serve, "run",
                        lambda config, **kw: seen.append(config) or real_run(config, **kw))
    args = ["serve", "--nodes", "2", "--bind", "127.0.0.5", "--ipmi-port-base", "7000",
            "--redfish-port-base", "9000", "--username", "root", "--password", "calvin"]
    result = runner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    [config] = seen
    assert [(n.ipmi.host_port, n.redfish_url) for n in config.nodes] == [
        ("127.0.0.5:7000", "http://127.0.0.5:9000"), ("127.0.0.5:7001", "http://127.0.0.5:9001")]
    assert {(u.name, u.password) for n in config.nodes for u in n.users} == {("root", "calvin")}
    assert result.stdout.splitlines()[-1] == "bmc-emulator ready: 2 nodes"


def test_password_from_the_environment(events: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Config] = []
    real_run = bmc.serve.run
    monkeypatch.setattr(bmc.serve, "run",
                        lambda config, **kw: seen.append(config) or real_run(config, **kw))
    result = runner().invoke(main, ["serve"], env={"BMC_EMULATOR_PASSWORD": "fromenv"})
    assert result.exit_code == 0, result.stderr
    assert seen[0].nodes[0].users[0].password == "fromenv"


def test_a_bad_config_is_refused_before_anything_starts(
        tmp_path: Path, events: list[str]) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text("nodes:\n  - name: a\n  - name: b\n    ipmi: {port: 99999}\n")
    result = runner().invoke(main, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {path}:4: node 'b': ipmi.port: port 99999 is out of range 1..65535\n")
    assert events == [] and result.stdout == ""


def test_a_backend_refusing_its_settings_is_a_config_error(
        tmp_path: Path, events: list[str]) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text("nodes:\n  - name: a\n    backend: {type: memory, colour: red}\n"
                    "  - name: b\n    backend:\n      type: process\n"
                    "      command: [/no/such/program]\n")
    result = runner().invoke(main, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {path}:3: node 'a': backend.colour: unknown key (memory backend settings: "
        f"{', '.join(setting_names(MemoryBackend))})",
        f"error: {path}:7: node 'b': backend.command: '/no/such/program' is not an executable "
        "program"]
    assert events == []


def test_backend_flag_with_nodes(events: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Config] = []
    real_run = bmc.serve.run
    monkeypatch.setattr(bmc.serve, "run",
                        lambda config, **kw: seen.append(config) or real_run(config, **kw))
    result = runner().invoke(main, ["serve", "--backend", "memory", "--nodes", "1"])
    assert result.exit_code == 0, result.stderr
    assert [(n.name, n.backend) for n in seen[0].nodes] == [("node-0", "memory")]
    assert result.stdout.splitlines()[-1] == "bmc-emulator ready: 1 node"


def test_an_unknown_backend_flag_is_refused(events: list[str]) -> None:
    result = runner().invoke(main, ["serve", "--backend", "dokcer"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --backend: unknown backend type 'dokcer' (known: "
                                    "memory, process")
    assert events == []


def test_nodes_flag_with_a_config_listing_nodes_says_why(tmp_path: Path,
                                                       events: list[str]) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text("nodes:\n  - name: a\n")
    result = runner().invoke(main, ["serve", "--config", str(path), "--nodes", "4"])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: --nodes: refused: {path} lists its own nodes (1 at line 1); --nodes N only sets "
        "how many nodes are generated for a config without a `nodes:` list\n")


def test_a_bare_command_points_at_help() -> None:
    result = runner().invoke(main, [], prog_name="bmc-emulator")
    assert result.exit_code == 2
    assert "Try 'bmc-emulator --help' for help." in result.stderr
    assert "Missing command" in result.stderr


def test_bad_flags_are_refused(events: list[str]) -> None:
    result = runner().invoke(main, ["serve", "--password", "x" * 21])
    assert result.exit_code == 2
    assert result.stderr == "error: --password: longer than 20 bytes (the IPMI 2.0 limit)\n"
    result = runner().invoke(main, ["serve", "--ipmi-port-base", "70000"])
    assert result.exit_code == 2 and "70000" in result.stderr
    assert events == []


def test_ipmi_port_in_use(events: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fail_server(monkeypatch, "_ipmi_server", events)
    result = runner().invoke(main, ["serve"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "error: cannot start the IPMI server: IPMI port 127.0.0.1:6230: Address already in use")
    assert "ready" not in result.stdout
    assert "Redfish created" not in events


def test_redfish_port_in_use_stops_ipmi_again(
        events: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fail_server(monkeypatch, "_redfish_server", events)
    result = runner().invoke(main, ["serve"])
    assert result.exit_code == 1
    assert "error: cannot start the Redfish server: Redfish port 127.0.0.1:8000" in result.stderr
    assert events[-1] == "IPMI stopped"
    assert "ready" not in result.stdout


def test_run_closes_the_nodes_and_restores_signal_handlers(
        events: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []
    monkeypatch.setattr(bmc.serve.Node, "close", lambda node: closed.append(node.name))
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    out = io.StringIO()
    assert bmc.serve.run(default_config(), out=out) == 0
    assert closed == ["node-0", "node-1", "node-2"]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert out.getvalue().endswith("bmc-emulator ready: 3 nodes\n")


def test_a_stop_event_ends_run_without_signals(
        events: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bmc.serve, "_redfish_server",
                        lambda config, nodes: FakeServer("Redfish", [], events))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()  # as an embedding program would, from a thread
    assert bmc.serve.run(default_config(), stop=stop, out=io.StringIO()) == 0
    assert events[-2:] == ["Redfish stopped", "IPMI stopped"]


def test_the_default_serve_path_imports_neither_pydantic_nor_yaml() -> None:
    # startup time: pydantic and yaml cost ~100 ms and are needed only for a config file
    code = textwrap.dedent("""
        import sys
        import bmc.serve
        bmc.serve.run = lambda config, **kw: 0
        from bmc.cli import main
        try:
            main(["serve", "--nodes", "2", "--backend", "memory"])
        except SystemExit as exit:
            assert exit.code == 0, exit.code
        print(sorted(m for m in ("pydantic", "yaml") if m in sys.modules))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
