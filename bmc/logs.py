"""The system's event log (Redfish `Systems/<id>/LogServices/Log`): power events of the server.

The BMC writes an entry whenever the node reports a power change or a boot; entries are kept
in a bounded ring (oldest dropped first), numbered from 1 and never renumbered, like a SEL.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bmc.node import Node, NodeEvent

RESOURCE_EVENT = "ResourceEvent.1.4.3"


@dataclass(frozen=True)
class LogEntry:
    id: int
    created: float  # wall clock
    severity: str  # Redfish Health: OK, Warning, Critical
    message: str
    message_id: str  # full, e.g. "ResourceEvent.1.4.3.ResourcePoweredOn"
    args: tuple[str, ...] = ()


LogListener = Callable[[LogEntry], None]


class EventLog:
    """A bounded, numbered log. Thread-safe."""

    def __init__(self, capacity: int = 512) -> None:
        self._lock = threading.Lock()
        self._entries: deque[LogEntry] = deque(maxlen=capacity)
        self._next_id = 1
        self.listeners: list[LogListener] = []

    def add(self, message: str, message_id: str, args: tuple[str, ...] = (),
            severity: str = "OK") -> LogEntry:
        with self._lock:
            entry = LogEntry(self._next_id, time.time(), severity, message, message_id, args)
            self._next_id += 1
            self._entries.append(entry)
        for listener in list(self.listeners):
            listener(entry)
        return entry

    def entries(self) -> list[LogEntry]:
        with self._lock:
            return list(self._entries)

    def get(self, entry_id: int) -> LogEntry | None:
        with self._lock:
            return next((e for e in self._entries if e.id == entry_id), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    @property
    def capacity(self) -> int:
        return self._entries.maxlen or 0


class SystemLog(EventLog):
    """The node's system log: fed by the node's power events."""

    def __init__(self, node: Node, capacity: int = 512) -> None:
        super().__init__(capacity)
        node.subscribe(self._on_event)

    def _on_event(self, node: Node, event: NodeEvent) -> None:
        if event.kind == "backend-failed":
            error = event.detail.get("error", "")
            kind = f"{event.detail.get('action')} failed: {error}"
            self.add(f"The resource property {node.name} has detected errors of type "
                     f"'{kind}'.", f"{RESOURCE_EVENT}.ResourceErrorsDetected",
                     (node.name, kind), severity="Warning")
            return
        if event.kind == "backend-recovered":
            self.add(f"The resource property {node.name} has corrected errors of type "
                     "'backend'.",
                     f"{RESOURCE_EVENT}.ResourceErrorsCorrected", (node.name, "backend"))
            return
        if event.kind != "power":
            return
        action, before, after = (event.detail.get(k) for k in ("action", "before", "after"))
        booted = event.detail.get("boot_device")
        if before == "On" and after == "Off":
            self.add(f"The resource '{node.name}' has powered off.",
                     f"{RESOURCE_EVENT}.ResourcePoweredOff", (node.name,))
        elif before == "Off" and after == "On":
            self.add(f"The resource '{node.name}' has powered on.",
                     f"{RESOURCE_EVENT}.ResourcePoweredOn", (node.name,))
        elif booted is not None:  # a reset of a running server
            self.add(f"The state of resource '{node.name}' has changed to {action}.",
                     f"{RESOURCE_EVENT}.ResourceStateChanged", (node.name, str(action)))
