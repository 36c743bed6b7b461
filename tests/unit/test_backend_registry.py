"""The backend registry: built-in kinds, and third-party kinds from entry points."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import backends
from backends import BackendError, backend_class, create_backend, known_kinds
from backends.memory import MemoryBackend


@pytest.fixture
def plugin_dist(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution (a dist-info on sys.path) that declares backends."""
    (tmp_path / "acme_backend.py").write_text(textwrap.dedent('''
        from backends.memory import MemoryBackend

        class AcmeBackend(MemoryBackend):
            kind = "acme"

        class NotABackend:
            pass
    '''))
    info = tmp_path / "acme_backend-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-backend\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent('''
        [bmc_emulator.backends]
        acme = acme_backend:AcmeBackend
        bogus = acme_backend:NotABackend
        memory = acme_backend:AcmeBackend
    '''))
    sys.path.insert(0, str(tmp_path))
    backends._plugins.cache_clear()
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("acme_backend", None)
    backends._plugins.cache_clear()


def test_built_in_kinds_come_first_and_load_lazily() -> None:
    assert known_kinds()[:2] == ["memory", "process"]
    assert backend_class("memory") is MemoryBackend


def test_a_package_adds_a_backend_through_an_entry_point(plugin_dist: Path) -> None:
    assert "acme" in known_kinds()
    backend = create_backend("acme", {"power_on": True}, "node-1")
    assert type(backend).__name__ == "AcmeBackend" and backend.kind == "acme"
    # a plug-in cannot take over a built-in name, and must name a Backend class
    assert backend_class("memory") is MemoryBackend
    with pytest.raises(BackendError, match="not a Backend class"):
        backend_class("bogus")


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(BackendError, match=r"unknown backend type 'vmware' \(known: memory, "):
        create_backend("vmware", {})
