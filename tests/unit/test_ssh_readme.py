"""The README's worked examples for the `metal` and `ssh` backends are configs `serve` takes."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from backends import backend_class
from bmc.config import load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def example(heading: str) -> str:
    section = README.read_text().split(heading, 1)[1].split("\n## ", 1)[0]
    return section.split("```yaml", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize(("heading", "kind", "name"), [
    ("## The `metal` backend", "metal", "web-1"),
    ("## The `ssh` backend", "ssh", "vm1"),
])
def test_the_worked_example_is_a_valid_config(heading: str, kind: str, name: str,
                                              tmp_path: Path) -> None:
    path = tmp_path / "nodes.yaml"
    path.write_text(example(heading))
    config = load_config(path)
    node = config.nodes[0]
    assert (node.name, node.backend) == (name, kind)
    # every setting is one the backend takes (its constructor's keyword arguments)
    inspect.signature(backend_class(kind)).bind(**node.backend_settings, node_name=name)
