"""The `console:` part of the config, `console_port_base` and the process backend default."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bmc.config import ConfigError, ConsoleConfig, Endpoint, Overrides, default_config, load_config


def load(tmp_path: Path, text: str, overrides: Overrides | None = None) -> list[ConsoleConfig]:
    path = tmp_path / "nodes.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return [node.console for node in load_config(path, overrides).nodes]


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return [str(p).replace(str(tmp_path) + "/", "") for p in caught.value.problems]


def test_consoles_are_off_by_default_and_on_with_a_port_base() -> None:
    assert all(n.console == ConsoleConfig() for n in default_config().nodes)
    config = default_config(Overrides(nodes=2, console_port_base=7000))
    assert [n.console.websocket for n in config.nodes] == [Endpoint("127.0.0.1", 7000),
                                                          Endpoint("127.0.0.1", 7001)]
    assert all(n.backend == "process" for n in config.nodes)


def test_a_node_console_section(tmp_path: Path) -> None:
    first, second = load(tmp_path, """
        defaults: {console_port_base: 7100}
        nodes:
          - name: a
            console:
              log: a.log
              buffer_size: 4096
              websocket: {port: 7200}
              novnc_url: "https://vnc.example/vnc.html?path=a"
          - name: b
        """)
    assert first == ConsoleConfig("a.log", 4096, Endpoint("127.0.0.1", 7200),
                                  "https://vnc.example/vnc.html?path=a")
    assert second.websocket == Endpoint("127.0.0.1", 7101)


def test_console_mistakes_are_refused_with_their_line(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        nodes:
          - name: b
            console: {novnc_url: "vnc://somewhere", buffer_size: 10}
        """) == [
        "nodes.yaml:3: node 'b': console.buffer_size: 10 is out of range 1024..16777216 bytes",
        "nodes.yaml:3: node 'b': console.novnc_url: 'vnc://somewhere' is not an http:// or "
        "https:// URL",
    ]
    assert problems(tmp_path, """
        nodes:
          - name: a
            console: {websocket: {address: 127.0.0.1}}
          - name: c
            redfish: {port: 7300}
            console: {websocket: {port: 7300}}
        """) == [
        "nodes.yaml:3: node 'a': console.websocket.port: required (or set "
        "defaults.console_port_base)",
        "nodes.yaml:6: node 'c': console.websocket.port: 127.0.0.1:7300 is already used by "
        "node 'c' redfish.port, line 5",
    ]
