"""Backends: one module per kind of simulated server, behind `backends.base.Backend`.

The registry maps a config `type:` to a backend class. Built-in backends are imported only
when used (a docker or libvirt node pulls in its client library, nothing else does). Other
packages add backends without forking through the entry-point group `bmc_emulator.backends`:

    [project.entry-points."bmc_emulator.backends"]
    mycloud = "mypackage.backend:MyCloudBackend"
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from backends.base import (
    Backend,
    BackendError,
    BackendRefused,
    BootDevice,
    BootMode,
    Capabilities,
    PowerOp,
    PowerState,
)

__all__ = ["Backend", "BackendError", "BackendRefused", "BootDevice", "BootMode",
           "Capabilities", "PowerOp", "PowerState", "create_backend", "backend_class",
           "known_kinds", "DEFAULT_KIND", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "bmc_emulator.backends"
#: built-in backends: `type:` -> "module:Class"
BUILTIN = {
    "memory": "backends.memory:MemoryBackend",
    "process": "backends.process:ProcessBackend",
    "docker": "backends.docker:DockerBackend",
}
#: what a node without `backend:` gets: a child process with a serial console
DEFAULT_KIND = "process"


@cache
def _plugins() -> dict[str, Any]:
    """Entry points of other packages, by name (built-in names cannot be overridden)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)
            if ep.name not in BUILTIN}


def known_kinds() -> list[str]:
    """Every `type:` the config accepts: the built-in ones, then the plug-ins'."""
    return [*BUILTIN, *sorted(_plugins())]


def backend_class(kind: str) -> type[Backend]:
    """The class for `type: kind`; BackendError if unknown or its module cannot load."""
    try:
        if kind in BUILTIN:
            module, _, name = BUILTIN[kind].partition(":")
            cls = getattr(importlib.import_module(module), name)
        elif kind in _plugins():
            cls = _plugins()[kind].load()
        else:
            raise BackendError(f"unknown backend type {kind!r} (known: "
                               f"{', '.join(known_kinds())})")
    except ImportError as exc:
        raise BackendError(f"backend type {kind!r} cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendError(f"backend type {kind!r} is not a Backend class: {cls!r}")
    return cls


def create_backend(kind: str, settings: dict[str, Any], node_name: str = "") -> Backend:
    """Build a backend from its config `type` and remaining settings.

    Raises TypeError/ValueError for settings the backend does not take, BackendError if it
    cannot start.
    """
    return backend_class(kind)(**settings, node_name=node_name)
