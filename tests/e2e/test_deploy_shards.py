"""The Helm chart's pods, run here without Kubernetes: each StatefulSet pod's rendered command,
arguments and environment start a real `bmc-emulator serve` on loopback, and together they
serve the whole fleet, each node on its fleet-wide ports; the chart's probe script tells a
running shard from a stopped one.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm  # helm-python-sdk, in the `test` extra
import pytest
import requests
import yaml
from conftest import EmulatorNode, Launcher

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "bmc-emulator"
NODES, SHARDS = 6, 3
USERNAME, PASSWORD = "fleetadmin", "from-the-secret"


def render(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name="bmc", namespace="lab")
    objects = [doc for path, text in rendered.items() if path.endswith(".yaml")
               for doc in yaml.safe_load_all(text) if doc]
    return {o["kind"]: o for o in objects if o["kind"] in ("StatefulSet", "ConfigMap", "Secret")}


def pod_env(container: dict[str, Any], ordinal: int, secret: dict[str, Any]) -> dict[str, str]:
    """The variables the kubelet would set: fieldRef (the pod-index label), secretKeyRef, and
    $(VAR) references to earlier variables."""
    env: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], var["value"])
        elif "fieldRef" in var["valueFrom"]:
            assert "pod-index" in var["valueFrom"]["fieldRef"]["fieldPath"]
            env[var["name"]] = str(ordinal)
        else:
            env[var["name"]] = secret["stringData"][var["valueFrom"]["secretKeyRef"]["key"]]
    return env


MOUNT = "/var/lib/bmc-emulator"  # the chart's persistence.mountPath: a volume per pod


def start_pods(emulator_factory: Launcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               tls: bool = False) -> tuple[list[Any], list[list[str]]]:
    """Every pod of the chart as a local process, each with its own volume directory (as
    each pod has its own volume); and each pod's probe command."""
    taken: set[int] = set()
    ipmi = emulator_factory.free_port("udp", taken, count=NODES)
    taken |= set(range(ipmi, ipmi + NODES))
    redfish = emulator_factory.free_port("tcp", taken, count=NODES)
    objects = render({"fleet": {"nodes": NODES, "shards": SHARDS, "bind": "127.0.0.1",
                                "ipmiPortBase": ipmi, "redfishPortBase": redfish,
                                "tls": tls},
                      "credentials": {"username": USERNAME, "password": PASSWORD}})
    container = objects["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert objects["StatefulSet"]["spec"]["replicas"] == SHARDS
    config_dir = tmp_path / "etc-bmc-emulator"  # the ConfigMap volume
    config_dir.mkdir()
    for name, text in objects["ConfigMap"]["data"].items():
        (config_dir / name).write_text(text)
    assert container["command"] == ["bmc-emulator", "serve"]
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe[0] == "python3"
    running, probes = [], []
    scheme = "https" if tls else "http"
    for ordinal in range(SHARDS):
        volume = tmp_path / f"pod-{ordinal}"

        def local(arg: str, volume: Path = volume) -> str:
            return arg.replace("/etc/bmc-emulator", str(config_dir)).replace(MOUNT, str(volume))

        for name, value in pod_env(container, ordinal, objects["Secret"]).items():
            monkeypatch.setenv(name, local(value))
        expected = [EmulatorNode(f"node-{k}", ipmi + k, f"{scheme}://127.0.0.1:{redfish + k}")
                    for k in range(ordinal, NODES, SHARDS)]
        running.append(emulator_factory.launch([local(a) for a in container["args"]],
                                               expected, USERNAME, PASSWORD))
        probes.append([sys.executable, *(local(a) for a in probe[1:])])
    return running, probes


@pytest.fixture
def pods(emulator_factory: Launcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
         ) -> tuple[list[Any], list[list[str]]]:
    return start_pods(emulator_factory, tmp_path, monkeypatch)


def test_pods_serve_the_fleet_on_its_ports(pods: tuple[list[Any], list[list[str]]]) -> None:
    running, _ = pods
    seen = []
    for ordinal, emulator in enumerate(running):
        table = [line.split()[0] for line in emulator.stdout.splitlines()[1:]
                 if line.startswith("node-")]
        assert table == [f"node-{k}" for k in range(ordinal, NODES, SHARDS)]
        for node in emulator.nodes:
            result = subprocess.run(emulator.ipmitool(node, "chassis", "power", "status"),
                                    capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, result.stderr
            assert "Chassis Power is" in result.stdout
            reply = requests.get(f"{node.redfish_url}/redfish/v1/Systems/{node.name}",
                                 auth=(USERNAME, PASSWORD), timeout=10)
            assert reply.status_code == 200
            assert reply.json()["Id"] == node.name
            seen.append(node.name)
    assert sorted(seen) == sorted(f"node-{k}" for k in range(NODES))


def run_probe(probes: list[list[str]], ordinal: int, monkeypatch: pytest.MonkeyPatch
              ) -> subprocess.CompletedProcess[str]:
    monkeypatch.setenv("BMC_EMULATOR_SHARD", f"{ordinal}/{SHARDS}")
    return subprocess.run(probes[ordinal], capture_output=True, text=True, timeout=30)


def test_probe_tells_a_stopped_shard(pods: tuple[list[Any], list[list[str]]],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    running, probes = pods
    for ordinal in range(SHARDS):
        result = run_probe(probes, ordinal, monkeypatch)
        assert result.returncode == 0, result.stderr
    running[1].stop()
    result = run_probe(probes, 1, monkeypatch)
    assert result.returncode == 1
    assert "probe: IPMI 127.0.0.1:" in result.stderr
    assert "probe: Redfish http://127.0.0.1:" in result.stderr
    assert run_probe(probes, 0, monkeypatch).returncode == 0
    assert run_probe(probes, 2, monkeypatch).returncode == 0


def test_tls_pods_serve_https_their_probes_verify(emulator_factory: Launcher, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """`fleet.tls: true`: each pod serves HTTPS with its own lab CA in its volume, and its
    probe verifies Redfish with that CA."""
    running, probes = start_pods(emulator_factory, tmp_path, monkeypatch, tls=True)
    for ordinal, emulator in enumerate(running):
        ca = tmp_path / f"pod-{ordinal}" / "tls" / "ca.pem"  # --state-dir=<mountPath>
        assert emulator.ca_path == str(ca)
        node = emulator.nodes[0]
        assert node.redfish_url.startswith("https://")
        reply = requests.get(f"{node.redfish_url}/redfish/v1/Systems/{node.name}",
                             auth=(USERNAME, PASSWORD), timeout=10, verify=str(ca))
        assert reply.json()["Id"] == node.name
        result = run_probe(probes, ordinal, monkeypatch)
        assert result.returncode == 0, result.stderr
    running[0].stop()
    result = run_probe(probes, 0, monkeypatch)
    assert result.returncode == 1 and "probe: Redfish https://127.0.0.1:" in result.stderr
