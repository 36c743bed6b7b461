"""UEFI Secure Boot of a simulated server: the setting, the key databases and the last boot.

`enabled` is the setup option; whether the *running* boot was verified (`current_boot`) is
only decided when the server boots, from the option, the boot mode (Secure Boot needs UEFI)
and whether a platform key is installed.

The key databases are UEFI's: PK (platform key), KEK (key exchange keys), db (allowed), dbx
(forbidden), each holding its factory keys or nothing, and the read-only factory defaults
(PKDefault ...) they are reset from. Without a PK the firmware is in setup mode.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bmc.node import Node, NodeEvent

#: Redfish SecureBoot.ResetKeys types
RESET_KEYS_TYPES = ("ResetAllKeysToDefault", "DeleteAllKeys", "DeletePK")
#: Redfish SecureBootDatabase.ResetKeys types
DATABASE_RESET_TYPES = ("ResetAllKeysToDefault", "DeleteAllKeys")
#: the databases a UEFI firmware keeps (UEFI 2.x variable names), writable ones first
DATABASES = ("PK", "KEK", "db", "dbx")
DEFAULT_DATABASES = tuple(f"{name}Default" for name in DATABASES)
DESCRIPTIONS = {
    "PK": "Platform Key", "KEK": "Key Exchange Keys", "db": "Authorized Signature Database",
    "dbx": "Forbidden Signature Database",
}


#: the state store's kind (bmc/state.py); one row, "settings"
SECURE_BOOT_KIND = "secure_boot"


class SecureBootError(ValueError):
    """A change the firmware refuses (e.g. enabling Secure Boot in Legacy mode)."""


class SecureBoot:
    """Secure Boot state of one node. Thread-safe."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._enabled = False
        # factory keys everywhere: platform key present, "DeployedMode"
        self._installed = dict.fromkeys(DATABASES, True)
        self._current_boot = False
        if node.state is not None:
            self._restore()
        node.subscribe(self._on_event)

    def _restore(self) -> None:
        state = self._node.state
        assert state is not None
        saved = state.get(SECURE_BOOT_KIND, "settings")
        if saved is None:
            return
        try:
            enabled, installed, current = (saved["enabled"], saved["installed"],
                                           saved["current_boot"])
            if not isinstance(installed, dict) or set(installed) != set(DATABASES) or not all(
                    isinstance(v, bool) for v in (enabled, current, *installed.values())):
                raise ValueError(f"expected booleans for enabled, current_boot and "
                                 f"installed {list(DATABASES)}")
        except (KeyError, TypeError, ValueError) as exc:
            raise state.error(SECURE_BOOT_KIND, "settings", repr(exc)) from exc
        self._enabled, self._installed, self._current_boot = enabled, dict(installed), current

    def _save(self) -> None:
        """Save the settings (with the lock held: saves land in the order of changes)."""
        state = self._node.state
        if state is not None:
            state.save(SECURE_BOOT_KIND, "settings", {
                "enabled": self._enabled, "installed": self._installed,
                "current_boot": self._current_boot})

    @property
    def enabled(self) -> bool:
        with self._lock:
            return self._enabled

    @property
    def mode(self) -> str:
        """Redfish SecureBootMode: SetupMode without a platform key, else DeployedMode."""
        with self._lock:
            return "DeployedMode" if self._installed["PK"] else "SetupMode"

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
            self._save()

    def reset_keys(self, reset_type: str) -> None:
        """SecureBoot.ResetKeys: every database to its default, emptied, or only PK deleted."""
        if reset_type not in RESET_KEYS_TYPES:
            raise SecureBootError(f"unknown ResetKeysType {reset_type!r}")
        with self._lock:
            if reset_type == "DeletePK":
                self._installed["PK"] = False
            else:
                self._installed = dict.fromkeys(DATABASES, reset_type == "ResetAllKeysToDefault")
            self._save()

    # -- the key databases ------------------------------------------------------------------
    @staticmethod
    def databases() -> tuple[str, ...]:
        """The database names (Redfish DatabaseId and Id), the factory defaults last."""
        return DATABASES + DEFAULT_DATABASES

    def has_keys(self, database: str) -> bool:
        """Whether `database` holds keys now (KeyError for an unknown one)."""
        if database in DEFAULT_DATABASES:
            return True  # the firmware's own copies: never changed
        with self._lock:
            return self._installed[database]

    def reset_database(self, database: str, reset_type: str) -> None:
        """SecureBootDatabase.ResetKeys on one database; the defaults cannot be changed."""
        if database not in DATABASES:
            raise SecureBootError(f"{database} is read-only")
        if reset_type not in DATABASE_RESET_TYPES:
            raise SecureBootError(f"unknown ResetKeysType {reset_type!r}")
        with self._lock:
            self._installed[database] = reset_type == "ResetAllKeysToDefault"
            self._save()

    def _on_event(self, node: Node, event: NodeEvent) -> None:
        if event.kind == "power" and event.detail.get("boot_device") is not None:
            uefi = node.boot_override.uefi
            with self._lock:
                current = self._enabled and self._installed["PK"] and uefi
                if current != self._current_boot:  # a boot of a server that keeps running
                    self._current_boot = current
                    self._save()
