"""The containerized lab end to end: build the images, `up` compose/e2e.yml on free host ports,
drive the three servers with ipmitool, Redfish, `sol activate` and a browser, `down -v`.

Needs a Docker daemon (started here as root if none runs: tests/docker_env.py) and the images'
base, imported from debootstrap (no registry). Image layers stay in the daemon between runs,
so only the first run builds for real. BMC_LAB_SCREENSHOT names where the noVNC screenshot is
saved (default: the test's tmp dir; docs/lab-novnc.png is one such run's, committed).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pexpect
import pytest
import requests
import yaml

from bench.util import free_ports
from tests.docker_env import DockerUnavailable, ensure_base_image, ensure_dockerd

REPO = Path(__file__).resolve().parents[2]
PROJECT = "bmc-lab-e2e"
STACK = "e2e"
SERVERS = [f"{STACK}-server-0{n}" for n in (1, 2, 3)]
USER, PASSWORD = "ipmiusr", "test"
TAG = "e2e-test"  # not `latest`: a developer's own lab images stay as they are
BUILD_TIMEOUT = 900  # a cold build (apt + pip); warm: seconds
UP_TIMEOUT = 180
# the module's stack is built and started in the first test's setup: a cold build on a fresh
# CI machine takes minutes, past the suite's default per-test timeout
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + UP_TIMEOUT + 120)


@dataclass
class Lab:
    env: dict[str, str]
    ipmi_base: int
    redfish_base: int
    novnc_base: int
    timings: dict[str, float]

    def compose(self, *args: str, timeout: float = 120, check: bool = True
                ) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "-p", PROJECT, "-f", str(REPO / "compose/e2e.yml"), *args]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    def docker(self, *args: str, timeout: float = 30) -> str:
        result = subprocess.run(["docker", *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def ipmitool(self, index: int, *command: str, host: str = "127.0.0.1",
                 port: int | None = None) -> list[str]:
        return ["ipmitool", "-I", "lanplus", "-H", host, "-p", str(port or self.ipmi_base + index),
                "-U", USER, "-P", PASSWORD, "-R", "3", "-N", "2", *command]

    def running(self, container: str) -> bool:
        return self.docker("inspect", "-f", "{{.State.Running}}", container) == "true"

    def wait_running(self, container: str, expected: bool, timeout: float = 20) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.running(container) == expected:
                return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"{container} running={not expected} after {timeout}s")

    def lab_ip(self, container: str) -> str:
        return self.docker("inspect", "-f",
                           f'{{{{(index .NetworkSettings.Networks "bmc-lab-{STACK}").IPAddress}}}}',
                           container)


def _extra_ca_certs() -> str:
    """The host's own CA certificates (a TLS-intercepting proxy's), for pip in the build."""
    certs = sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))
    return "".join(path.read_text() for path in certs)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    for tool in ("docker-compose", "docker", "ipmitool"):
        assert shutil.which(tool), f"{tool} is not installed (bash scripts/test.sh installs it)"
    try:
        host = ensure_dockerd()
        base = ensure_base_image()
    except DockerUnavailable as exc:
        if os.geteuid() != 0:
            pytest.skip(f"no Docker daemon and not root to start one: {exc}")
        raise
    taken: set[int] = set()
    ipmi = free_ports("udp", 3, taken)
    redfish = free_ports("tcp", 3, taken)
    novnc = free_ports("tcp", 3, taken)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEV_", "E2E_", "LAB_", "COMPOSE_"))}
    env.update({
        "DOCKER_HOST": host, "DOCKER_SOCKET": host.removeprefix("unix://"),
        "BASE_IMAGE": base, "LAB_TAG": TAG, "EXTRA_CA_CERTS": _extra_ca_certs(),
        "E2E_IPMI_PORTS": f"{ipmi}-{ipmi + 2}", "E2E_REDFISH_PORTS": f"{redfish}-{redfish + 2}",
        "E2E_NOVNC_PORTS": f"{novnc}-{novnc + 2}",
    })
    lab = Lab(env, ipmi, redfish, novnc, {})
    _clear_leftovers(lab)  # of a run killed half-way
    started = time.monotonic()
    lab.compose("build", timeout=BUILD_TIMEOUT)
    lab.timings["build"] = time.monotonic() - started
    started = time.monotonic()
    try:
        lab.compose("up", "-d", timeout=UP_TIMEOUT)
        _wait_healthy(lab, [*SERVERS, f"{STACK}-bmc", f"{STACK}-novnc",
                            *(f"{STACK}-virtualbmc-0{n}" for n in (1, 2, 3))])
        lab.timings["up"] = time.monotonic() - started
        yield lab
    except BaseException:
        print(lab.compose("logs", "--no-color", "--tail", "60", check=False).stdout)
        raise
    finally:
        lab.compose("down", "-v", "--remove-orphans", check=False, timeout=120)
        print(f"\nlab timings: {', '.join(f'{k} {v:.1f}s' for k, v in lab.timings.items())}")


def _clear_leftovers(lab: Lab) -> None:
    """What a run killed half-way left: the project's containers, and its network (Compose v1
    can leave two of one name, which `down` then cannot remove: "ambiguous")."""
    lab.compose("down", "-v", "--remove-orphans", check=False)
    label = f"label=com.docker.compose.project={PROJECT}"
    containers = lab.docker("ps", "-aq", "--filter", label).split()
    if containers:
        lab.docker("rm", "-f", *containers)
    networks = lab.docker("network", "ls", "-q", "--filter", f"name=^{PROJECT}$").split()
    if networks:
        lab.docker("network", "rm", *networks)


def _wait_healthy(lab: Lab, containers: list[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        states = {c: lab.docker("inspect", "-f", "{{.State.Health.Status}}", c)
                  for c in containers}
        if all(state == "healthy" for state in states.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not healthy after {timeout}s: {states}")
        time.sleep(0.5)


# -- power: IPMI off, Redfish on, the container follows -------------------------------------------
def test_ipmi_power_off_stops_the_container_and_redfish_starts_it(lab: Lab) -> None:
    server = SERVERS[0]
    assert lab.running(server)
    status = subprocess.run(lab.ipmitool(0, "chassis", "power", "status"), capture_output=True,
                            text=True, timeout=30, check=True)
    assert "Chassis Power is on" in status.stdout
    subprocess.run(lab.ipmitool(0, "chassis", "power", "off"), check=True, timeout=30,
                   capture_output=True)
    lab.timings["power off"] = lab.wait_running(server, False)
    system = f"http://127.0.0.1:{lab.redfish_base}/redfish/v1/Systems/{server}"
    assert requests.get(system, auth=(USER, PASSWORD), timeout=10).json()["PowerState"] == "Off"
    reply = requests.post(f"{system}/Actions/ComputerSystem.Reset", json={"ResetType": "On"},
                          auth=(USER, PASSWORD), timeout=30)
    assert reply.status_code in (200, 202, 204), reply.text
    lab.timings["power on"] = lab.wait_running(server, True)
    status = subprocess.run(lab.ipmitool(0, "chassis", "power", "status"), capture_output=True,
                            text=True, timeout=30, check=True)
    assert "Chassis Power is on" in status.stdout
    _wait_healthy(lab, [server], timeout=30)  # booted again: desktop and getty are back


# -- the serial console --------------------------------------------------------------------------
def test_sol_activate_shows_the_getty_and_logs_in(lab: Lab) -> None:
    server = SERVERS[1]
    sol = pexpect.spawn(" ".join(lab.ipmitool(1, "sol", "activate")), timeout=20)
    try:
        sol.expect_exact("[SOL Session operational.")
        sol.send("\r")  # the getty prints its prompt again
        sol.expect_exact(f"{server} login:")
        sol.sendline("lab")
        sol.expect_exact("Password:")
        sol.sendline("lab")
        sol.expect(r"\$ ")
        sol.sendline("echo on-$(hostname)-$(tty)")
        sol.expect_exact(f"on-{server}-/dev/console")
        sol.sendline("exit")
        sol.expect_exact(f"{server} login:")  # the getty comes back after a logout
        sol.send("~.")
        sol.expect(pexpect.EOF)
    finally:
        sol.close(force=True)


# -- the old lab's names on the lab network -------------------------------------------------------
def test_old_lab_names_answer_at_standard_ports(lab: Lab) -> None:
    resolved = lab.docker("exec", f"{STACK}-novnc", "getent", "hosts",
                          f"{STACK}-virtualbmc-02", f"{STACK}-redfish-02")
    addresses = {line.split()[0] for line in resolved.splitlines()}
    relay_ip = lab.lab_ip(f"{STACK}-virtualbmc-02")
    assert addresses == {relay_ip}
    status = subprocess.run(lab.ipmitool(1, "chassis", "power", "status", host=relay_ip,
                                         port=623),
                            capture_output=True, text=True, timeout=30, check=True)
    assert "Chassis Power is on" in status.stdout
    systems = requests.get(f"http://{relay_ip}:8000/redfish/v1/Systems", auth=(USER, PASSWORD),
                           timeout=10).json()
    assert [m["@odata.id"] for m in systems["Members"]] == [f"/redfish/v1/Systems/{SERVERS[1]}"]


def test_agent_registration_is_written_for_the_lab_network(lab: Lab) -> None:
    from tests.unit.test_agent_config import check_static

    text = lab.docker("exec", f"{STACK}-bmc", "cat", "/var/lib/bmc-agent/static.yaml")
    hosts = check_static(yaml.safe_load(text))
    assert [h["id"] for h in hosts] == SERVERS
    assert hosts[2]["control_endpoints"][0]["endpoint"] == f"{STACK}-bmc:{lab.ipmi_base + 2}"
    assert hosts[2]["vnc_endpoint"]["endpoint"] == f"ws://{STACK}-novnc:6082/websockify"
    # the agent's view is the real one: dial it from inside the lab network
    probe = lab.docker("exec", f"{STACK}-novnc", "python3", "-c",
                       "import urllib.request as u; print(u.urlopen("
                       f"'http://{STACK}-bmc:8002/redfish/v1', timeout=5).status)")
    assert probe == "200"


# -- the desktop in a browser ---------------------------------------------------------------------
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1100,860"]
#: noVNC's UI marks the page when the RFB connection is up; the canvas is the remote screen
CONNECTED_JS = """(() => {
  const canvas = document.querySelector('#noVNC_container canvas');
  const status = document.getElementById('noVNC_status');
  return JSON.stringify({
    connected: document.documentElement.classList.contains('noVNC_connected'),
    status: status ? status.textContent : '',
    width: canvas ? canvas.width : 0, height: canvas ? canvas.height : 0});
})()"""
#: colours on the remote screen: a blank (all one colour) desktop has one
PIXELS_JS = """(() => {
  const canvas = document.querySelector('#noVNC_container canvas');
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = new Map();
  for (let i = 0; i < data.length; i += 4 * 97) {
    const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    colours.set(key, (colours.get(key) || 0) + 1);
  }
  return JSON.stringify([...colours.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8));
})()"""
DESKTOP = 0x23527C  # server-init.sh's xsetroot colour
TERMINAL = 0x101820  # its xterm's background


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's WebSocket."""

    def __init__(self, connection: Any) -> None:
        self.connection, self.next_id = connection, 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.connection.send(json.dumps({"id": self.next_id, "method": method,
                                               "params": params}))
        while True:  # events come in between; bounded by the caller's timeout
            message = json.loads(await self.connection.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of `expression`; None if it threw (the page is still loading)."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result or "value" not in result["result"]:
            return None
        return json.loads(result["result"]["value"])


def _page_websocket(port: int, deadline: float) -> str:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("chromium's DevTools endpoint did not come up")


async def _novnc_session(ws_url: str, page: str, screenshot: Path) -> dict[str, Any]:
    import websockets

    async with websockets.connect(ws_url, max_size=64 * 1024 * 1024) as connection:
        tools = DevTools(connection)
        await tools.call("Page.enable")
        await tools.call("Page.navigate", url=page)
        state: dict[str, Any] = {}
        for _ in range(150):  # 30 s
            state = await tools.evaluate(CONNECTED_JS) or {}
            if state.get("connected") and state.get("width"):
                break
            await asyncio.sleep(0.2)
        colours: list[list[int]] = []
        for _ in range(50):  # the first frame update may take a moment: 10 s
            colours = await tools.evaluate(PIXELS_JS) or []
            if len(colours) > 2:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # let the status bar fade in the picture
        shot = await tools.call("Page.captureScreenshot", format="png")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return {**state, "colours": colours}


def test_novnc_in_headless_chromium_shows_the_desktop(lab: Lab, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed (bash scripts/test.sh installs it)"
    screenshot = Path(os.environ.get("BMC_LAB_SCREENSHOT", tmp_path / "lab-novnc.png"))
    debug_port = free_ports("tcp", 1)
    profile = tmp_path / "chromium-profile"
    browser = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
         f"--remote-debugging-port={debug_port}", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        _wait_healthy(lab, [SERVERS[0]], timeout=30)  # its VNC server answers
        started = time.monotonic()
        ws_url = _page_websocket(debug_port, time.monotonic() + 30)
        page = f"http://127.0.0.1:{lab.novnc_base}/vnc.html?autoconnect=true&resize=off"
        state = asyncio.run(asyncio.wait_for(_novnc_session(ws_url, page, screenshot), 60))
        lab.timings["novnc"] = time.monotonic() - started
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait(5)
    print(f"\nnoVNC screenshot: {screenshot}; state: {state}")
    assert state["connected"], state
    assert "Connected" in state["status"], state  # noVNC's own words
    assert (state["width"], state["height"]) == (1024, 768), state  # the Xvfb screen
    colours = {colour for colour, _ in state["colours"]}
    assert DESKTOP in colours and TERMINAL in colours, state["colours"]
    assert screenshot.read_bytes().startswith(b"\x89PNG") and screenshot.stat().st_size > 10_000


# -- down -v leaves nothing behind --------------------------------------------------------------
def test_down_leaves_nothing_behind(lab: Lab) -> None:
    """Last in the module: takes the lab down itself and looks for what is left."""
    started = time.monotonic()
    lab.compose("down", "-v", "--remove-orphans", timeout=120)
    lab.timings["down"] = time.monotonic() - started
    containers = lab.docker("ps", "-a", "--format", "{{.Names}}",
                            "--filter", f"label=com.docker.compose.project={PROJECT}")
    assert containers == ""
    names = lab.docker("ps", "-a", "--format", "{{.Names}}").split()
    assert not [n for n in names if n.startswith(f"{STACK}-")], names
    assert f"bmc-lab-{STACK}" not in lab.docker("network", "ls", "--format", "{{.Name}}").split()
    volumes = lab.docker("volume", "ls", "--format", "{{.Name}}").split()
    assert not [v for v in volumes if v.startswith(f"bmc-lab-{STACK}")], volumes
