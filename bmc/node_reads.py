"""What a backend reads from the server itself (its sensors, event log and identity), for
backends that can (`Capabilities.sensors`, `event_log`, `inventory`: ipmi, redfish): read on
the node's worker at start and at each poll, and fed to the node's sensor model and SEL.

`ForwardedReads` is part of `Node` (its base class).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from backends.base import Backend, BackendError, PowerState, SensorReading

if TYPE_CHECKING:
    import threading

    from bmc.node_types import Identity
    from bmc.sel import SystemEventLog
    from bmc.sensors import SensorModel

log = logging.getLogger("bmc.node")


class ForwardedReads:
    """The server's own sensors, event log and identity (mixed into `Node`)."""

    # what the node provides
    name: str
    backend: Backend
    identity: Identity
    sensors: SensorModel
    sel: SystemEventLog
    _lock: threading.RLock
    _power: PowerState
    _fault: str | None
    _features_state: str
    _backend_readings: list[SensorReading] | None
    _log_cursor: str | None

    if TYPE_CHECKING:  # the node's own (or the other base's): never shadow them at run time
        def build_features(self) -> None: ...
        def _failed(self, what: str, exc: BackendError) -> None: ...
        def _refresh(self) -> None: ...

    def _initial_reads(self) -> None:
        """Worker, at start: sensors and identity first (the features are built from them,
        possibly by the power state's news), then the power state, then the event log."""
        self._read_sensors()
        self._read_inventory()
        if self.backend.poll_interval is None:
            try:
                self._power = self.backend.power_state()
            except BackendError as exc:
                self._failed("power state", exc)
        else:
            self._refresh()
        self._read_log()

    def _refresh_all(self) -> None:
        """Worker, each poll: the power state, then (if it answers) sensors and event log."""
        self._refresh()
        if self._fault is None:
            self._read_sensors()
            self._read_log()

    def _read_sensors(self) -> None:
        if not self.backend.capabilities.sensors:
            return
        try:
            readings = self.backend.read_sensors()
        except BackendError as exc:
            log.warning("%s: reading the server's sensors failed: %s", self.name, exc)
            readings = None
        if self._backend_readings is None:
            self._backend_readings = readings
        if self._features_state == "built" and self.sensors.external:
            # a failed read leaves no reading rather than a stale one
            values = (_sensor_values(readings) if readings is not None
                      else dict.fromkeys((s.name for s in self.sensors.specs), None))
            self.sensors.feed(values)

    def _read_inventory(self) -> None:
        if not self.backend.capabilities.inventory:
            return
        try:
            info = self.backend.read_inventory()
        except BackendError as exc:
            log.warning("%s: reading the server's identity failed: %s", self.name, exc)
            return
        if info is None:
            return
        known = {key: value for key, value in (
            ("manufacturer", info.manufacturer), ("product", info.product),
            ("serial", info.serial), ("part_number", info.part_number)) if value}
        with self._lock:
            self.identity = replace(self.identity, **known)

    def _read_log(self) -> None:
        if not self.backend.capabilities.event_log:
            return
        try:
            records = self.backend.read_log(self._log_cursor)
        except BackendError as exc:
            log.warning("%s: reading the server's event log failed: %s", self.name, exc)
            return
        if not records:
            return
        from bmc.sel import forward_record

        self.build_features()
        for record in records:
            forward_record(self.sel, record, self.sensors)
        self._log_cursor = records[-1].id


def _sensor_values(readings: list[SensorReading]) -> dict[str, float | None]:
    """Readings by the names the node's sensor profile gives them (16 characters at most)."""
    return {reading.name[:16]: reading.value for reading in readings}
