"""The `docker` backend end to end: `bmc-emulator serve` with docker nodes, a real Docker daemon
(tests/docker_env.py), the real ipmitool (power, boot device, SEL, SOL through pexpect) and
Redfish over HTTP.

Two nodes share one emulator for the module: `created` (the backend makes its container from
the base image) and `existing` (a container the test made, named with `container:`). Power
actions may complete after the client's answer (the node acts on a worker), so every check
polls for the expected state with a bounded wait.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
import requests
from conftest import Emulator, EmulatorNode, Launcher

from tests.docker_env import (
    docker_client,
    dockerd_or_skip,
    ensure_base_image,
)

TIMEOUT = 30.0  # generous: a loaded 2-core machine
#: the first run on a machine builds the base image (debootstrap, 1-2 min) in a fixture
pytestmark = pytest.mark.timeout(400)
VNC = "vnc://127.0.0.1:5901"  # where the container's VNC server would listen


@pytest.fixture(scope="module")
def docker_host() -> str:
    return dockerd_or_skip()


@pytest.fixture(scope="module")
def client(docker_host: str) -> Iterator[Any]:
    ensure_base_image()
    client = docker_client(docker_host)
    yield client
    client.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, docker_host: str,
        client: Any) -> Iterator[tuple[Emulator, dict[str, str]]]:
    """The emulator and, by node name, each node's container name."""
    image = ensure_base_image()
    tag = uuid.uuid4().hex[:8]
    containers = {"created": f"bmc-e2e-created-{tag}", "existing": f"bmc-e2e-existing-{tag}"}
    client.api.create_container(image, ["/bin/bash"], name=containers["existing"], tty=True,
                                stdin_open=True)
    common = {"type": "docker", "socket": docker_host, "stop_timeout": 2}
    launcher = Launcher(tmp_path_factory.mktemp("docker"))
    try:
        bmc = launcher(nodes=[
            {"name": "created", "backend": {**common, "container": containers["created"],
                                            "image": image, "command": ["/bin/bash"],
                                            "graphical_console": VNC}},
            {"name": "existing", "backend": {**common, "container": containers["existing"]}},
        ])
        yield bmc, containers
    finally:
        launcher.close()
        for name in containers.values():
            with contextlib.suppress(Exception):
                client.api.remove_container(name, force=True, v=True)


# -- helpers ----------------------------------------------------------------------------------
def ipmi(bmc: Emulator, node: EmulatorNode, *command: str) -> str:
    result = subprocess.run(bmc.ipmitool(node, *command), capture_output=True, text=True,
                            timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"ipmitool {' '.join(command)}: {result.stderr}"
    return result.stdout


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def docker_state(client: Any, name: str) -> dict[str, Any]:
    """The container's State ({} while it does not exist: the node may still be making it)."""
    import docker.errors

    try:
        return client.api.inspect_container(name)["State"]
    except docker.errors.NotFound:
        return {}


def power_on(bmc: Emulator, node: EmulatorNode, client: Any, container: str) -> None:
    ipmi(bmc, node, "chassis", "power", "on")
    wait_until(lambda: docker_state(client, container).get("Running"), "the container to run")
    wait_until(lambda: "is on" in ipmi(bmc, node, "chassis", "power", "status"),
               "IPMI to say on")


def system_url(node: EmulatorNode) -> str:
    return f"{node.redfish_url}/redfish/v1/Systems/{node.name}"


def in_container(client: Any, name: str, *command: str) -> str:
    result = client.containers.get(name).exec_run(list(command))
    return result.output.decode(errors="replace")


# -- tests ------------------------------------------------------------------------------------
def test_ipmi_power_on_boots_the_container_with_the_boot_override(
        lab: tuple[Emulator, dict[str, str]], client: Any) -> None:
    bmc, containers = lab
    for node_name in ("created", "existing"):
        node, container = bmc.node(node_name), containers[node_name]
        ipmi(bmc, node, "chassis", "bootdev", "pxe")
        power_on(bmc, node, client, container)
        boot = in_container(client, container, "cat", "/run/bmc/boot")
        assert "BMC_BOOT_DEVICE=Pxe" in boot and f"BMC_NODE_NAME={node_name}" in boot
    # the container the backend made has them in its environment too
    env = in_container(client, containers["created"], "sh", "-c", "cat /proc/1/environ")
    assert "BMC_BOOT_DEVICE=Pxe" in env.split("\0")


def test_docker_stop_from_outside_is_off_in_both_protocols_and_logged(
        lab: tuple[Emulator, dict[str, str]], client: Any, docker_host: str) -> None:
    bmc, containers = lab
    node, container = bmc.node("existing"), containers["existing"]
    power_on(bmc, node, client, container)
    entries_before = len(ipmi(bmc, node, "sel", "elist").splitlines())

    subprocess.run(["docker", "-H", docker_host, "stop", "-t", "1", container], check=True,
                   capture_output=True, timeout=TIMEOUT)

    wait_until(lambda: ipmi(bmc, node, "chassis", "power", "status").strip()
               == "Chassis Power is off", "IPMI to say off")
    auth = (bmc.username, bmc.password)
    assert requests.get(system_url(node), auth=auth, timeout=TIMEOUT).json()[
        "PowerState"] == "Off"
    wait_until(lambda: len(ipmi(bmc, node, "sel", "elist").splitlines()) > entries_before,
               "a SEL entry")
    new = ipmi(bmc, node, "sel", "elist").splitlines()[entries_before:]
    assert any("ACPI Power State" in line and "S5/G2: soft-off" in line for line in new), new


def test_redfish_force_restart_restarts_the_container(
        lab: tuple[Emulator, dict[str, str]], client: Any) -> None:
    bmc, containers = lab
    node, container = bmc.node("created"), containers["created"]
    power_on(bmc, node, client, container)
    started = docker_state(client, container)["StartedAt"]  # power_on waited for it
    response = requests.post(f"{system_url(node)}/Actions/ComputerSystem.Reset",
                             json={"ResetType": "ForceRestart"},
                             auth=(bmc.username, bmc.password), timeout=TIMEOUT)
    assert response.status_code in (200, 202, 204), response.text
    wait_until(lambda: docker_state(client, container).get("StartedAt") not in (None, started),
               "the container to start again")
    wait_until(lambda: docker_state(client, container).get("Running"), "the container to run")
    assert "is on" in ipmi(bmc, node, "chassis", "power", "status")


def test_sol_activate_types_into_the_container(lab: tuple[Emulator, dict[str, str]],
                                               client: Any) -> None:
    bmc, containers = lab
    node, container = bmc.node("created"), containers["created"]
    power_on(bmc, node, client, container)
    child = pexpect.spawn(bmc.ipmitool(node)[0], [*bmc.ipmitool(node)[1:], "sol", "activate"],
                          timeout=TIMEOUT)
    child.delaybeforesend = None
    try:
        child.expect(b"SOL Session operational")
        token = uuid.uuid4().hex[:6]
        # the shell's answer, not the terminal's echo of what was typed
        child.send(f"echo sol-{token}-$((6*7))\r".encode())
        child.expect(f"sol-{token}-42\r\n".encode())
        child.send(b"hostname\r")
        child.expect(b"created\r\n")  # the container's host name is the node's name
        child.send(b"\r~.")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_redfish_shows_the_graphical_console_and_media_reach_the_container(
        lab: tuple[Emulator, dict[str, str]], client: Any) -> None:
    bmc, containers = lab
    node, container = bmc.node("created"), containers["created"]
    auth = (bmc.username, bmc.password)
    manager = requests.get(f"{node.redfish_url}/redfish/v1/Managers/BMC", auth=auth,
                           timeout=TIMEOUT).json()
    assert manager["GraphicalConsole"]["ServiceEnabled"] is True
    assert manager["Oem"]["BmcEmulator"]["GraphicalConsoleURL"] == VNC

    power_on(bmc, node, client, container)
    started = docker_state(client, container)["StartedAt"]
    media = f"{node.redfish_url}/redfish/v1/Managers/BMC/VirtualMedia/Cd"
    response = requests.post(f"{media}/Actions/VirtualMedia.InsertMedia",
                             json={"Image": "http://images.invalid/installer.iso"},
                             auth=auth, timeout=TIMEOUT)
    assert response.status_code == 204, response.text
    requests.post(f"{system_url(node)}/Actions/ComputerSystem.Reset",
                  json={"ResetType": "ForceRestart"}, auth=auth, timeout=TIMEOUT)
    wait_until(lambda: docker_state(client, container).get("StartedAt") not in (None, started),
               "the container to start again")  # re-created: its boot settings changed
    wait_until(lambda: docker_state(client, container).get("Running"), "the container to run")
    boot = in_container(client, container, "cat", "/run/bmc/boot")
    assert "BMC_MEDIA_CD_URL=http://images.invalid/installer.iso" in boot

    # a local image, through Redfish as a file:// URL: bind-mounted read-only at the next start
    image = Path(tempfile.mkdtemp(prefix="bmc-media-")) / "installer.iso"
    image.write_text("an installer\n")
    response = requests.post(f"{media}/Actions/VirtualMedia.InsertMedia",
                             json={"Image": f"file://{image}"}, auth=auth, timeout=TIMEOUT)
    assert response.status_code == 204, response.text
    started = docker_state(client, container)["StartedAt"]
    requests.post(f"{system_url(node)}/Actions/ComputerSystem.Reset",
                  json={"ResetType": "ForceRestart"}, auth=auth, timeout=TIMEOUT)
    wait_until(lambda: docker_state(client, container).get("StartedAt") not in (None, started),
               "the container to start again")
    wait_until(lambda: docker_state(client, container).get("Running"), "the container to run")
    assert in_container(client, container, "cat", "/run/bmc/media/cd") == "an installer\n"
