"""Config loading: the default config, a good file, and every kind of refusal with its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bmc.config import (
    ConfigError,
    Endpoint,
    Overrides,
    UserConfig,
    default_config,
    load_config,
)
from bmc.users import Privilege


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "nodes.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def errors(path: Path, overrides: Overrides | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return [str(p) for p in caught.value.problems]


# -- the default config -----------------------------------------------------------------------
def test_default_config_is_three_process_nodes_on_localhost() -> None:
    config = default_config()
    assert [n.name for n in config.nodes] == ["node-0", "node-1", "node-2"]
    assert [n.ipmi for n in config.nodes] == [Endpoint("127.0.0.1", p) for p in (6230, 6231, 6232)]
    assert [n.redfish_url for n in config.nodes] == [
        "http://127.0.0.1:8000", "http://127.0.0.1:8001", "http://127.0.0.1:8002"]
    for node in config.nodes:
        assert node.backend == "process" and node.backend_settings == {}
        assert node.console.websocket is None  # WebSocket consoles only with a port base
        assert node.users == [UserConfig("admin", "password", Privilege.ADMINISTRATOR)]


def test_flags_change_the_default_config() -> None:
    config = default_config(Overrides(nodes=2, bind="0.0.0.0", ipmi_port_base=7000,
                                      redfish_port_base=9000, username="root", password="calvin"))
    assert [(n.ipmi, n.redfish) for n in config.nodes] == [
        (Endpoint("0.0.0.0", 7000), Endpoint("0.0.0.0", 9000)),
        (Endpoint("0.0.0.0", 7001), Endpoint("0.0.0.0", 9001)),
    ]
    assert config.nodes[1].users == [UserConfig("root", "calvin")]


@pytest.mark.parametrize(("overrides", "expected"), [
    (Overrides(password="x" * 21), "--password: longer than 20 bytes"),
    (Overrides(username=""), "--username: must not be empty"),
    (Overrides(username="u" * 17), "--username: 'uuuuuuuuuuuuuuuuu' is longer than 16 bytes"),
    (Overrides(bind="localhost"), "--bind: 'localhost' is not an IPv4 or IPv6 address"),
    (Overrides(nodes=2, ipmi_port_base=65535),
     "node 'node-1': ipmi.port: ipmi_port_base 65535 + node index 1 = 65536 is above 65535"),
    (Overrides(ipmi_port_base=8000, redfish_port_base=8002),
     "node 'node-2': ipmi.port: 127.0.0.1:8002 is already used by node 'node-0' redfish.port"),
])
def test_bad_flags_are_refused(overrides: Overrides, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        default_config(overrides)
    [problem] = caught.value.problems
    assert str(problem).startswith(expected)


def test_passwords_stay_out_of_reprs() -> None:
    config = default_config(Overrides(password="s3cret"))
    assert "s3cret" not in repr(config)
    assert "s3cret" not in repr(Overrides(password="s3cret"))


def test_default_config_needs_neither_pydantic_nor_yaml() -> None:
    import subprocess
    import sys

    code = ("import sys; from bmc.config import default_config; default_config(); "
            "print(sorted(m for m in ('pydantic', 'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "[]"


# -- a good file ------------------------------------------------------------------------------
GOOD = """
defaults:
  bind: 127.0.0.2
  username: root
  password: calvin
  ipmi_port_base: 7000
  redfish_port_base: 9000
nodes:
  - name: alpha
    backend: {type: memory, power_on: true}
    users:
      - {name: op, password: pw, privilege: operator}
      - {name: viewer, password: pw2, privilege: ReadOnly}
  - name: beta
    ipmi: {address: 127.0.0.3, port: 6623}
    redfish: {port: 8443}
"""


def test_a_good_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    alpha, beta = config.nodes
    assert alpha.ipmi == Endpoint("127.0.0.2", 7000)
    assert alpha.redfish == Endpoint("127.0.0.2", 9000)
    assert alpha.backend == "memory" and alpha.backend_settings == {"power_on": True}
    assert alpha.users == [UserConfig("op", "pw", Privilege.OPERATOR),
                           UserConfig("viewer", "pw2", Privilege.USER)]
    assert beta.ipmi == Endpoint("127.0.0.3", 6623)
    assert beta.redfish == Endpoint("127.0.0.2", 8443)
    assert beta.users == [UserConfig("root", "calvin", Privilege.ADMINISTRATOR)]
    assert beta.lines[""] == 13 and beta.lines["ipmi.port"] == 14


def test_flags_override_the_files_defaults_but_not_a_nodes_own_settings(tmp_path: Path) -> None:
    overrides = Overrides(bind="127.0.0.9", ipmi_port_base=7100, username="u", password="p")
    alpha, beta = load_config(write(tmp_path, GOOD), overrides).nodes
    assert alpha.ipmi == Endpoint("127.0.0.9", 7100)
    assert alpha.redfish == Endpoint("127.0.0.9", 9000)  # the file's base: no flag for it
    assert [u.name for u in alpha.users] == ["op", "viewer"]  # the node's own users
    assert beta.ipmi == Endpoint("127.0.0.3", 6623)  # the node's own endpoint
    assert beta.users == [UserConfig("u", "p")]


def test_a_file_with_only_defaults_gets_the_default_nodes(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults: {ipmi_port_base: 7000}\n")
    config = load_config(path, Overrides(nodes=2))
    assert [(n.name, n.ipmi.port, n.redfish.port) for n in config.nodes] == [
        ("node-0", 7000, 8000), ("node-1", 7001, 8001)]


def test_an_empty_file_is_the_default_config(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).nodes == default_config().nodes


# -- refusals: each names file, line, node and field ------------------------------------------
NODES = """
nodes:
  - name: node-0
    backend: {type: memory}
  - name: node-1
    backend: {type: memory}
    ipmi: {address: 127.0.0.1, port: 6231}
"""


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("port: 6231}", "port: 70000}",
     "6: node 'node-1': ipmi.port: port 70000 is out of range 1..65535"),
    ("port: 6231}", "port: 0}",
     "6: node 'node-1': ipmi.port: port 0 is out of range 1..65535"),
    ("port: 6231}", "port: '6231'}",
     "6: node 'node-1': ipmi.port: Input should be a valid integer, got '6231'"),
    ("port: 6231}", "prot: 6231}", "6: node 'node-1': ipmi.prot: unknown key"),
    ("{type: memory}\n    ipmi", "{type: vmware}\n    ipmi",
     "5: node 'node-1': backend.type: unknown backend type 'vmware' (known: memory, process, "
     "docker)"),
    ("address: 127.0.0.1", "address: localhost",
     "6: node 'node-1': ipmi.address: 'localhost' is not an IPv4 or IPv6 address"),
    ("    ipmi:", "    colour: blue\n    ipmi:", "6: node 'node-1': colour: unknown key"),
    ("  - name: node-1\n", "  - users: [{name: a, password: b}]\n",
     "4: nodes[1].name: required key is missing"),
    ("name: node-1", "name: 'node 1'",
     "4: node 'node 1': name: 'node 1' is not a valid node name"),
])
def test_a_bad_node_field(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in NODES
    path = write(tmp_path, NODES.replace(old, new, 1))
    problems = errors(path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{expected}")


def test_users(tmp_path: Path) -> None:
    path = write(tmp_path, """
        nodes:
          - name: n
            users:
              - {name: "", password: x}
              - name: bob
                password: "123456789012345678901"
              - {name: eve, password: x, privilege: god}
        """)
    assert errors(path) == [
        f"{path}:4: node 'n': users[0].name: must not be empty (anonymous users are not allowed)",
        f"{path}:6: node 'n': users[1].password: longer than 20 bytes (the IPMI 2.0 limit)",
        f"{path}:7: node 'n': users[2].privilege: unknown privilege 'god' "
        "(one of CALLBACK, USER, OPERATOR, ADMINISTRATOR, OEM, NO_ACCESS)",
    ]


def test_a_user_listed_twice(tmp_path: Path) -> None:
    path = write(tmp_path, """
        nodes:
          - name: n
            users:
              - {name: eve, password: x}
              - {name: eve, password: y}
        """)
    assert errors(path) == [f"{path}:3: node 'n': users: user 'eve' is listed twice"]


def test_duplicate_node_names_and_ports(tmp_path: Path) -> None:
    path = write(tmp_path, """
        nodes:
          - name: a
            ipmi: {port: 7001}
          - name: b
            ipmi: {port: 7001}
          - name: a
            redfish: {port: 7001}
          - name: c
            redfish: {address: 0.0.0.0, port: 8000}
        """)
    assert errors(path) == [
        f"{path}:5: node 'b': ipmi.port: 127.0.0.1:7001 is already used by node 'a' ipmi.port, "
        "line 3",
        f"{path}:6: node 'a': name: duplicate node name (also node 'a' name, line 2)",
        f"{path}:7: node 'a': redfish.port: 127.0.0.1:7001 is already used by node 'a' "
        "ipmi.port, line 3",
        # the wildcard address clashes with node a's derived Redfish 127.0.0.1:8000
        f"{path}:9: node 'c': redfish.port: 0.0.0.0:8000 is already used by node 'a' "
        "redfish.port, line 2",
    ]


def test_wildcards_clash_only_within_their_family(tmp_path: Path) -> None:
    path = write(tmp_path, """
        nodes:
          - {name: a, ipmi: {address: 0.0.0.0, port: 7000}}
          - {name: b, ipmi: {address: "::", port: 7000}, redfish: {address: "::1"}}
        """)
    assert [n.ipmi.host_port for n in load_config(path).nodes] == ["0.0.0.0:7000", "[::]:7000"]
    assert load_config(path).nodes[1].redfish_url == "http://[::1]:8001"


def test_a_derived_port_out_of_range_points_at_the_node(tmp_path: Path) -> None:
    path = write(tmp_path, """
        defaults: {redfish_port_base: 65535}
        nodes:
          - name: a
          - name: b
        """)
    assert errors(path) == [
        f"{path}:4: node 'b': redfish.port: redfish_port_base 65535 + node index 1 = 65536 "
        "is above 65535"]


@pytest.mark.parametrize(("text", "expected"), [
    ("defaults:\n  password: 123456789012345678901\n",
     ":2: defaults.password: Input should be a valid string, got 123456789012345678901"),
    ("defaults:\n  password: '123456789012345678901'\n",
     ":2: defaults.password: longer than 20 bytes"),
    ("defaults:\n  username: ''\n", ":2: defaults.username: must not be empty"),
    ("defaults:\n  ipmi_port_base: 65536\n", ":2: defaults.ipmi_port_base: port 65536 is out"),
    ("defaults:\n  bnid: 127.0.0.1\n", ":2: defaults.bnid: unknown key"),
    ("nodes: []\n", ":1: nodes: List should have at least 1 item"),
    ("- a\n- b\n", ":1: must be a mapping (key: value), got a list"),
    ("nodes:\n  - name: a\n    backend: memory\n",
     ":3: node 'a': backend: must be a mapping (key: value), got 'memory'"),
])
def test_bad_defaults_and_shapes(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    problems = errors(path)
    assert len(problems) == 1 and problems[0].startswith(f"{path}{expected}"), problems


def test_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, """
        nodes:
          - name: a
            ipmi: {port: 7000}
            ipmi: {port: 7001}
        """)
    assert errors(path) == [
        f"{path}:4: node 'a': ipmi: duplicate key (the later value would win silently)"]


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "nodes:\n  - name: a\n    ipmi: {port: 7000\n  - name: b\n")
    [problem] = errors(path)
    assert problem.startswith(f"{path}:4: YAML syntax: ")


def test_an_unreadable_file(tmp_path: Path) -> None:
    assert errors(tmp_path / "missing.yaml") == [
        f"{tmp_path / 'missing.yaml'}: cannot read config: No such file or directory"]


def test_nodes_flag_with_a_node_list_is_refused(tmp_path: Path) -> None:
    assert errors(write(tmp_path, NODES), Overrides(nodes=5)) == [
        "--nodes: cannot be used with a config file that lists nodes"]


def test_bad_flag_with_a_file(tmp_path: Path) -> None:
    assert errors(write(tmp_path, NODES), Overrides(password="p" * 21)) == [
        "--password: longer than 20 bytes (the IPMI 2.0 limit)"]
