"""Backends: one module per kind of simulated server, behind `backends.base.Backend`."""

from __future__ import annotations

from typing import Any

from backends.base import Backend, BackendError, BootDevice, PowerState

__all__ = ["Backend", "BackendError", "BootDevice", "PowerState", "create_backend", "KINDS",
           "DEFAULT_KIND"]

#: backend `type:` names accepted in the config; modules are imported only when used
KINDS = ("memory", "process")
#: what a node without `backend:` gets: a child process with a serial console
DEFAULT_KIND = "process"


def create_backend(kind: str, settings: dict[str, Any], node_name: str = "") -> Backend:
    """Build a backend from its config `type` and remaining settings.

    Raises TypeError/ValueError for settings the backend does not take, BackendError if it
    cannot start.
    """
    if kind == "memory":
        from backends.memory import MemoryBackend

        return MemoryBackend(**settings)
    if kind == "process":
        from backends.process import ProcessBackend

        return ProcessBackend(**settings, node_name=node_name)
    raise BackendError(f"unknown backend type {kind!r} (known: {', '.join(KINDS)})")
