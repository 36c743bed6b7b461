"""`bmc-emulator agent-config`: the local agent's static registration, checked against the
agent's format (/work/shared/local-agent/README.md) by the rules the agent applies."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bmc.cli import main

REPO = Path(__file__).parents[2]
LAB_CONFIGS = sorted((REPO / "compose" / "bmc").glob("*.yaml"))

# -- the agent's format -------------------------------------------------------------------------
HOST_KEYS = {"id", "customer_id", "features", "metadata", "control_endpoints", "sol_endpoint",
             "vnc_endpoint"}
CONTROL_KEYS = {"endpoint", "type", "username", "password", "capabilities", "tls"}
SOL_KEYS = {"type", "endpoint", "username", "password", "config"}
FEATURES = {"power", "console", "vnc", "sensors"}
HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
URL = re.compile(r"^(https?)://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(/.*)?$")
VNC_URL = re.compile(r"^(wss?|vnc)://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?(/.*)?$")


def inferred_type(endpoint: str) -> str:
    """The agent's inference: a URL is Redfish, host:port is IPMI."""
    if URL.match(endpoint):
        return "redfish"
    assert HOST_PORT.match(endpoint), f"{endpoint!r} is neither host:port nor a URL"
    assert 1 <= int(HOST_PORT.match(endpoint).group(2)) <= 65535
    return "ipmi"


def check_control(endpoint: dict[str, Any], keys: set[str]) -> None:
    assert set(endpoint) <= keys, set(endpoint) - keys
    assert endpoint.get("type", inferred_type(endpoint["endpoint"])) == \
        inferred_type(endpoint["endpoint"])
    assert isinstance(endpoint.get("username", ""), str)
    assert isinstance(endpoint.get("password", ""), str)


def check_static(doc: Any) -> list[dict[str, Any]]:
    assert set(doc) == {"static"} and set(doc["static"]) == {"hosts"}
    hosts = doc["static"]["hosts"]
    assert hosts, "no hosts"
    ids = [h["id"] for h in hosts]
    assert len(ids) == len(set(ids)), f"ids not unique: {ids}"
    for host in hosts:
        assert set(host) <= HOST_KEYS, set(host) - HOST_KEYS
        assert isinstance(host["id"], str) and host["id"]
        assert set(host["features"]) <= FEATURES
        assert all(isinstance(k, str) and isinstance(v, str)
                   for k, v in host["metadata"].items()), "metadata must be strings"
        assert host["control_endpoints"], "at least one control endpoint"
        for endpoint in host["control_endpoints"]:
            check_control(endpoint, CONTROL_KEYS)
            if "tls" in endpoint:
                assert set(endpoint["tls"]) <= {"enabled", "insecure_skip_verify"}
        if "sol_endpoint" in host:
            sol = host["sol_endpoint"]
            assert set(sol) <= SOL_KEYS and sol["type"] in ("ipmi", "redfish_serial")
            if sol["type"] == "ipmi":
                assert inferred_type(sol["endpoint"]) == "ipmi"
            assert set(sol["config"]) <= {"baud_rate", "timeout_seconds"}
        if "vnc_endpoint" in host:
            vnc = host["vnc_endpoint"]
            assert set(vnc) == {"type", "endpoint"} and vnc["type"] in ("novnc_proxy", "vnc")
            assert VNC_URL.match(vnc["endpoint"]) or HOST_PORT.match(vnc["endpoint"])
        assert ("console" in host["features"]) == ("sol_endpoint" in host)
        assert ("vnc" in host["features"]) == ("vnc_endpoint" in host)
    return hosts


def check_short(doc: Any) -> list[dict[str, Any]]:
    assert set(doc) == {"bmc_hosts"} and doc["bmc_hosts"]
    ids = [h["id"] for h in doc["bmc_hosts"]]
    assert len(ids) == len(set(ids))
    for host in doc["bmc_hosts"]:
        assert set(host) == {"id", "control_endpoint"}
        check_control(host["control_endpoint"], {"endpoint", "type", "username", "password"})
    return doc["bmc_hosts"]


# -- running the command ------------------------------------------------------------------------
def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click >= 8.2 keeps them apart anyway
        runner = CliRunner()
    result = runner.invoke(main, ["agent-config", *args], env=env or {},
                           catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def registration(*args: str) -> Any:
    status, out, err = run(*args)
    assert status == 0, err
    assert out.startswith("# BMC registration")
    return yaml.safe_load(out)


def test_default_config_is_valid_and_names_every_endpoint() -> None:
    hosts = check_static(registration())
    assert [h["id"] for h in hosts] == ["node-0", "node-1", "node-2"]
    first = hosts[0]
    assert first["control_endpoints"][0] == {
        "endpoint": "127.0.0.1:6230", "type": "ipmi", "username": "admin",
        "password": "password", "capabilities": ["chassis", "sel", "sdr", "fru", "lan"]}
    assert first["control_endpoints"][1]["endpoint"] == "http://127.0.0.1:8000"
    assert first["sol_endpoint"]["endpoint"] == "127.0.0.1:6230"  # the process backend's pty
    assert "vnc_endpoint" not in first  # no noVNC given


@pytest.mark.parametrize("config", LAB_CONFIGS, ids=lambda p: p.name)
def test_lab_config_in_the_lab_network(config: Path) -> None:
    stack = config.stem
    hosts = check_static(registration("--config", str(config), "--address", f"{stack}-bmc",
                                      "--novnc", f"ws://{stack}-novnc:6080/websockify"))
    assert [h["id"] for h in hosts] == [f"{stack}-server-0{n}" for n in (1, 2, 3)]
    for index, host in enumerate(hosts):
        ipmi, redfish = host["control_endpoints"]
        assert ipmi["endpoint"] == f"{stack}-bmc:{6230 + index}"
        assert redfish["endpoint"] == f"http://{stack}-bmc:{8000 + index}"
        assert (ipmi["username"], ipmi["password"]) == ("ipmiusr", "test")  # first admin
        assert host["features"] == ["power", "console", "vnc", "sensors"]  # docker: a TTY
        assert host["sol_endpoint"]["endpoint"] == ipmi["endpoint"]
        assert host["vnc_endpoint"] == {"type": "novnc_proxy",
                                        "endpoint": f"ws://{stack}-novnc:{6080 + index}"
                                                    "/websockify"}


def test_host_view_and_per_node_names() -> None:
    config = str(REPO / "compose" / "bmc" / "e2e.yaml")
    host_view = check_static(registration("--config", config, "--address", "127.0.0.1",
                                          "--ipmi-port-base", "7230",
                                          "--redfish-port-base", "9000",
                                          "--external-ipmi-port-base", "7230"))
    assert [h["control_endpoints"][0]["endpoint"] for h in host_view] == \
        ["127.0.0.1:7230", "127.0.0.1:7231", "127.0.0.1:7232"]
    assert host_view[2]["control_endpoints"][1]["endpoint"] == "http://127.0.0.1:9002"
    assert host_view[1]["metadata"]["external_port"] == "7231"
    # the old lab's names: each BMC its own host at the standard ports
    dropin = check_static(registration("--config", config,
                                       "--ipmi-address", "e2e-virtualbmc-{number:02d}",
                                       "--redfish-address", "e2e-redfish-{number:02d}",
                                       "--ipmi-port-base", "623", "--redfish-port-base", "8000"))
    assert [h["control_endpoints"][0]["endpoint"] for h in dropin] == \
        [f"e2e-virtualbmc-0{n}:623" for n in (1, 2, 3)]
    assert dropin[1]["control_endpoints"][1]["endpoint"] == "http://e2e-redfish-02:8000"


def test_environment_sets_the_view() -> None:
    """The emulator container sets the lab view in its environment (compose/*.yml)."""
    status, out, err = run("--config", str(REPO / "compose" / "bmc" / "dev.yaml"),
                           env={"BMC_AGENT_ADDRESS": "dev-bmc",
                                "BMC_AGENT_NOVNC": "ws://dev-novnc:6080/websockify"})
    assert status == 0, err
    hosts = check_static(yaml.safe_load(out))
    assert hosts[2]["vnc_endpoint"]["endpoint"] == "ws://dev-novnc:6082/websockify"


def test_short_form() -> None:
    entries = check_short(registration("--form", "bmc_hosts", "--address", "dev-bmc"))
    assert [e["id"] for e in entries[:2]] == ["node-0", "node-0-redfish"]
    assert entries[0]["control_endpoint"] == {"endpoint": "dev-bmc:6230", "type": "ipmi",
                                              "username": "admin", "password": "password"}
    assert entries[1]["control_endpoint"]["endpoint"] == "http://dev-bmc:8000"


@pytest.mark.parametrize("form", ["static", "bmc_hosts"])
def test_no_secrets_leaves_every_password_out(form: str, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(textwrap.dedent("""\
        nodes:
          - name: n1
            users: [{name: root, password: s3cr3t-pass-123}]
        """))
    status, out, err = run("--config", str(config), "--form", form, "--no-secrets")
    assert status == 0, err
    assert "s3cr3t-pass-123" not in out and "password:" not in out
    doc = yaml.safe_load(out)
    (check_static if form == "static" else check_short)(doc)
    assert "root" in out  # the user name stays: the agent's operator fills in the password


def test_memory_node_has_no_console(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("nodes:\n  - name: m1\n    backend: {type: memory}\n"
                      "    users: [{name: viewer, password: v, privilege: USER},"
                      " {name: boss, password: b, privilege: ADMINISTRATOR}]\n")
    (host,) = check_static(registration("--config", str(config)))
    assert host["features"] == ["power", "sensors"] and "sol_endpoint" not in host
    assert host["control_endpoints"][0]["username"] == "boss"  # the administrator


@pytest.mark.parametrize("args, message", [
    (["--config", str(REPO / "compose" / "bmc" / "dev.yaml")],
     "listens on 0.0.0.0, every address: say which one the agent dials"),
    (["--address", "bmc-{colour}"], "unknown field 'colour'"),
    (["--address", "bmc-{number"], "is not a valid template"),
    (["--novnc", "http://novnc:6080/"], "is not a ws:// or wss:// URL"),
    (["--ipmi-port-base", "70000"], "70000"),
])
def test_refusals_are_clear(args: list[str], message: str) -> None:
    status, out, err = run(*args)
    assert status == 2 and out == ""
    assert message in err
    assert "Traceback" not in err


def test_bad_config_is_reported_like_serve(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("nodes:\n  - name: a\n    colour: red\n")
    status, _, err = run("--config", str(config))
    assert status == 2 and "colour: unknown key" in err


def test_https_nodes_are_registered_with_https_and_tls_enabled(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("defaults: {redfish_tls: true}\nnodes:\n  - name: secure\n"
                      "  - name: plain\n    redfish: {tls: false}\n")
    secure, plain = check_static(registration("--config", str(config)))
    assert secure["control_endpoints"][1]["endpoint"] == "https://127.0.0.1:8000"
    assert secure["control_endpoints"][1]["tls"] == {"enabled": True,
                                                     "insecure_skip_verify": True}
    assert plain["control_endpoints"][1]["endpoint"] == "http://127.0.0.1:8001"
    assert plain["control_endpoints"][1]["tls"]["enabled"] is False
