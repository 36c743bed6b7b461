"""The lab's Compose files: valid for docker-compose (v1, what Debian 12 ships), and the rules the
lab keeps (no privileges, health checks and healthy dependencies, loopback ports, dev and e2e
side by side). `docker-compose config` needs no Docker engine."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).parents[2]
COMPOSE = REPO / "compose"
STACKS = ("dev", "e2e")
#: each stack alone, and dev with the platform overlay
FILE_SETS = [("dev.yml",), ("e2e.yml",), ("dev.yml", "core.yml")]


def compose_config(*files: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`docker-compose config` of `files` (resolved: anchors merged, variables filled in)."""
    import copy

    return copy.deepcopy(_compose_config(files, tuple(sorted((env or {}).items()))))


@functools.cache  # docker-compose takes a second or two to start: once per file set
def _compose_config(files: tuple[str, ...], env_items: tuple[tuple[str, str], ...]) -> Any:
    env = dict(env_items)
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is not installed (apt-get install docker-compose)"
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DEV_", "E2E_", "LAB_", "BASE_IMAGE", "COMPOSE_"))}
    args = [binary, "--project-directory", str(COMPOSE), "-p", "lab-test"]
    for name in files:
        args += ["-f", str(COMPOSE / name)]
    result = subprocess.run([*args, "config"], capture_output=True, text=True, timeout=60,
                            env={**clean, **(env or {})}, check=False)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def volumes(service: dict[str, Any]) -> list[dict[str, Any]]:
    """A service's mounts in the long form (v1 prints `source:target:mode` strings)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, mode = (volume.split(":") + ["rw"])[:3]
            kind = "bind" if source.startswith("/") else "volume"
            volume = {"type": kind, "source": source, "target": target,
                      "read_only": mode == "ro"}
        mounts.append(volume)
    return mounts


def published(service: dict[str, Any]) -> list[tuple[str, int, int, str]]:
    """(host address, host port, container port, protocol) of every published port."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, str):  # v1: HOST_IP:PUBLISHED:TARGET/PROTOCOL, one per port
            spec, _, protocol = port.partition("/")
            host_ip, host_port, target = spec.rsplit(":", 2)
            ports.append((host_ip, int(host_port), int(target), protocol or "tcp"))
        else:
            ports.append((port.get("host_ip", ""), int(port["published"]),
                          int(port["target"]), port.get("protocol", "tcp")))
    return ports


@pytest.mark.parametrize("files", FILE_SETS, ids="+".join)
def test_docker_compose_config_accepts(files: tuple[str, ...]) -> None:
    config = compose_config(*files)
    assert config["services"]


@pytest.mark.parametrize("stack", STACKS)
def test_no_privileges_and_health_everywhere(stack: str) -> None:
    services = compose_config(f"{stack}.yml")["services"]
    for name, service in services.items():
        assert not service.get("privileged"), name
        assert service.get("network_mode") in (None, "bridge"), name
        assert not service.get("cap_add"), name
        assert "pid" not in service and "ipc" not in service, name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        for dependency, how in service.get("depends_on", {}).items():
            assert how == {"condition": "service_healthy"}, (name, dependency)
        for volume in volumes(service):
            if volume["type"] == "bind":  # the socket and the emulator's config, nothing else
                assert volume["target"] in ("/var/run/docker.sock",
                                            "/etc/bmc-emulator/config.yaml"), (name, volume)
                assert volume["target"] == "/var/run/docker.sock" or volume.get("read_only")


@pytest.mark.parametrize("stack", STACKS)
def test_topology(stack: str) -> None:
    services = compose_config(f"{stack}.yml")["services"]
    servers = [f"{stack}-server-0{n}" for n in (1, 2, 3)]
    relays = [f"{stack}-virtualbmc-0{n}" for n in (1, 2, 3)]
    assert set(services) == {*servers, *relays, f"{stack}-bmc", f"{stack}-novnc"}
    for name, service in services.items():
        assert service["container_name"] == name
    for server in servers:
        assert services[server]["tty"] and services[server]["stdin_open"]  # the serial port
        assert services[server]["restart"] == "no"  # power belongs to the BMC
        assert services[server]["hostname"] == server
    bmc = services[f"{stack}-bmc"]
    assert set(bmc["depends_on"]) == set(servers)
    assert {v["target"] for v in volumes(bmc) if v["type"] == "volume"} == \
        {"/var/lib/bmc-emulator", "/var/lib/bmc-agent"}
    # the old lab's names on the lab network, each relaying to its own node
    for index, relay in enumerate(relays):
        service = services[relay]
        assert service["networks"]["lab"]["aliases"] == [f"{stack}-redfish-0{index + 1}"]
        assert service["command"] == ["bmc-lab-relay", f"{stack}-bmc", str(index)]
    novnc = services[f"{stack}-novnc"]
    assert novnc["environment"]["NOVNC_TARGETS"].split() == \
        [f"{6080 + i}={s}:5901" for i, s in enumerate(servers)]


@pytest.mark.parametrize("stack, ipmi, redfish, novnc", [
    ("dev", 6230, 8000, 6080), ("e2e", 7230, 9000, 7080)])
def test_default_ports_are_on_loopback(stack: str, ipmi: int, redfish: int,
                                       novnc: int) -> None:
    services = compose_config(f"{stack}.yml")["services"]
    ports = published(services[f"{stack}-bmc"]) + published(services[f"{stack}-novnc"])
    expected = [("127.0.0.1", ipmi + i, ipmi + i, "udp") for i in range(3)]  # equal: SOL
    expected += [("127.0.0.1", redfish + i, 8000 + i, "tcp") for i in range(3)]
    expected += [("127.0.0.1", novnc + i, 6080 + i, "tcp") for i in range(3)]
    assert sorted(ports) == sorted(expected)
    everything = [p for s in services.values() for p in published(s)]
    assert len(everything) == 9, "only the emulator and noVNC publish ports"
    assert services[f"{stack}-bmc"]["environment"]["BMC_IPMI_PORTS"] == f"{ipmi}-{ipmi + 2}"


def test_ports_and_bind_address_are_overridable() -> None:
    env = {"LAB_BIND": "0.0.0.0", "E2E_IPMI_PORTS": "21000-21002",
           "E2E_REDFISH_PORTS": "22000-22002", "E2E_NOVNC_PORTS": "23000-23002"}
    services = compose_config("e2e.yml", env=env)["services"]
    bmc = published(services["e2e-bmc"])
    assert ("0.0.0.0", 21001, 21001, "udp") in bmc and ("0.0.0.0", 22002, 8002, "tcp") in bmc
    assert ("0.0.0.0", 23000, 6080, "tcp") in published(services["e2e-novnc"])
    assert services["e2e-bmc"]["environment"]["BMC_IPMI_PORTS"] == "21000-21002"
    assert services["e2e-virtualbmc-02"]["environment"]["BMC_IPMI_PORTS"] == "21000-21002"


def test_dev_and_e2e_run_side_by_side() -> None:
    dev, e2e = compose_config("dev.yml"), compose_config("e2e.yml")
    assert set(dev["networks"]) == set(e2e["networks"]) == {"lab"}
    assert dev["networks"]["lab"]["name"] != e2e["networks"]["lab"]["name"]
    assert {v["name"] for v in dev["volumes"].values()}.isdisjoint(
        {v["name"] for v in e2e["volumes"].values()})
    assert {s["container_name"] for s in dev["services"].values()}.isdisjoint(
        {s["container_name"] for s in e2e["services"].values()})
    host_ports = [{p[1] for s in c["services"].values() for p in published(s)}
                  for c in (dev, e2e)]
    assert host_ports[0].isdisjoint(host_ports[1])
    # otherwise the same: e2e.yml is dev.yml renamed
    text = (COMPOSE / "dev.yml").read_text()
    renamed = re.sub(r"\bdev-", "e2e-", text).replace("DEV_", "E2E_")
    body = renamed[renamed.index("x-build-args"):].splitlines()  # after the header comment
    e2e_text = (COMPOSE / "e2e.yml").read_text()
    e2e_body = e2e_text[e2e_text.index("x-build-args"):].splitlines()
    differences = [(a, b) for a, b in zip(body, e2e_body, strict=True) if a != b]
    assert all("bmc-lab-" in a or "_PORTS:-" in a or "bmc/dev.yaml" in a
               for a, _ in differences), differences


def test_platform_overlay_joins_the_lab_and_reads_the_registration() -> None:
    config = compose_config("dev.yml", "core.yml")
    services = config["services"]
    for name in ("manager", "gateway", "local-agent"):
        assert "lab" in services[name]["networks"], name
    agent = services["local-agent"]
    (mount,) = volumes(agent)
    assert mount["source"] == "bmc-agent" and mount["read_only"]
    bmc_env = services["dev-bmc"]["environment"]
    (agent_volume,) = [v for v in volumes(services["dev-bmc"]) if v["source"] == "bmc-agent"]
    assert bmc_env["BMC_AGENT_FILE"] == f"{agent_volume['target']}/static.yaml"
    assert agent["environment"]["AGENT_STATIC_HOSTS_FILE"] == f"{mount['target']}/static.yaml"
    assert agent["depends_on"]["dev-bmc"] == {"condition": "service_healthy"}


@pytest.mark.parametrize("stack", STACKS)
def test_emulator_config_matches_the_stack(stack: str) -> None:
    """Each node of compose/bmc/<stack>.yaml drives one server container of the stack."""
    from bmc.config import load_config

    nodes = load_config(COMPOSE / "bmc" / f"{stack}.yaml").nodes
    services = compose_config(f"{stack}.yml")["services"]
    assert [n.backend_settings["container"] for n in nodes] == \
        [f"{stack}-server-0{i}" for i in (1, 2, 3)]
    assert all(n.backend == "docker" and n.name in services for n in nodes)
    assert [n.redfish.port for n in nodes] == [8000, 8001, 8002]
    assert all(("ipmiusr", "test") in [(u.name, u.password) for u in n.users] for n in nodes)
