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


@pytest.fixture
def pods(emulator_factory: Launcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
         ) -> tuple[list[Any], list[str], Path]:
    """Every pod of the chart as a local process; and the probe command of the pods."""
    taken: set[int] = set()
    ipmi = emulator_factory.free_port("udp", taken, count=NODES)
    taken |= set(range(ipmi, ipmi + NODES))
    redfish = emulator_factory.free_port("tcp", taken, count=NODES)
    objects = render({"fleet": {"nodes": NODES, "shards": SHARDS, "bind": "127.0.0.1",
                                "ipmiPortBase": ipmi, "redfishPortBase": redfish},
                      "credentials": {"username": USERNAME, "password": PASSWORD}})
    container = objects["StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert objects["StatefulSet"]["spec"]["replicas"] == SHARDS
    config_dir = tmp_path / "etc-bmc-emulator"  # the ConfigMap volume
    config_dir.mkdir()
    for name, text in objects["ConfigMap"]["data"].items():
        (config_dir / name).write_text(text)
    assert container["command"] == ["bmc-emulator", "serve"]
    args = [a.replace("/etc/bmc-emulator", str(config_dir)) for a in container["args"]]
    running = []
    for ordinal in range(SHARDS):
        for name, value in pod_env(container, ordinal, objects["Secret"]).items():
            if name not in ("HOME",):
                monkeypatch.setenv(name, value)
        expected = [EmulatorNode(f"node-{k}", ipmi + k, f"http://127.0.0.1:{redfish + k}")
                    for k in range(ordinal, NODES, SHARDS)]
        running.append(emulator_factory.launch(args, expected, USERNAME, PASSWORD))
    probe = [a.replace("/etc/bmc-emulator", str(config_dir))
             for a in container["readinessProbe"]["exec"]["command"]]
    assert probe[0] == "python3"
    return running, [sys.executable, *probe[1:]], config_dir


def test_pods_serve_the_fleet_on_its_ports(pods: tuple[list[Any], list[str], Path]) -> None:
    running, _, _ = pods
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


def test_probe_tells_a_stopped_shard(pods: tuple[list[Any], list[str], Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    running, probe, _ = pods

    def run_probe(ordinal: int) -> subprocess.CompletedProcess[str]:
        monkeypatch.setenv("BMC_EMULATOR_SHARD", f"{ordinal}/{SHARDS}")
        return subprocess.run(probe, capture_output=True, text=True, timeout=30)

    for ordinal in range(SHARDS):
        result = run_probe(ordinal)
        assert result.returncode == 0, result.stderr
    running[1].stop()
    result = run_probe(1)
    assert result.returncode == 1
    assert "probe: IPMI 127.0.0.1:" in result.stderr
    assert "probe: Redfish http://127.0.0.1:" in result.stderr
    assert run_probe(0).returncode == 0 and run_probe(2).returncode == 0
