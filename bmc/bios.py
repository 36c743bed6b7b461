"""BIOS setup of a simulated server: current attributes, pending changes, passwords.

Like real firmware, changed settings are only *pending* until the server next boots: the node
model emits a "power" event with the boot device whenever the server boots, and the BIOS
applies its pending attributes then (whichever protocol caused the boot). `BootMode` is not
stored here: it is the node's boot mode (the IPMI/Redfish boot override mode), read live and
written through `Node.set_boot_override` when a pending change is applied.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bmc.node import Node, NodeEvent
    from bmc.state import NodeState

Value = str | int | bool
#: the state store's kind for BIOS settings (bmc/state.py)
BIOS_KIND = "bios"


@dataclass(frozen=True)
class AttributeDef:
    """One BIOS attribute as an AttributeRegistry describes it."""

    name: str
    type: str  # AttributeRegistry AttributeType: Enumeration, String, Integer, Boolean
    default: Value
    display_name: str
    help_text: str = ""
    values: tuple[str, ...] = ()  # Enumeration only
    read_only: bool = False
    lower: int | None = None  # Integer only
    upper: int | None = None
    max_length: int | None = None  # String only


_ON_OFF = ("Enabled", "Disabled")

#: the attribute set, in the order the registry and `Attributes` list them
ATTRIBUTES: tuple[AttributeDef, ...] = (
    # the default is what a new node boots in (bmc.node.BootOverride: not UEFI)
    AttributeDef("BootMode", "Enumeration", "Legacy", "Boot Mode",
                 "UEFI or Legacy BIOS boot (the server's boot mode).", ("UEFI", "Legacy")),
    AttributeDef("ProcTurboMode", "Enumeration", "Enabled", "Turbo Boost", values=_ON_OFF),
    AttributeDef("ProcVirtualization", "Enumeration", "Enabled", "Virtualization Technology",
                 values=_ON_OFF),
    AttributeDef("ProcHyperthreading", "Enumeration", "Enabled", "Logical Processor",
                 values=_ON_OFF),
    AttributeDef("SriovGlobalEnable", "Enumeration", "Disabled", "SR-IOV Global Enable",
                 values=_ON_OFF),
    AttributeDef("EmbeddedSata", "Enumeration", "AhciMode", "Embedded SATA",
                 values=("AhciMode", "RaidMode", "Off")),
    AttributeDef("SysProfile", "Enumeration", "PerfPerWattOptimized", "System Profile",
                 values=("PerfPerWattOptimized", "PerfOptimized", "Custom")),
    AttributeDef("BootSeqRetry", "Enumeration", "Enabled", "Boot Sequence Retry",
                 values=_ON_OFF),
    AttributeDef("PxeDev1EnDis", "Enumeration", "Enabled", "PXE Device 1", values=_ON_OFF),
    AttributeDef("SerialComm", "Enumeration", "OnConRedir", "Serial Communication",
                 values=("OnConRedir", "Off")),
    AttributeDef("NumLock", "Enumeration", "On", "NumLock", values=("On", "Off")),
    AttributeDef("UsbPorts", "Enumeration", "AllOn", "User Accessible USB Ports",
                 values=("AllOn", "OnlyBackPortsOn", "AllOff")),
    AttributeDef("PowerOnDelay", "Integer", 0, "Power On Delay (s)", lower=0, upper=300),
    AttributeDef("MemTest", "Boolean", False, "Memory Test at POST"),
    AttributeDef("AssetTag", "String", "", "Asset Tag", max_length=63),
    AttributeDef("SystemModelName", "String", "Virtual Server", "System Model Name",
                 read_only=True),
)
BY_NAME = {a.name: a for a in ATTRIBUTES}
PASSWORD_NAMES = ("AdminPassword", "UserPassword")
MAX_PASSWORD_LENGTH = 32


@dataclass(frozen=True)
class AttributeProblem:
    """Why one attribute in a change was refused."""

    kind: str  # "unknown", "read-only", "type", "not-in-list", "range", "length"
    name: str
    value: Any


class BiosError(ValueError):
    def __init__(self, problems: list[AttributeProblem]) -> None:
        super().__init__(", ".join(f"{p.name}: {p.kind}" for p in problems))
        self.problems = problems


def check_value(name: str, value: Any) -> AttributeProblem | None:
    attr = BY_NAME.get(name)
    if attr is None:
        return AttributeProblem("unknown", name, value)
    if attr.read_only:
        return AttributeProblem("read-only", name, value)
    kind = {"Enumeration": str, "String": str, "Integer": int, "Boolean": bool}[attr.type]
    # bool is an int in Python: keep true/false out of Integer attributes
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        return AttributeProblem("type", name, value)
    if attr.values and value not in attr.values:
        return AttributeProblem("not-in-list", name, value)
    if attr.type == "Integer" and ((attr.lower is not None and value < attr.lower)
                                   or (attr.upper is not None and value > attr.upper)):
        return AttributeProblem("range", name, value)
    if attr.max_length is not None and len(value) > attr.max_length:
        return AttributeProblem("length", name, value)
    return None


@dataclass
class ApplyResult:
    """What the last application of pending settings did (Redfish `@Redfish.Settings`)."""

    time: float
    applied: dict[str, Value] = field(default_factory=dict)


class Bios:
    """The BIOS of one node. Thread-safe."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._current: dict[str, Value] = {a.name: a.default for a in ATTRIBUTES
                                           if a.name != "BootMode"}
        self._current["SystemModelName"] = node.identity.product
        self._pending: dict[str, Value] = {}
        self._passwords = dict.fromkeys(PASSWORD_NAMES, "")
        self.last_apply: ApplyResult | None = None
        state = node.state
        if state is not None:  # bmc/state.py: settings, pending changes, passwords
            saved = state.get(BIOS_KIND, "settings")
            if saved is not None:
                self._restore(saved, state)
        node.subscribe(self._on_event)

    def _restore(self, saved: Any, state: NodeState) -> None:
        """Take back saved settings, all checked as a client's would be (StateError)."""
        try:
            current, pending, passwords = (saved["current"], saved["pending"],
                                           saved["passwords"])
            problems = [p for values in (current, pending) for name, value in values.items()
                        if (p := check_value(name, value)) is not None]
            if problems or set(passwords) - set(PASSWORD_NAMES) or not all(
                    isinstance(v, str) for v in passwords.values()):
                raise ValueError(f"bad values: {[str(p.name) for p in problems]}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            from bmc.state import StateError

            raise StateError(f"state file {state.store.path}: node '{state.node}' BIOS: "
                             f"unreadable saved settings: {exc!r}") from exc
        self._current.update(current)
        self._pending = dict(pending)
        self._passwords.update(passwords)

    def _save(self) -> None:
        """Save the settings (with the lock held: saves land in the order of changes)."""
        state = self._node.state
        if state is not None:
            writable = {a.name for a in ATTRIBUTES if not a.read_only}
            state.save(BIOS_KIND, "settings", {
                "current": {k: v for k, v in self._current.items() if k in writable},
                "pending": self._pending, "passwords": self._passwords})

    def _boot_mode(self) -> str:
        return "UEFI" if self._node.boot_override.uefi else "Legacy"

    @property
    def attributes(self) -> dict[str, Value]:
        """The settings in effect now, in registry order."""
        with self._lock:
            current = {**self._current, "BootMode": self._boot_mode()}
        return {a.name: current[a.name] for a in ATTRIBUTES}

    @property
    def pending(self) -> dict[str, Value]:
        """Changes waiting for the next boot."""
        with self._lock:
            return dict(self._pending)

    def set_pending(self, changes: dict[str, Any]) -> None:
        """Validate all of `changes` (BiosError lists every problem), then queue them."""
        problems = [p for name, value in changes.items()
                    if (p := check_value(name, value)) is not None]
        if problems:
            raise BiosError(problems)
        with self._lock:
            self._pending.update(changes)
            self._save()

    def clear_pending(self) -> None:
        with self._lock:
            self._pending.clear()
            self._save()

    def reset_to_defaults(self) -> None:
        """ResetBios: every attribute goes back to its default at the next boot."""
        current = self.attributes
        with self._lock:
            self._pending = {a.name: a.default for a in ATTRIBUTES
                             if not a.read_only and current[a.name] != a.default}
            self._save()

    def change_password(self, name: str, old: str, new: str) -> None:
        """Raises KeyError for an unknown password name, ValueError for a wrong old one."""
        if name not in self._passwords:
            raise KeyError(name)
        if len(new) > MAX_PASSWORD_LENGTH:
            raise ValueError(f"the new password is longer than {MAX_PASSWORD_LENGTH}")
        with self._lock:
            if self._passwords[name] != old:
                raise ValueError("the old password does not match")
            self._passwords[name] = new
            self._save()

    def has_password(self, name: str) -> bool:
        with self._lock:
            return bool(self._passwords.get(name))

    def apply_pending(self) -> ApplyResult:
        """What the firmware does at boot: pending settings take effect."""
        with self._lock:
            pending, self._pending = self._pending, {}
            boot_mode = pending.pop("BootMode", None)
            self._current.update(pending)
            result = ApplyResult(time.time(), dict(pending))
            if boot_mode is not None:
                result.applied["BootMode"] = boot_mode
            self.last_apply = result
            self._save()
        if boot_mode is not None:
            self._node.set_boot_override(uefi=boot_mode == "UEFI")
        return result

    def _on_event(self, node: Node, event: NodeEvent) -> None:
        # a boot is a power event that names the device booted from
        if event.kind == "power" and event.detail.get("boot_device") is not None:
            with self._lock:
                nothing = not self._pending
            if not nothing:
                self.apply_pending()
