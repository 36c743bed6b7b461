"""`serve --shard`: which nodes of a fleet one process serves (bmc/shard.py and its CLI hook)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import bmc.serve
from bmc.cli import main
from bmc.config import Overrides, default_config, load_config
from bmc.shard import Shard, ShardError, parse, select


def fleet(count: int, **flags: object) -> list:
    return default_config(Overrides(nodes=count, **flags)).nodes  # type: ignore[arg-type]


def names(nodes: list) -> list[str]:
    return [node.name for node in nodes]


# -- parsing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec, shard", [
    ("0/1", Shard(0, 1)),
    ("3/8", Shard(3, 8)),
    (" 2 / 5 ", Shard(2, 5)),
    ("node-1", Shard(members=("node-1",))),
    ("node-1, node-4 ,7", Shard(members=("node-1", "node-4", "7"))),
])
def test_parse(spec: str, shard: Shard) -> None:
    assert parse(spec) == shard


@pytest.mark.parametrize("spec, message", [
    ("4/4", "the shard index I must be in 0..3 (I/N with N = 4), got 4"),
    ("-1/4", "the shard index I must be in 0..3"),
    ("0/0", "the number of shards N must be at least 1, got 0"),
    ("1/-2", "the number of shards N must be at least 1, got -2"),
    ("a/2", "is neither I/N (two whole numbers, e.g. 3/8) nor a list of node names"),
    ("1/2/3", "is neither I/N"),
    ("1.5/4", "is neither I/N"),
    ("", "empty shard"),
    ("  ", "empty shard"),
    ("node-1,,node-2", "empty entry in the node list"),
    ("node-1,", "empty entry in the node list"),
    ("node-1,node-2,node-1", "node-1 listed twice"),
])
def test_parse_refuses(spec: str, message: str) -> None:
    with pytest.raises(ShardError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        parse(spec)


# -- selecting ----------------------------------------------------------------------------------
@pytest.mark.parametrize("count, shards", [(count, shards) for count in (1, 2, 3, 7, 10)
                                            for shards in (1, 2, 3, 7) if shards <= count])
def test_modulo_shards_partition_the_fleet(count: int, shards: int) -> None:
    nodes = fleet(count)
    parts = [select(nodes, f"{i}/{shards}") for i in range(shards)]
    for i, part in enumerate(parts):
        assert names(part) == [f"node-{k}" for k in range(count) if k % shards == i]
    assert sorted(n.name for part in parts for n in part) == sorted(names(nodes))


def test_a_shard_without_nodes_is_refused() -> None:
    with pytest.raises(ShardError, match=r"shard 5/8 selects no node: the fleet has only 3 "
                                         r"nodes \(node k belongs to shard k mod 8\)"):
        select(fleet(3), "5/8")
    assert names(select(fleet(3), "2/8")) == ["node-2"]


def test_explicit_list_by_name_and_index_in_fleet_order() -> None:
    nodes = fleet(10)
    assert names(select(nodes, "node-7,2,node-0")) == ["node-0", "node-2", "node-7"]
    assert names(select(nodes, Shard(members=("9",)))) == ["node-9"]


def test_a_name_wins_over_an_index(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(textwrap.dedent("""\
        nodes:
          - {name: "1", backend: {type: memory}}
          - {name: "0", backend: {type: memory}}
          - {name: c, backend: {type: memory}}
    """))
    nodes = load_config(path).nodes
    assert names(select(nodes, "0")) == ["0"]  # the node named "0" (index 1), not index 0
    assert names(select(nodes, "2")) == ["c"]  # no node is named "2": index 2


def test_explicit_list_errors() -> None:
    nodes = fleet(4)
    with pytest.raises(ShardError, match=r"unknown nodes 'node-9', '4': neither a node name nor "
                                         r"an index in 0\.\.3"):
        select(nodes, "node-1,node-9,4")
    with pytest.raises(ShardError, match=r"unknown node 'x'"):
        select(nodes, "x")
    with pytest.raises(ShardError, match=r"'1' and 'node-1' are the same node \(node-1, index 1\)"):
        select(nodes, "1,node-1")
    many = ",".join(f"n{i}" for i in range(8))
    with pytest.raises(ShardError, match=r"'n4' and 3 more"):
        select(nodes, many)


def test_shard_nodes_keep_their_fleet_ports() -> None:
    """A sharded fleet looks the same from outside: node k keeps port base + k."""
    flags = {"ipmi_port_base": 10623, "redfish_port_base": 40000, "console_port_base": 20000,
             "bind": "0.0.0.0"}
    full = {n.name: n for n in fleet(12, **flags)}
    for spec in ("1/4", "3/4", "node-5,11"):
        chosen = select(fleet(12, **flags), spec)
        assert chosen
        for node in chosen:
            k = int(node.name.removeprefix("node-"))
            assert node.ipmi == full[node.name].ipmi
            assert node.redfish == full[node.name].redfish
            assert node.console.websocket == full[node.name].console.websocket
            assert (node.ipmi.port, node.redfish.port) == (10623 + k, 40000 + k)


def test_shard_nodes_keep_their_fleet_addresses(tmp_path: Path) -> None:
    """With one address per BMC (address_base), node k keeps address_base + k."""
    path = tmp_path / "fleet.yaml"
    path.write_text("defaults: {address_base: 127.0.10.1, ipmi_port_base: 623, "
                    "redfish_port_base: 8000}\n")
    full = load_config(path, Overrides(nodes=300)).nodes
    chosen = select(load_config(path, Overrides(nodes=300)).nodes, "2/3")
    assert len(chosen) == 100
    for node in chosen:
        k = int(node.name.removeprefix("node-"))
        assert k % 3 == 2
        assert node.ipmi == full[k].ipmi
        assert node.redfish == full[k].redfish
        assert node.ipmi.address == f"127.0.{10 + (1 + k) // 256}.{(1 + k) % 256}"
        assert (node.ipmi.port, node.redfish.port) == (623, 8000)


# -- the CLI hook -------------------------------------------------------------------------------
def runner() -> CliRunner:
    try:  # click < 8.2 mixes stderr into stdout unless told not to
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Stand-in for bmc.serve.run: records the node names it was given."""
    calls: list[list[str]] = []

    def run(config: object, **options: object) -> int:
        calls.append(names(config.nodes))  # type: ignore[attr-defined]
        return 0

    monkeypatch.setattr(bmc.serve, "run", run)
    return calls


def test_cli_flag_and_env(served: list[list[str]]) -> None:
    result = runner().invoke(main, ["serve", "--nodes", "5", "--shard", "1/2"])
    assert result.exit_code == 0, result.output
    result = runner().invoke(main, ["serve", "--nodes", "5"],
                             env={"BMC_EMULATOR_SHARD": "node-4,0"})
    assert result.exit_code == 0, result.output
    result = runner().invoke(main, ["serve", "--nodes", "2"], env={"BMC_EMULATOR_SHARD": ""})
    assert result.exit_code == 0, result.output
    assert served == [["node-1", "node-3"], ["node-0", "node-4"], ["node-0", "node-1"]]


@pytest.mark.parametrize("args, env, message", [
    (["--shard", "4/4"], {}, "error: --shard: '4/4': the shard index I must be in 0..3"),
    ([], {"BMC_EMULATOR_SHARD": "0/0"}, "error: --shard: '0/0': the number of shards N must"),
    (["--shard", "node-7"], {}, "error: --shard: unknown node 'node-7'"),
    (["--shard", "3/4"], {}, "error: --shard: shard 3/4 selects no node: the fleet has only 3"),
])
def test_cli_refuses_bad_shards(served: list[list[str]], args: list[str], env: dict[str, str],
                                message: str) -> None:
    result = runner().invoke(main, ["serve", "--nodes", "3", *args], env=env)
    assert result.exit_code == 2
    assert message in result.stderr
    assert served == []  # nothing was started


def test_help_mentions_the_env_variable() -> None:
    result = runner().invoke(main, ["serve", "--help"])
    assert "--shard I/N|NODES" in result.output
    assert "BMC_EMULATOR_SHARD" in result.output
