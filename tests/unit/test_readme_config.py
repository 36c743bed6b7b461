"""The README's configuration example is a config `serve` accepts."""

from __future__ import annotations

from pathlib import Path

from bmc.config import load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_config_example_loads(tmp_path: Path) -> None:
    section = README.read_text().split("## Configuration", 1)[1]
    example = section.split("```yaml", 1)[1].split("```", 1)[0]
    path = tmp_path / "nodes.yaml"
    path.write_text(example)
    config = load_config(path)
    assert [node.name for node in config.nodes] == ["node-0", "node-1", "node-2"]
    assert config.nodes[2].identity == {"vendor": "dell", "serial": "7XK2"}
