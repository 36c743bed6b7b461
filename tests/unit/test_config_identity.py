"""Per-node identity (vendor presets) and sensor profiles in the YAML config."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bmc.config import ConfigError, load_config
from bmc.serve import build_nodes
from bmc.vendors import PRESETS, identity_for


def write(tmp_path: Path, node: str) -> Path:
    path = tmp_path / "nodes.yaml"
    path.write_text("nodes:\n" + textwrap.indent(textwrap.dedent(node).lstrip("\n"), "  "))
    return path


def test_a_vendor_preset_with_overrides_reaches_the_node(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
        - name: n0
          backend: {type: memory}
          identity: {vendor: supermicro, serial: S123, firmware_version: "9.9"}
    """))
    [node] = build_nodes(config)
    try:
        assert node.identity.manufacturer == "Supermicro"
        assert node.identity.manufacturer_id == PRESETS["supermicro"].manufacturer_id
        assert (node.identity.serial, node.identity.firmware_version) == ("S123", "9.9")
    finally:
        node.close()


def test_without_identity_a_node_keeps_the_generic_one(tmp_path: Path) -> None:
    [node] = build_nodes(load_config(write(tmp_path, """
        - name: n0
          backend: {type: memory}
    """)))
    try:
        assert node.identity == identity_for("generic", node.default_serial("n0"))
    finally:
        node.close()


def test_a_sensor_profile_replaces_the_default(tmp_path: Path) -> None:
    [node] = build_nodes(load_config(write(tmp_path, """
        - name: n0
          backend: {type: memory}
          sensors:
            - {name: Inlet, kind: temperature, "on": 24, "off": 22}
            - {name: FAN9, kind: fan, "on": 4000, "off": 0}
    """)))
    try:
        assert [s.name for s in node.sensors.readings()] == ["Inlet", "FAN9"]
    finally:
        node.close()


@pytest.mark.parametrize(("node", "expected"), [
    ("""
        - name: n0
          identity: {vendor: acme}
     """, "nodes.yaml:3: node 'n0': identity.vendor: unknown vendor 'acme'"),
    ("""
        - name: n0
          identity: {vendor: dell, colour: blue}
     """, "nodes.yaml:3: node 'n0': identity.colour:"),
    ("""
        - name: n0
          identity: {manufacturer_id: 2000000}
     """, "nodes.yaml:3: node 'n0': identity.manufacturer_id:"),
    ("""
        - name: n0
          sensors:
            - {name: FAN1, kind: blower}
     """, "nodes.yaml:3: node 'n0': sensors: sensors[0]: 'blower' is not a valid SensorKind"),
])
def test_bad_identity_and_sensors_name_line_node_and_field(tmp_path: Path, node: str,
                                                           expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, node))
    messages = [str(p) for p in caught.value.problems]
    assert any(expected in m for m in messages), messages
