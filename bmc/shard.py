"""Shards: which part of one fleet config a process serves (`serve --shard`).

Several processes (e.g. the pods of a Kubernetes StatefulSet) read the *same* fleet config and
each serves a slice of it. A shard is either

- `I/N`: node *k* (0-based, in fleet order) when *k* mod N = I, for 0 <= I < N; or
- an explicit comma-separated list of node names and/or fleet indices: `node-3,node-7,12`.

Selection happens after the whole fleet is resolved, so a node keeps the endpoints it has in
the full fleet (port base + k, or address base + k): a sharded fleet looks the same from
outside as one process serving everything.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

#: "I/N"; node names never contain "/", so this cannot be mistaken for a list of names
_MODULO = re.compile(r"\s*([+-]?\d+)\s*/\s*([+-]?\d+)\s*")
#: how many unknown names an error message lists before "and N more"
_SHOWN = 5


class ShardError(ValueError):
    """A shard spec that cannot be parsed, or that does not fit the fleet."""


class Named(Protocol):
    name: str


N = TypeVar("N", bound=Named)


@dataclass(frozen=True)
class Shard:
    """A parsed spec: `index`/`count` (I/N), or `members` (names and indices as given)."""

    index: int = 0
    count: int = 1
    members: tuple[str, ...] | None = None

    def __str__(self) -> str:
        return ",".join(self.members) if self.members is not None else f"{self.index}/{self.count}"


def parse(spec: str) -> Shard:
    """`"I/N"` or `"name,name,index,..."`; ShardError says what is wrong with anything else."""
    match = _MODULO.fullmatch(spec)
    if match:
        index, count = int(match[1]), int(match[2])
        if count < 1:
            raise ShardError(f"{spec.strip()!r}: the number of shards N must be at least 1, "
                             f"got {count}")
        if not 0 <= index < count:
            raise ShardError(f"{spec.strip()!r}: the shard index I must be in 0..{count - 1} "
                             f"(I/N with N = {count}), got {index}")
        return Shard(index, count)
    if "/" in spec:
        raise ShardError(f"{spec!r} is neither I/N (two whole numbers, e.g. 3/8) nor a list of "
                         "node names (which never contain '/')")
    members = tuple(part.strip() for part in spec.split(","))
    if not spec.strip():
        raise ShardError("empty shard: give I/N (e.g. 0/4) or a comma-separated list of nodes")
    if "" in members:
        raise ShardError(f"{spec!r}: empty entry in the node list (a doubled or trailing comma)")
    repeated = sorted({m for m in members if members.count(m) > 1})
    if repeated:
        raise ShardError(f"{spec!r}: {', '.join(repeated)} listed twice")
    return Shard(members=members)


def select(nodes: Sequence[N], shard: Shard | str) -> list[N]:
    """The nodes of `shard`, in fleet order; ShardError if the shard names nodes the fleet does
    not have, or selects none (a process with nothing to serve is a deployment mistake)."""
    if isinstance(shard, str):
        shard = parse(shard)
    if shard.members is None:
        chosen = list(nodes[shard.index::shard.count])
        if not chosen:
            raise ShardError(f"shard {shard} selects no node: the fleet has only {len(nodes)} "
                             f"node{'s' if len(nodes) != 1 else ''} (node k belongs to shard "
                             f"k mod {shard.count})")
    else:
        chosen = [nodes[k] for k in sorted(_indices(nodes, shard.members))]
    log.info("shard %s: serving %d of %d nodes", shard, len(chosen), len(nodes))
    return chosen


def _indices(nodes: Sequence[Named], members: tuple[str, ...]) -> set[int]:
    """Fleet indices of the listed members: a member is a node's name if some node has that
    name (names win: a node may be called "7"), else a 0-based fleet index."""
    by_name = {node.name: k for k, node in enumerate(nodes)}
    indices: dict[int, str] = {}
    unknown = []
    for member in members:
        if member in by_name:
            k = by_name[member]
        elif member.isascii() and member.isdigit() and int(member) < len(nodes):
            k = int(member)
        else:
            unknown.append(member)
            continue
        if k in indices:
            raise ShardError(f"{indices[k]!r} and {member!r} are the same node "
                             f"({nodes[k].name}, index {k})")
        indices[k] = member
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:_SHOWN])
        more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
        raise ShardError(f"unknown node{'s' if len(unknown) > 1 else ''} {shown}{more}: neither "
                         f"a node name nor an index in 0..{len(nodes) - 1}")
    return set(indices)
