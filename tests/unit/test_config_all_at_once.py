"""A config file's problems come in one run, not in rounds; backend settings are checked
against the schema of the backend's constructor; `defaults.backend` and `--backend`."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Literal

import pytest

import backends
from backends import Backend, BootDevice, PowerState
from backends.memory import MemoryBackend
from bmc.backend_settings import required_settings, setting_names
from bmc.config import ConfigError, Overrides, default_config, load_config

#: what the memory backend's constructor takes, as the message lists it
MEMORY_SETTINGS = ", ".join(setting_names(MemoryBackend))


def write(tmp_path: Path, text: str, name: str = "nodes.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def errors(path: Path, overrides: Overrides | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return [str(p) for p in caught.value.problems]


# -- every problem of a file in one run -------------------------------------------------------
def test_every_problem_of_a_file_comes_in_one_run(tmp_path: Path) -> None:
    path = write(tmp_path, """
        nodes:
          - name: a
            ipmi: {port: 70000}
          - name: b
            ipmi: {port: 7001}
            colour: blue
          - name: c
            ipmi: {port: 7001}
          - name: a
            backend: {type: memory, command: [/bin/sh]}
          - name: d
            backend:
              type: process
              command: [/no/such/program]
              stop_timeout: "3"
        """)
    assert errors(path) == [
        # a bad port ...
        f"{path}:3: node 'a': ipmi.port: port 70000 is out of range 1..65535",
        # ... an unknown key on a node that also takes part in a clash ...
        f"{path}:6: node 'b': colour: unknown key",
        # ... the clash itself, beside them (it used to come only once the others were fixed)
        f"{path}:8: node 'c': ipmi.port: 127.0.0.1:7001 is already used by node 'b' ipmi.port, "
        "line 5",
        # duplicate names beside schema errors
        f"{path}:9: node 'a': name: duplicate node name (also node 'a' name, line 2)",
        # a setting the backend does not take: from its constructor's signature, not a
        # TypeError from calling it
        f"{path}:10: node 'a': backend.command: unknown key (memory backend settings: "
        f"{MEMORY_SETTINGS})",
        # what only the constructor checks, in the same run, at the setting's own line
        f"{path}:14: node 'd': backend.command: '/no/such/program' is not an executable program",
        f"{path}:15: node 'd': backend.stop_timeout: Input should be a valid number, got '3'",
    ]


def test_flags_defaults_and_nodes_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, """
        defaults:
          username: ''
          colour: blue
        nodes:
          - name: a
            ipmi: {port: 7000}
          - {name: b, ipmi: {port: 7000}}
        """)
    assert errors(path, Overrides(nodes=2, password="p" * 21)) == [
        "--password: longer than 20 bytes (the IPMI 2.0 limit)",
        f"--nodes: refused: {path} lists its own nodes (2 at line 4); --nodes N only sets how "
        "many nodes are generated for a config without a `nodes:` list",
        f"{path}:2: defaults.username: must not be empty (anonymous users are not allowed)",
        f"{path}:3: defaults.colour: unknown key",
        f"{path}:7: node 'b': ipmi.port: 127.0.0.1:7000 is already used by node 'a' ipmi.port, "
        "line 6",
    ]


def test_a_refused_field_is_not_also_reported_as_a_clash(tmp_path: Path) -> None:
    # node b's port is refused (a string); checking its derived stand-in for clashes would
    # only add noise, so the one problem is the one that matters
    path = write(tmp_path, """
        nodes:
          - {name: a, ipmi: {port: 6231}}
          - {name: b, ipmi: {port: "6231"}}
        """)
    assert errors(path) == [
        f"{path}:3: node 'b': ipmi.port: Input should be a valid integer, got '6231'"]


def test_a_node_with_a_bad_name_is_still_checked_against_the_others(tmp_path: Path) -> None:
    path = write(tmp_path, """
        nodes:
          - {name: a, redfish: {port: 9000}}
          - {name: "b b", redfish: {port: 9000}}
          - {redfish: {port: 9000}}
        """)
    assert errors(path) == [
        f"{path}:3: node 'b b': name: 'b b' is not a valid node name (letters, digits, '.', "
        "'_', '-'; starting with a letter or digit; at most 63 characters)",
        f"{path}:3: node 'b b': redfish.port: 127.0.0.1:9000 is already used by node 'a' "
        "redfish.port, line 2",
        f"{path}:4: nodes[2].name: required key is missing",
        f"{path}:4: node 'nodes[2]': redfish.port: 127.0.0.1:9000 is already used by node 'a' "
        "redfish.port, line 2",
    ]


def test_constructor_problems_of_every_node_come_together_at_serve(tmp_path: Path) -> None:
    # nothing the schema sees: the file loads, and building the nodes names both
    from bmc.serve import build_nodes

    path = write(tmp_path, """
        nodes:
          - name: a
            backend: {type: process, command: [/no/such/program]}
          - name: b
            backend:
              type: process
              cwd: /no/such/directory
        """)
    config = load_config(path)
    with pytest.raises(ConfigError) as caught:
        build_nodes(config)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:3: node 'a': backend.command: '/no/such/program' is not an executable program",
        f"{path}:7: node 'b': backend.cwd: '/no/such/directory' is not a directory",
    ]


# -- the settings schema comes from the constructor -------------------------------------------
class TypedBackend(Backend):
    """A backend whose constructor uses every kind of hint the seam recommends."""

    kind = "typed"

    def __init__(self, image: str, *, mode: Literal["fast", "slow"] = "fast",
                 args: list[str] | None = None, labels: dict[str, str] | None = None,
                 timeout: float = 1.0, enabled: bool = True, node_name: str = "") -> None:
        self.settings = (image, mode, args, labels, timeout, enabled)
        self.node_name = node_name

    def power_state(self) -> PowerState:
        return PowerState.OFF

    def power_on(self, boot_device: BootDevice) -> None:
        pass

    def power_off(self) -> None:
        pass


@pytest.fixture
def typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(backends.BUILTIN, "typed", f"{__name__}:TypedBackend")


def test_the_schema_is_the_constructors_signature(typed: None) -> None:
    assert setting_names(TypedBackend) == ["image", "mode", "args", "labels", "timeout",
                                           "enabled"]
    assert required_settings(TypedBackend) == ["image"]


def test_every_bad_setting_is_named_with_its_line(tmp_path: Path, typed: None) -> None:
    path = write(tmp_path, """
        nodes:
          - name: a
            backend:
              type: typed
              mode: medium
              args: [--x, 3]
              labels: {a: 1}
              timeout: soon
              enabled: "yes"
              node_name: x
          - name: b
            backend: {type: typed}
        """)
    assert errors(path) == [
        f"{path}:3: node 'a': backend.image: required key is missing",  # at `backend:`
        f"{path}:5: node 'a': backend.mode: Input should be 'fast' or 'slow'",
        f"{path}:6: node 'a': backend.args[1]: Input should be a valid string, got 3",
        f"{path}:7: node 'a': backend.labels.a: Input should be a valid string, got 1",
        f"{path}:8: node 'a': backend.timeout: Input should be a valid number, got 'soon'",
        f"{path}:9: node 'a': backend.enabled: Input should be a valid boolean, got 'yes'",
        # node_name is the emulator's to pass, never the config's
        f"{path}:10: node 'a': backend.node_name: unknown key (typed backend settings: image, "
        "mode, args, labels, timeout, enabled)",
        f"{path}:12: node 'b': backend.image: required key is missing",
    ]


def test_good_settings_reach_the_backend(tmp_path: Path, typed: None) -> None:
    from bmc.serve import build_nodes

    path = write(tmp_path, """
        nodes:
          - name: a
            backend: {type: typed, image: debian, mode: slow, args: [-v], labels: {k: v},
                      timeout: 2, enabled: false}
        """)
    [node] = build_nodes(load_config(path))
    try:
        assert node.backend.settings == ("debian", "slow", ["-v"], {"k": "v"}, 2, False)
        assert node.backend.node_name == "a"
    finally:
        node.close()


# -- defaults.backend and --backend -----------------------------------------------------------
def test_defaults_backend_is_the_backend_of_generated_nodes(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  backend: {type: memory, power_on: true}\n")
    config = load_config(path, Overrides(nodes=2))
    assert [(n.name, n.backend, n.backend_settings) for n in config.nodes] == [
        ("node-0", "memory", {"power_on": True}), ("node-1", "memory", {"power_on": True})]


def test_defaults_backend_is_the_backend_of_listed_nodes_without_one(tmp_path: Path) -> None:
    path = write(tmp_path, """
        defaults:
          backend: {type: memory}
        nodes:
          - name: a
          - name: b
            backend: {type: process, stop_timeout: 1}
        """)
    a, b = load_config(path).nodes
    assert (a.backend, a.backend_settings) == ("memory", {})
    assert (b.backend, b.backend_settings) == ("process", {"stop_timeout": 1})


def test_a_bad_defaults_backend_setting_is_reported_once(tmp_path: Path) -> None:
    path = write(tmp_path, """
        defaults:
          backend: {type: memory, power_on: 1}
        nodes:
          - name: a
          - name: b
        """)
    assert errors(path) == [
        f"{path}:2: defaults.backend.power_on: Input should be a valid boolean, got 1"]


def test_a_defaults_backend_refused_by_its_constructor_is_reported_once(tmp_path: Path) -> None:
    from bmc.serve import build_nodes

    path = write(tmp_path, """
        defaults:
          backend:
            type: process
            command: [/no/such/program]
        """)
    config = load_config(path, Overrides(nodes=3))
    with pytest.raises(ConfigError) as caught:
        build_nodes(config)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:4: defaults.backend.command: '/no/such/program' is not an executable program"]


def test_the_backend_flag_replaces_the_files_default_type(tmp_path: Path) -> None:
    path = write(tmp_path, """
        defaults:
          backend: {type: process, stop_timeout: 1}
        nodes:
          - name: a
          - name: b
            backend: {type: process}
        """)
    a, b = load_config(path, Overrides(backend="memory")).nodes
    assert (a.backend, a.backend_settings, a.backend_from) == ("memory", {}, "--backend")
    assert (b.backend, b.backend_settings) == ("process", {})  # a node's own backend wins
    # the same type keeps the file's settings for it
    a, _ = load_config(path, Overrides(backend="process")).nodes
    assert (a.backend, a.backend_settings) == ("process", {"stop_timeout": 1})


def test_the_backend_flag_without_a_file() -> None:
    config = default_config(Overrides(nodes=2, backend="memory"))
    assert [(n.backend, n.backend_settings) for n in config.nodes] == [("memory", {})] * 2
    assert [n.backend for n in default_config().nodes] == ["process"] * 3


@pytest.mark.parametrize(("kind", "expected"), [
    ("docker-ish", "--backend: unknown backend type 'docker-ish' (known: "),
    ("typed", "--backend: the typed backend needs settings (image): give it as "
              "`defaults.backend: {type: typed, ...}` in a config file instead"),
])
def test_a_backend_flag_that_cannot_work_is_refused(kind: str, expected: str,
                                                    typed: None) -> None:
    with pytest.raises(ConfigError) as caught:
        default_config(Overrides(backend=kind))
    [problem] = caught.value.problems
    assert str(problem).startswith(expected), problem
