"""The Kubernetes deployment (deploy/): the Helm chart renders, every object it makes passes
strict schema validation, the pods are unprivileged, and the Services agree with the nodes the
emulator really gives each shard.

The chart is rendered by Helm's own Go engine, in-process, through helm-python-sdk (no helm
binary). The kustomize tree is rendered from the chart by deploy/render_kustomize.py; as no
kustomize build runs in Python here (PyPI's `kustomize` is a manifest generator, pykustomize
needs Python 3.14), its files are validated directly and their kustomization.yaml checked.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm  # helm-python-sdk, in the `test` extra
import kubernetes_validate  # in the `test` extra; ships the schemas, no network
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "bmc-emulator"
KUSTOMIZE = REPO / "deploy" / "kustomize"
#: the oldest Kubernetes the chart supports (Chart.yaml kubeVersion: the pod-index label) and
#: the newest whose schemas kubernetes-validate ships
K8S_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
SAMPLES = sorted(p.name for p in (CHART / "ci").glob("*.yaml"))


# -- rendering ----------------------------------------------------------------------------------
def load_values(name: str | None) -> dict[str, Any]:
    if name is None:
        return {}
    path = CHART / "ci" / name if (CHART / "ci" / name).exists() else CHART / "examples" / name
    return yaml.safe_load(path.read_text())


def render(values: dict[str, Any] | None = None, release: str = "bmc") -> list[dict[str, Any]]:
    """Every object the chart makes with `values`, as `helm template` would (Helm's engine)."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name=release, namespace="lab")
    objects = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".yaml"):
            objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def render_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    return str(caught.value)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def validate_strictly(objects: list[dict[str, Any]]) -> None:
    assert objects
    for obj in objects:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
                pytest.fail(f"{name} is invalid for Kubernetes {version}: {exc}")


def test_chart_lints() -> None:
    report = helm.lint(CHART, strict=True, kube_version="v1.28.0")
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("values", [None, *SAMPLES])
def test_every_object_passes_strict_validation(values: str | None) -> None:
    validate_strictly(render(load_values(values)))


def test_the_100k_example_renders_and_validates() -> None:
    objects = render(load_values("fleet-25k-values.yaml"))
    validate_strictly(objects)
    sts = one(objects, "StatefulSet")
    assert sts["spec"]["replicas"] == 25
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert "--nodes=25000" in container["args"]
    # 1,000 nodes per pod: 64 MiB + 32 KiB x 1,000 (README "Scale" > "Kubernetes")
    assert container["resources"]["requests"] == {"memory": "96Mi", "cpu": "500m"}
    assert container["resources"]["limits"] == {"memory": "192Mi"}


# -- the StatefulSet ------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [None, *SAMPLES])
def test_pods_are_unprivileged_with_requests_and_probes(values: str | None) -> None:
    sts = one(render(load_values(values)), "StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod.get("initContainers", []):
        security = container["securityContext"]
        assert security["privileged"] is False
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["readOnlyRootFilesystem"] is True
        assert all("hostPort" not in p for p in container.get("ports", []))
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = container[probe]["exec"]["command"]
            assert command[:2] == ["python3", "/etc/bmc-emulator/probe.py"]
        ports = [int(a.split("=", 1)[1]) for a in container["args"] if "-port-base=" in a]
        assert len(ports) == 2 and min(ports) > 1024  # no privilege needed to bind


def test_the_shard_comes_from_the_pod_index() -> None:
    sts = one(render({"fleet": {"nodes": 10, "shards": 5}}), "StatefulSet")
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    names = list(env)
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"
    # Kubernetes expands $(VAR) only from variables defined earlier in the list
    assert env["BMC_EMULATOR_SHARD"]["value"] == "$(POD_INDEX)/5"
    assert names.index("POD_INDEX") < names.index("BMC_EMULATOR_SHARD")
    assert sts["spec"]["replicas"] == 5
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    for var in ("BMC_EMULATOR_USERNAME", "BMC_EMULATOR_PASSWORD"):
        assert env[var]["valueFrom"]["secretKeyRef"]["name"] == "bmc-bmc-emulator-credentials"


def test_config_credentials_and_state_volume() -> None:
    objects = render({"credentials": {"password": "s3cret-pw"}})
    config_map, secret = one(objects, "ConfigMap"), one(objects, "Secret")
    assert secret["stringData"] == {"username": "admin", "password": "s3cret-pw"}
    # the password is in the Secret only: not in the ConfigMap, args or pod annotations
    for obj in objects:
        if obj is not secret:
            assert "s3cret-pw" not in yaml.safe_dump(obj)
    assert set(config_map["data"]) == {"config.yaml", "probe.py"}
    sts = one(objects, "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"config": "/etc/bmc-emulator", "state": "/var/lib/bmc-emulator",
                      "tmp": "/tmp"}
    assert container["workingDir"] == "/var/lib/bmc-emulator"
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "state"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "--state-dir=/var/lib/bmc-emulator" in container["args"]


def test_optional_flags() -> None:
    sts = one(render({"fleet": {"backend": "process", "extraArgs": ["--console-port-base=20000"]},
                      "persistence": {"passStateDirFlag": False}}), "StatefulSet")
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--backend=process" in args
    assert not any(a.startswith("--state-dir") for a in args)
    assert args[-1] == "--console-port-base=20000"
    sts = one(render({"persistence": {"enabled": False}}), "StatefulSet")
    assert "volumeClaimTemplates" not in sts["spec"]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"] == {"name": "state", "emptyDir": {}}


@pytest.mark.parametrize("nodes, shards, request_mib", [(100, 4, 65), (1000, 1, 96),
                                                       (25000, 3, 325), (7, 3, 65)])
def test_memory_request_follows_nodes_per_pod(nodes: int, shards: int, request_mib: int) -> None:
    sts = one(render({"fleet": {"nodes": nodes, "shards": shards}}), "StatefulSet")
    resources = sts["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"]["memory"] == f"{request_mib}Mi"
    assert resources["limits"]["memory"] == f"{2 * request_mib}Mi"
    sts = one(render({"resources": {"requests": {"memory": "1Gi"}, "limits": {"cpu": "2"}}}),
              "StatefulSet")
    resources = sts["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"memory": "1Gi", "cpu": "250m"},
                         "limits": {"memory": "130Mi", "cpu": "2"}}


# -- the chart and the emulator agree -------------------------------------------------------------
def pod_fleets(objects: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> dict[int, list[Any]]:
    """Pod ordinal -> the NodeConfigs the real `bmc-emulator serve` picks with that pod's
    args and env (the ConfigMap written to a file, the Secret's user, $(POD_INDEX) expanded);
    only bmc.serve.run is replaced, by a recorder."""
    from click.testing import CliRunner

    import bmc.serve
    from bmc.cli import main

    sts, config_map = one(objects, "StatefulSet"), one(objects, "ConfigMap")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    config = tmp_path / "config.yaml"
    config.write_text(config_map["data"]["config.yaml"])
    args = [a.replace("/etc/bmc-emulator/config.yaml", str(config)) for a in container["args"]]
    assert container["command"] == ["bmc-emulator", "serve"]
    served: list[list[Any]] = []
    monkeypatch.setattr(bmc.serve, "run", lambda cfg, **kw: served.append(cfg.nodes) or 0)
    fleets = {}
    for ordinal in range(sts["spec"]["replicas"]):
        env = expand_env(container["env"], {"POD_INDEX": str(ordinal)},
                         {"BMC_EMULATOR_USERNAME": "admin", "BMC_EMULATOR_PASSWORD": "pw"})
        result = CliRunner().invoke(main, ["serve", *args], env=env)
        assert result.exit_code == 0, result.output
        fleets[ordinal] = served.pop()
    return fleets


def expand_env(env: list[dict[str, Any]], fields: dict[str, str], secrets: dict[str, str]
               ) -> dict[str, str]:
    """A container's environment as the kubelet builds it: $(VAR) refers to an earlier one."""
    import re

    out: dict[str, str] = {}
    for var in env:
        if "value" in var:
            out[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: out.get(m[1], m[0]), var["value"])
        elif "fieldRef" in var["valueFrom"]:
            out[var["name"]] = fields[var["name"]]
        else:
            out[var["name"]] = secrets[var["name"]]
    return out


@pytest.mark.parametrize("values", ["nodeport-values.yaml", "metallb-values.yaml",
                                    "metallb-mixed-values.yaml"])
def test_services_match_the_nodes_each_pod_serves(values: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from bmc.config import nth_address

    chosen = load_values(values)
    objects = render(chosen)
    fleets = pod_fleets(objects, tmp_path, monkeypatch)
    nodes, shards = chosen["fleet"]["nodes"], chosen["fleet"]["shards"]
    assert sorted(n.name for f in fleets.values() for n in f) == \
        sorted(f"node-{k}" for k in range(nodes))  # every node served, once
    where = {node.name: (ordinal, node) for ordinal, fleet in fleets.items() for node in fleet}
    services = [s for s in of_kind(objects, "Service") if s["spec"].get("clusterIP") != "None"]
    assert services
    lb = chosen.get("perBmcLoadBalancer", {})
    for service in services:
        pod = service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"]
        ordinal = int(pod.rsplit("-", 1)[1])
        targets = {(p["protocol"], p["targetPort"]) for p in service["spec"]["ports"]}
        if "bmc-emulator/node" in service["metadata"]["labels"]:  # one BMC's IP
            name = service["metadata"]["labels"]["bmc-emulator/node"]
            served_by, node = where[name]
            assert served_by == ordinal
            assert targets <= {("UDP", node.ipmi.port), ("TCP", node.redfish.port)}
            k = int(name.removeprefix("node-"))
            prefix = lb.get("metallbPrefix", "metallb.universe.tf")
            annotations = service["metadata"]["annotations"]
            assert annotations[f"{prefix}/loadBalancerIPs"] == nth_address(lb["addressBase"], k)
            assert annotations[f"{prefix}/allow-shared-ip"].endswith(f"-bmc-{k}")
            for port in service["spec"]["ports"]:
                outside = {"UDP": lb.get("ipmiPort", 623), "TCP": lb.get("redfishPort", 80)}
                assert port["port"] == (outside[port["protocol"]] or port["targetPort"])
        else:  # one pod's Service: exactly that pod's nodes' ports
            assert targets == {p for node in fleets[ordinal]
                               for p in (("UDP", node.ipmi.port), ("TCP", node.redfish.port))}
            if service["spec"]["type"] == "NodePort" and chosen["perPodServices"]["samePorts"]:
                assert all(p["nodePort"] == p["port"] == p["targetPort"]
                           for p in service["spec"]["ports"])
    if lb.get("enabled"):
        ips = {s["metadata"]["annotations"][f"{lb.get('metallbPrefix', 'metallb.universe.tf')}"
                                            "/loadBalancerIPs"] for s in services}
        assert len(ips) == nodes  # one IP per BMC, shared by its UDP and TCP Services
        per_bmc = 1 if lb.get("layout") == "mixed" else 2
        assert len(services) == per_bmc * nodes
    else:
        assert len(services) == shards


def test_the_default_config_is_one_the_emulator_accepts(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fleets = pod_fleets(render(), tmp_path, monkeypatch)
    assert [len(f) for f in fleets.values()] == [25, 25, 25, 25]
    node = fleets[3][1]  # node 7: 3 + 4
    assert (node.name, node.ipmi.address, node.ipmi.port, node.redfish.port) == \
        ("node-7", "0.0.0.0", 10630, 40007)
    assert [u.name for u in node.users] == ["admin"]
    assert node.backend == "memory"
    sts = one(render({"fleet": {"backend": ""}}), "StatefulSet")
    assert not any(a.startswith("--backend") for a in sts["spec"]["template"]["spec"][
        "containers"][0]["args"])


def test_nth_address_matches_the_emulator() -> None:
    from bmc.config import nth_address

    objects = render({"fleet": {"nodes": 300, "shards": 1},
                      "perBmcLoadBalancer": {"enabled": True, "addressBase": "10.0.255.250",
                                             "layout": "mixed"}})
    ips = [s["metadata"]["annotations"]["metallb.universe.tf/loadBalancerIPs"]
           for s in of_kind(objects, "Service") if s["spec"].get("type") == "LoadBalancer"]
    assert ips == [nth_address("10.0.255.250", k) for k in range(300)]
    assert ips[6] == "10.1.0.0"


@pytest.mark.parametrize("values, message", [
    ({"fleet": {"nodes": 3, "shards": 4}}, "fleet.shards (4) is more than fleet.nodes (3)"),
    ({"fleet": {"shards": 0}}, "'/fleet/shards': minimum: got 0, want 1"),
    ({"fleet": {"nodes": 30000}}, "fleet.nodes (30000) does not fit the port ranges"),
    ({"fleet": {"ipmiPortBase": 40000, "redfishPortBase": 40050}},
     "the IPMI ports 40000-40099 and the Redfish ports 40050-40149 overlap"),
    ({"fleet": {"ipmiPortBase": 623}}, "'/fleet/ipmiPortBase': minimum: got 623, want 1,025"),
    ({"credentials": {"password": "p" * 21}}, "'/credentials/password': maxLength: got 21"),
    ({"perBmcLoadBalancer": {"enabled": True}}, "perBmcLoadBalancer.addressBase is required"),
    ({"perBmcLoadBalancer": {"enabled": True, "addressBase": "255.255.255.200"}},
     "addressBase 255.255.255.200 + node index 56 is past 255.255.255.255"),
    ({"perPodServices": {"enabled": True}, "fleet": {"config": {"nodes": [{"name": "a"}]}}},
     "perPodServices and perBmcLoadBalancer assume the generated node list"),
])
def test_refused_values(values: dict[str, Any], message: str) -> None:
    assert message in render_error(values)


# -- kustomize ------------------------------------------------------------------------------------
def render_kustomize_module() -> Any:
    spec = importlib.util.spec_from_file_location("render_kustomize",
                                                  REPO / "deploy" / "render_kustomize.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kustomize_tree_is_the_rendered_chart(capsys: pytest.CaptureFixture[str]) -> None:
    status = render_kustomize_module().main(["--check"])
    assert status == 0, ("deploy/kustomize is stale: run python3 deploy/render_kustomize.py\n"
                         + capsys.readouterr().out)


def kustomization_objects(directory: Path, seen: set[Path] | None = None
                          ) -> Iterator[dict[str, Any]]:
    """The objects `kustomize build directory` starts from: its resources, recursively (the
    transformers used, `images`, only retag)."""
    seen = set() if seen is None else seen
    assert directory not in seen, f"{directory} is included twice"
    seen.add(directory)
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "images"}, \
        "a kustomize feature this test cannot check"
    files = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    listed = [r for r in kustomization["resources"] if not r.startswith("..")]
    assert sorted(listed) == sorted(files), "every manifest listed, every listed file present"
    for resource in kustomization["resources"]:
        path = (directory / resource).resolve()
        if path.is_dir():
            yield from kustomization_objects(path, seen)
        else:
            yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


@pytest.mark.parametrize("directory", ["base", "overlays/nodeport", "overlays/metallb"])
def test_kustomize_manifests_validate(directory: str) -> None:
    objects = list(kustomization_objects(KUSTOMIZE / directory))
    validate_strictly(objects)
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), "an object defined twice"
    assert all("helm.sh/chart" not in o["metadata"].get("labels", {}) for o in objects)
    sts = one(objects, "StatefulSet")
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"] == "bmc-emulator:0.1.0"
