"""End-to-end fixtures: the real `bmc-emulator serve`, started as a subprocess on free ports.

    def test_power(emulator_factory):
        bmc = emulator_factory(nodes=2)                     # 2 memory nodes, fresh process
        node = bmc.nodes[0]                                 # .name .ipmi_port .redfish_url
        subprocess.run(bmc.ipmitool(node, "chassis", "power", "on"), check=True)
        requests.get(f"{node.redfish_url}/redfish/v1/Systems", auth=(bmc.username, bmc.password))

    def test_read_only(emulator):                           # 2 nodes shared by the module

`emulator_factory(nodes=[{"name": "a", "backend": {"type": "memory", "power_on": True}}])`
takes node dicts as in the YAML config; endpoints left out get free ports. The process is
stopped at teardown, and its stderr is shown with any failing test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.util import free_ports, port_is_free

REPO = Path(__file__).resolve().parents[2]
SERVE = [sys.executable, "-m", "bmc.cli", "serve"]
READY = "bmc-emulator ready:"
HOST = "127.0.0.1"
#: generous: the first start on a slow CI machine imports Flask, waitress and cryptography
READY_TIMEOUT = float(os.environ.get("BMC_E2E_READY_TIMEOUT", "30"))
STOP_TIMEOUT = 15.0


# -- ports ------------------------------------------------------------------------------------
def free_port(kind: str, taken: set[int] | None = None, count: int = 1) -> int:
    """The first of `count` consecutive ports that are free (for `kind`) and not in `taken`.

    Never a fixed port: 6230/8000 may belong to a running emulator or another test. The
    picking itself is the benchmark harness's (one picker for tests and bench).
    """
    return free_ports(kind, count, taken)


# -- a running emulator -----------------------------------------------------------------------
@dataclass(frozen=True)
class EmulatorNode:
    name: str
    ipmi_port: int
    redfish_url: str
    ipmi_address: str = HOST


@dataclass
class Emulator:
    """One `bmc-emulator serve` process and what it serves."""

    nodes: list[EmulatorNode]
    username: str
    password: str
    process: subprocess.Popen[bytes]
    workdir: Path
    config_path: Path | None = None
    stopped: bool = field(default=False, init=False)  # stopped on purpose (not crashed)

    def node(self, name: str) -> EmulatorNode:
        return next(n for n in self.nodes if n.name == name)

    def ipmitool(self, node: EmulatorNode | int = 0, *command: str,
                 interface: str = "lanplus") -> list[str]:
        """An ipmitool command line for `node` (a node or its index) with the default user."""
        if isinstance(node, int):
            node = self.nodes[node]
        return ["ipmitool", "-I", interface, "-H", node.ipmi_address, "-p", str(node.ipmi_port),
                "-U", self.username, "-P", self.password, "-N", "1", "-R", "3", *command]

    @property
    def ca_path(self) -> str:
        """The lab CA that signs the made HTTPS certificates, as the emulator printed it."""
        match = re.search(r"certificates are signed by (\S+): trust it", self.stdout)
        assert match, f"no lab CA in the emulator's output:\n{self.stdout}"
        return match.group(1)

    @property
    def stdout(self) -> str:
        return _read(self.workdir / "stdout.txt")

    @property
    def stderr(self) -> str:
        return _read(self.workdir / "stderr.txt")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Signal the process and wait for it; kills it (and fails) if it does not exit."""
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"bmc-emulator ignored {signal.Signals(sig).name} for "
                                 f"{timeout}s\n--- stderr ---\n{self.stderr}") from None


def _scheme(tls: Any) -> str:
    """http or https, from a node's `redfish.tls` (or `defaults.redfish_tls`) as given."""
    if isinstance(tls, dict):
        return "https" if tls.get("enabled", True) else "http"
    return "https" if tls else "http"


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


class StartFailed(AssertionError):
    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(f"{message}\n--- bmc-emulator stderr ---\n{stderr}")
        self.stderr = stderr


class Launcher:
    """Starts emulators for one test (or module) and stops them all at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.running: list[Emulator] = []
        self._count = 0

    def __call__(self, nodes: int | Sequence[dict[str, Any]] = 2, *, username: str = "admin",
                 password: str = "password", defaults: dict[str, Any] | None = None,
                 args: Sequence[str] = (), log_level: str = "debug") -> Emulator:
        """Write a config for `nodes` (a count or node dicts) and start an emulator with it."""
        for attempt in range(3):
            specs = self.node_specs(nodes)
            config = {"defaults": {"username": username, "password": password,
                                   **(defaults or {})},
                      "nodes": specs}
            path = self.write_config(config)
            tls = (defaults or {}).get("redfish_tls")
            expected = [EmulatorNode(n["name"], n["ipmi"]["port"],
                                     f"{_scheme(n['redfish'].get('tls', tls))}://"
                                     f"{n['redfish']['address']}:{n['redfish']['port']}",
                                     n["ipmi"]["address"]) for n in specs]
            try:
                return self.launch(["--config", str(path), "--log-level", log_level, *args],
                                   expected, username, password, config_path=path)
            except StartFailed as exc:
                # another process took a port between our check and the bind: pick again
                if "in use" not in exc.stderr or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def node_specs(self, nodes: int | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Complete node dicts: a name, the memory backend and free ports where not given."""
        given = [{} for _ in range(nodes)] if isinstance(nodes, int) else list(nodes)
        taken = {n[p]["port"] for n in given for p in ("ipmi", "redfish") if "port" in n.get(p, {})}
        specs = []
        for index, node in enumerate(given):
            spec = {"name": f"node-{index}", "backend": {"type": "memory"}, **node}
            for proto, kind in (("ipmi", "udp"), ("redfish", "tcp")):
                endpoint = {"address": HOST, **spec.get(proto, {})}
                endpoint.setdefault("port", free_port(kind, taken))
                spec[proto] = endpoint
            specs.append(spec)
        return specs

    def write_config(self, config: dict[str, Any] | str) -> Path:
        """A config file in the work dir, from a dict or YAML text."""
        self._count += 1
        path = self.workdir / f"config-{self._count}.yaml"
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        path.write_text(text)
        return path

    def launch(self, args: Sequence[str], nodes: list[EmulatorNode], username: str,
               password: str, config_path: Path | None = None) -> Emulator:
        """Start `bmc-emulator serve ARGS` and wait for its ready line."""
        self._count += 1
        workdir = self.workdir / f"run-{self._count}"
        workdir.mkdir()
        with open(workdir / "stdout.txt", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
            process = subprocess.Popen([*SERVE, *args], cwd=REPO, stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=err, env=_env())
        emulator = Emulator(nodes, username, password, process, workdir, config_path)
        self.running.append(emulator)
        _LIVE.append(emulator)
        self._wait_ready(emulator)
        return emulator

    def launch_flags(self, nodes: int, ipmi_port_base: int, redfish_port_base: int,
                     username: str = "admin", password: str = "password",
                     args: Sequence[str] = ()) -> Emulator:
        """Start with flags only (no config file): the built-in node list."""
        expected = [EmulatorNode(f"node-{i}", ipmi_port_base + i,
                                 f"http://{HOST}:{redfish_port_base + i}") for i in range(nodes)]
        flags = ["--nodes", str(nodes), "--bind", HOST, "--ipmi-port-base", str(ipmi_port_base),
                 "--redfish-port-base", str(redfish_port_base), "--username", username,
                 "--password", password, *args]
        return self.launch(flags, expected, username, password)

    # helpers for tests, so that they need not import this module
    free_port = staticmethod(free_port)
    port_is_free = staticmethod(port_is_free)
    host = HOST

    def run_to_exit(self, args: Sequence[str], timeout: float = READY_TIMEOUT
                    ) -> subprocess.CompletedProcess[str]:
        """Run `bmc-emulator serve ARGS` expecting it to exit by itself (a refused start)."""
        try:
            return subprocess.run([*SERVE, *args], cwd=REPO, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout, env=_env())
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"bmc-emulator did not exit within {timeout}s: {exc.stderr!r}"
                                 ) from None

    def _wait_ready(self, emulator: Emulator) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while READY not in emulator.stdout:
            if emulator.process.poll() is not None:
                self._forget(emulator)
                raise StartFailed(f"bmc-emulator exited with {emulator.process.returncode} "
                                  "before it was ready", emulator.stderr)
            if time.monotonic() > deadline:
                emulator.process.kill()
                emulator.process.wait()
                self._forget(emulator)
                raise StartFailed(f"bmc-emulator not ready after {READY_TIMEOUT}s",
                                  emulator.stderr)
            time.sleep(0.02)

    def _forget(self, emulator: Emulator) -> None:
        self.running.remove(emulator)
        _LIVE.remove(emulator)

    def close(self) -> None:
        """Stop every emulator still running; fail if one had died by itself."""
        crashed = []
        for emulator in list(self.running):
            self._forget(emulator)
            if emulator.process.poll() is not None and not emulator.stopped:
                crashed.append(emulator)
                continue
            emulator.stop()
        if crashed:
            details = "\n".join(f"exit {e.process.returncode}:\n{e.stderr}" for e in crashed)
            raise AssertionError(f"bmc-emulator died during the test\n{details}")


def _env() -> dict[str, str]:
    # PYTHONUNBUFFERED: stderr logs reach the file even if the process is killed
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


#: every emulator running now, for the failure report hook
_LIVE: list[Emulator] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the stderr of every running emulator to a failing test's report."""
    report = yield
    if report.failed:
        for emulator in _LIVE:
            report.sections.append((f"bmc-emulator stderr ({emulator.workdir.name})",
                                    emulator.stderr[-20000:]))
    return report


#: figures that tests measured, printed at the end of every run (not only with `pytest -s`)
_FIGURES: list[str] = []


@pytest.fixture
def measured() -> Callable[[str], None]:
    """`measured("SOL keystroke-to-echo latency: median 13.1 ms")`: a line for the summary."""
    return _FIGURES.append


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("measured")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[Launcher]:
    """`emulator_factory(nodes=N or [node dicts], username=, password=) -> Emulator`."""
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.close()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """Two memory nodes shared by a module's tests (state carries over between them)."""
    launcher = Launcher(tmp_path_factory.mktemp("emulator"))
    yield launcher(nodes=2)
    launcher.close()
