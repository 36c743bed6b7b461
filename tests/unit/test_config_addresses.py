"""`address_base`: every node on its own address (127.0.x.y:623 like real BMCs)."""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest

from bmc.config import ConfigError, Endpoint, Overrides, default_config, load_config, nth_address


def test_each_node_gets_its_own_address_and_the_same_ports() -> None:
    config = default_config(Overrides(nodes=3, address_base="127.0.1.1", ipmi_port_base=623,
                                      redfish_port_base=8000))
    assert [(n.ipmi, n.redfish) for n in config.nodes] == [
        (Endpoint(f"127.0.1.{i}", 623), Endpoint(f"127.0.1.{i}", 8000)) for i in (1, 2, 3)]


def test_addresses_carry_over_octets() -> None:
    config = default_config(Overrides(nodes=3, address_base="127.0.1.254"))
    assert [n.ipmi.address for n in config.nodes] == ["127.0.1.254", "127.0.1.255", "127.0.2.0"]
    assert {n.ipmi.port for n in config.nodes} == {6230}  # the base itself, not base + i


def test_a_thousand_nodes_fit() -> None:
    config = default_config(Overrides(nodes=1000, address_base="127.0.1.1"))
    assert config.nodes[-1].redfish == Endpoint("127.0.4.232", 8000)
    assert len({n.ipmi.address for n in config.nodes}) == 1000


@pytest.mark.parametrize("base", ["::1", "localhost", "127.0.1"])
def test_only_ipv4_addresses_are_taken(base: str) -> None:
    with pytest.raises(ConfigError) as caught:
        default_config(Overrides(address_base=base))
    assert [str(p) for p in caught.value.problems] == [
        f"--address_base: {base!r} is not an IPv4 address"]


def test_a_loopback_range_may_not_leave_127_0_0_0_8() -> None:
    with pytest.raises(ConfigError) as caught:
        default_config(Overrides(nodes=3, address_base="127.255.255.253"))
    messages = [str(p) for p in caught.value.problems]
    assert "node 'node-2': ipmi.address: address_base 127.255.255.253 + node index 2 is past " \
           "the end of 127.0.0.0/8" in messages
    with pytest.raises(ValueError, match="past the end of IPv4"):
        nth_address("255.255.255.255", 1)


def test_the_config_file_sets_it_and_a_node_s_own_address_wins(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text(textwrap.dedent("""\
        defaults:
          address_base: 127.0.9.1
          ipmi_port_base: 623
        nodes:
          - name: a
          - name: b
            ipmi: {address: 127.0.0.1, port: 6300}
          - name: c
    """))
    nodes = load_config(path).nodes
    assert [(n.ipmi, n.redfish) for n in nodes] == [
        (Endpoint("127.0.9.1", 623), Endpoint("127.0.9.1", 8000)),
        (Endpoint("127.0.0.1", 6300), Endpoint("127.0.9.2", 8000)),
        (Endpoint("127.0.9.3", 623), Endpoint("127.0.9.3", 8000)),
    ]


def test_the_flag_beats_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text("defaults: {address_base: 127.0.9.1}\nnodes: [{name: a}]\n")
    nodes = load_config(path, Overrides(address_base="127.0.8.1")).nodes
    assert nodes[0].ipmi.address == "127.0.8.1"


def test_a_bad_address_base_in_the_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text("defaults:\n  address_base: 'fe80::1'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:2: defaults.address_base: 'fe80::1' is not an IPv4 address"]


def test_loopback_addresses_of_the_range_can_be_bound() -> None:
    """Linux routes all of 127.0.0.0/8 to lo: a node's own address needs no setup there."""
    config = default_config(Overrides(nodes=2, address_base="127.0.77.1"))
    for node in config.nodes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((node.ipmi.address, 0))
            assert sock.getsockname()[0] == node.ipmi.address
