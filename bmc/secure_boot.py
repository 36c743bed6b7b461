"""UEFI Secure Boot of a simulated server: the setting, the key state and the last boot.

`enabled` is the setup option; whether the *running* boot was verified (`current_boot`) is
only decided when the server boots, from the option, the boot mode (Secure Boot needs UEFI)
and whether a platform key is installed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bmc.node import Node, NodeEvent

#: Redfish SecureBoot.ResetKeys types
RESET_KEYS_TYPES = ("ResetAllKeysToDefault", "DeleteAllKeys", "DeletePK")


class SecureBootError(ValueError):
    """A change the firmware refuses (e.g. enabling Secure Boot in Legacy mode)."""


class SecureBoot:
    """Secure Boot state of one node. Thread-safe."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._enabled = False
        self._keys_installed = True  # factory keys: platform key present, "DeployedMode"
        self._current_boot = False
        node.subscribe(self._on_event)

    @property
    def enabled(self) -> bool:
        with self._lock:
            return self._enabled

    @property
    def mode(self) -> str:
        """Redfish SecureBootMode: SetupMode without a platform key, else DeployedMode."""
        with self._lock:
            return "DeployedMode" if self._keys_installed else "SetupMode"

    @property
    def current_boot(self) -> str:
        """Redfish SecureBootCurrentBoot: was the running boot verified?"""
        with self._lock:
            return "Enabled" if self._current_boot else "Disabled"

    def set_enabled(self, enabled: bool) -> None:
        if enabled and not self._node.boot_override.uefi:
            raise SecureBootError("Secure Boot needs the UEFI boot mode")
        with self._lock:
            self._enabled = enabled

    def reset_keys(self, reset_type: str) -> None:
        if reset_type not in RESET_KEYS_TYPES:
            raise SecureBootError(f"unknown ResetKeysType {reset_type!r}")
        with self._lock:
            # without a platform key the firmware is in setup mode and verifies nothing
            self._keys_installed = reset_type == "ResetAllKeysToDefault"

    def _on_event(self, node: Node, event: NodeEvent) -> None:
        if event.kind == "power" and event.detail.get("boot_device") is not None:
            uefi = node.boot_override.uefi
            with self._lock:
                self._current_boot = self._enabled and self._keys_installed and uefi
