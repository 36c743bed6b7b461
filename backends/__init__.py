"""Backends: one module per kind of simulated server, behind `backends.base.Backend`."""

from __future__ import annotations

from typing import Any

from backends.base import Backend, BackendError, BootDevice, PowerState

__all__ = ["Backend", "BackendError", "BootDevice", "PowerState", "create_backend", "KINDS"]

#: backend `type:` names accepted in the config; modules are imported only when used
KINDS = ("memory",)


def create_backend(kind: str, settings: dict[str, Any]) -> Backend:
    """Build a backend from its config `type` and remaining settings."""
    if kind == "memory":
        from backends.memory import MemoryBackend

        return MemoryBackend(**settings)
    raise BackendError(f"unknown backend type {kind!r} (known: {', '.join(KINDS)})")
