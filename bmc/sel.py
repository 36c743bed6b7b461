"""The System Event Log of a node: a ring of IPMI SEL records, shared by IPMI (Get/Add/Clear
SEL Entry) and Redfish (the manager's LogService).

Entries are the standard 16-byte IPMI records (IPMI 2.0 section 32), kept as bytes with the
sensor name and a readable message beside them:

    for entry in node.sel.entries():          # oldest first
        entry.record_id, entry.created, entry.message, entry.severity, entry.entry_code
    node.sel.subscribe(lambda entry: ...)     # every new entry, outside the log's lock
    node.sel.clear()                          # leaves one "Log area reset/cleared" entry

`record_node_events(node)` logs the node's power actions (from either protocol) and its
sensors' threshold crossings.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bmc.sensors import SensorKind, ThresholdEvent

if TYPE_CHECKING:
    from backends.base import LogRecord
    from bmc.node import Node, NodeEvent
    from bmc.sensors import SensorModel
    from bmc.state import NodeState

CAPACITY = 512
#: the state store's kind for the SEL (bmc/state.py)
SEL_KIND = "sel"
RECORD_SIZE = 16
SYSTEM_EVENT = 0x02  # record type of a standard system event record
BMC_GENERATOR = 0x20  # generator ID: the BMC itself (slave address 20h, LUN 0)
EVM_REV = 0x04  # event message format of IPMI 1.5/2.0
THRESHOLD = 0x01  # event/reading type code of threshold sensors
SENSOR_SPECIFIC = 0x6F  # event/reading type code of sensor-specific discrete sensors
#: "unspecified" SEL UTC offset (Get SEL Time UTC Offset)
UTC_OFFSET_UNSPECIFIED = 0x7FF

#: IPMI sensor type codes (table 42-3) with their Redfish LogEntry SensorType names
SENSOR_TYPES: dict[int, str] = {
    0x01: "Temperature", 0x02: "Voltage", 0x03: "Current", 0x04: "Fan",
    0x05: "Physical Chassis Security", 0x06: "Platform Security Violation Attempt",
    0x07: "Processor", 0x08: "Power Supply / Converter", 0x09: "PowerUnit / Power Control",
    0x0A: "Cooling Device", 0x0B: "Other Units-based Sensor", 0x0C: "Memory",
    0x0D: "Drive Slot/Bay", 0x0E: "POST Memory Resize", 0x0F: "System Firmware Progress",
    0x10: "Event Logging Disabled", 0x12: "System Event", 0x13: "Critical Interrupt",
    0x14: "Button/Switch", 0x15: "Module/Board", 0x16: "Microcontroller/Coprocessor",
    0x17: "Add-in Card", 0x18: "Chassis", 0x19: "ChipSet", 0x1A: "Other FRU",
    0x1B: "Cable/Interconnect", 0x1C: "Terminator", 0x1D: "SystemBoot/Restart Initiated",
    0x1E: "Boot Error", 0x1F: "BaseOSBoot/InstallationStatus", 0x20: "OS Stop/Shutdown",
    0x21: "Slot/Connector", 0x22: "System ACPI PowerState", 0x23: "Watchdog",
    0x24: "Platform Alert", 0x25: "Entity Presence", 0x26: "Monitor ASIC/IC", 0x27: "LAN",
    0x28: "Management Subsystem Health", 0x29: "Battery", 0x2A: "Session Audit",
    0x2B: "Version Change", 0x2C: "FRUState",
}

#: IPMI sensor type of each kind of modelled sensor (watts as "Current", as Dell does)
KIND_SENSOR_TYPES: dict[SensorKind, int] = {
    SensorKind.TEMPERATURE: 0x01, SensorKind.VOLTAGE: 0x02, SensorKind.POWER: 0x03,
    SensorKind.FAN: 0x04, SensorKind.PSU: 0x08,
}

#: threshold event offsets (table 42-2), which are also Redfish EntryCode values
THRESHOLD_TEXT = (
    "Lower Non-critical - going low", "Lower Non-critical - going high",
    "Lower Critical - going low", "Lower Critical - going high",
    "Lower Non-recoverable - going low", "Lower Non-recoverable - going high",
    "Upper Non-critical - going low", "Upper Non-critical - going high",
    "Upper Critical - going low", "Upper Critical - going high",
    "Upper Non-recoverable - going low", "Upper Non-recoverable - going high",
)
#: the offset logged when a threshold is crossed in its direction
THRESHOLD_OFFSETS = {"lower_non_critical": 0x00, "lower_critical": 0x02,
                     "lower_non_recoverable": 0x04, "upper_non_critical": 0x07,
                     "upper_critical": 0x09, "upper_non_recoverable": 0x0B}

#: sensor-specific offsets (table 42-3) of the sensor types this BMC logs or models
SPECIFIC_TEXT: dict[int, dict[int, str]] = {
    0x08: {0: "Presence detected", 1: "Power supply failure detected", 2: "Predictive failure",
           3: "Power supply input lost (AC/DC)"},
    0x09: {0: "Power off/down", 1: "Power cycle", 2: "240VA power down",
           3: "Interlock power down", 4: "AC lost", 5: "Soft-power control failure",
           6: "Power unit failure detected", 7: "Predictive failure"},
    0x10: {0: "Correctable memory error logging disabled", 1: "Event type logging disabled",
           2: "Log area reset/cleared", 3: "All event logging disabled", 4: "SEL full",
           5: "SEL almost full"},
    0x13: {0: "Front panel NMI / diagnostic interrupt", 1: "Bus timeout",
           2: "I/O channel check NMI", 3: "Software NMI"},
    0x14: {0: "Power button pressed", 1: "Sleep button pressed", 2: "Reset button pressed"},
    0x28: {0: "Sensor access degraded or unavailable",
           1: "Controller access degraded or unavailable", 2: "Management controller off-line",
           3: "Management controller unavailable", 4: "Sensor failure", 5: "FRU failure"},
    0x1D: {0: "Initiated by power up", 1: "Initiated by hard reset",
           2: "Initiated by warm reset", 3: "User requested PXE boot",
           4: "Automatic boot to diagnostic", 5: "OS / run-time software initiated hard reset",
           6: "OS / run-time software initiated warm reset", 7: "System restart"},
    0x22: {0: "S0/G0: working", 1: "S1: sleeping with system hw & processor context "
           "maintained", 2: "S2: sleeping, processor context lost", 3: "S3: sleeping, "
           "processor & hw context lost, memory retained", 4: "S4: non-volatile sleep/"
           "suspend-to-disk", 5: "S5/G2: soft-off", 6: "S4/S5: soft-off", 7: "G3: mechanical "
           "off", 8: "Sleeping in S1/S2/S3 state", 9: "G1: sleeping", 0x0A: "S5: entered by "
           "override", 0x0B: "Legacy ON state", 0x0C: "Legacy OFF state", 0x0E: "Unknown"},
}


@dataclass(frozen=True)
class EventSensor:
    """A discrete sensor that exists to log events (and report a state) rather than measure."""

    number: int
    name: str
    sensor_type: int
    entity: tuple[int, int]
    offsets: tuple[int, ...]  # the offsets it can assert


# sensor numbers 0x80.. (modelled sensors use 1..0x7F)
ACPI_STATE = EventSensor(0x80, "ACPI State", 0x22, (0x07, 1), (0x00, 0x05, 0x06))
POWER_UNIT = EventSensor(0x81, "Power Unit", 0x09, (0x13, 1), (0x00, 0x01))
SYS_RESTART = EventSensor(0x82, "Sys Restart", 0x1D, (0x07, 1), (0x00, 0x01, 0x02))
CRITICAL_INT = EventSensor(0x83, "NMI", 0x13, (0x07, 1), (0x00,))
POWER_BUTTON = EventSensor(0x84, "Power Button", 0x14, (0x0C, 1), (0x00,))
EVENT_LOG = EventSensor(0x85, "Event Log", 0x10, (0x07, 1), (0x02,))
#: the server behind the BMC (its backend) cannot be reached or refused a call
BACKEND_HEALTH = EventSensor(0x86, "Backend", 0x28, (0x07, 1), (0x01,))
EVENT_SENSORS = (ACPI_STATE, POWER_UNIT, SYS_RESTART, CRITICAL_INT, POWER_BUTTON, EVENT_LOG,
                 BACKEND_HEALTH)

#: Redfish Severity of threshold events by offset (assertions; deassertions are "OK")
_THRESHOLD_SEVERITY = {0x00: "Warning", 0x02: "Critical", 0x04: "Critical",
                       0x07: "Warning", 0x09: "Critical", 0x0B: "Critical"}


class ReservationCancelled(Exception):
    """The reservation given is not the current one (IPMI completion code C5h)."""


@dataclass(frozen=True)
class SelEntry:
    """One SEL record: the 16 IPMI bytes plus what the BMC knew when it logged it."""

    raw: bytes
    sensor_name: str = ""
    detail: str = ""  # e.g. "reading 0 RPM, threshold 600 RPM"
    #: an entry forwarded from the server's own BMC: its words and severity, as it said them
    text: str = ""
    forwarded_severity: str = ""

    @property
    def record_id(self) -> int:
        return int.from_bytes(self.raw[0:2], "little")

    @property
    def record_type(self) -> int:
        return self.raw[2]

    @property
    def timestamped(self) -> bool:
        return self.record_type < 0xE0

    @property
    def timestamp(self) -> int:
        """Seconds since 1970 on the SEL clock (0 for non-timestamped OEM records)."""
        return int.from_bytes(self.raw[3:7], "little") if self.timestamped else 0

    @property
    def created(self) -> str:
        """The timestamp as ISO 8601 UTC (Redfish `Created`)."""
        return datetime.fromtimestamp(self.timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")

    @property
    def standard(self) -> bool:
        return self.record_type == SYSTEM_EVENT

    @property
    def generator_id(self) -> int:
        return int.from_bytes(self.raw[7:9], "little")

    @property
    def sensor_type(self) -> int:
        return self.raw[10]

    @property
    def sensor_number(self) -> int:
        return self.raw[11]

    @property
    def event_type(self) -> int:
        """The event/reading type code (01h threshold, 6Fh sensor-specific, ...)."""
        return self.raw[12] & 0x7F

    @property
    def asserted(self) -> bool:
        return not self.raw[12] & 0x80

    @property
    def event_data(self) -> bytes:
        return self.raw[13:16]

    @property
    def offset(self) -> int:
        return self.raw[13] & 0x0F

    @property
    def sensor_type_name(self) -> str:
        """The Redfish LogEntry `SensorType`."""
        return SENSOR_TYPES.get(self.sensor_type, "OEM") if self.standard else "OEM"

    @property
    def event_text(self) -> str:
        if not self.standard:
            return f"OEM record type {self.record_type:#04x}"
        if self.event_type == THRESHOLD and self.offset < len(THRESHOLD_TEXT):
            return THRESHOLD_TEXT[self.offset]
        if self.event_type == SENSOR_SPECIFIC:
            text = SPECIFIC_TEXT.get(self.sensor_type, {}).get(self.offset)
            if text:
                return text
        return f"Event offset {self.offset:#04x}"

    @property
    def entry_code(self) -> str:
        """The Redfish LogEntry `EntryCode`."""
        if not self.standard:
            return "OEM"
        if self.event_type == THRESHOLD and self.offset < len(THRESHOLD_TEXT):
            return THRESHOLD_TEXT[self.offset]
        return "Assert" if self.asserted else "Deassert"

    @property
    def severity(self) -> str:
        """Redfish `Severity`: OK, Warning or Critical."""
        if self.forwarded_severity:
            return self.forwarded_severity
        if not self.standard or not self.asserted:
            return "OK"
        if self.event_type == THRESHOLD:
            return _THRESHOLD_SEVERITY.get(self.offset, "Warning")
        if (self.sensor_type, self.offset) in {(0x08, 1), (0x09, 6), (0x13, 0)}:
            return "Critical"
        if (self.sensor_type, self.offset) in {(0x08, 2), (0x08, 3), (0x09, 4)}:
            return "Warning"
        return "OK"

    @property
    def message(self) -> str:
        """One readable line, e.g. "FAN1: Lower Critical - going low, asserted (...)"."""
        if self.text:
            return self.text
        sensor = self.sensor_name or f"{self.sensor_type_name} #{self.sensor_number:#04x}"
        text = f"{sensor}: {self.event_text}"
        if self.standard:
            text += ", asserted" if self.asserted else ", deasserted"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True)
class SelInfo:
    entries: int
    capacity: int
    free_bytes: int
    last_addition: int  # SEL clock seconds; 0 = never
    last_erase: int
    overflow: bool  # entries were dropped because the log was full


EntryListener = Callable[[SelEntry], None]


@dataclass(frozen=True)
class SavedSel:
    """A SEL as the state store kept it (meta None: none was saved)."""

    entries: list[SelEntry]
    meta: dict[str, Any] | None


def read_saved(state: NodeState) -> SavedSel:
    """The saved SEL of `state`'s node, checked; StateError if a row cannot be read (never
    silently dropped)."""
    saved = state.load(SEL_KIND)
    if not saved:
        return SavedSel([], None)
    try:
        meta = saved["meta"]
        for name, kind in (("next_id", int), ("offset", float), ("utc_offset", int),
                           ("last_addition", int), ("last_erase", int), ("overflow", bool)):
            if not isinstance(meta[name], kind):
                raise ValueError(f"{name} is {meta[name]!r}")
        rows = sorted((int(k), v) for k, v in saved.items() if k != "meta")
        entries = [SelEntry(bytes.fromhex(v["raw"]), v["sensor_name"], v["detail"], v["text"],
                            v["severity"]) for _, v in rows]
        if any(len(e.raw) != RECORD_SIZE for e in entries):
            raise ValueError("a record is not 16 bytes")
    except (KeyError, TypeError, ValueError) as exc:
        from bmc.state import StateError

        raise StateError(f"state file {state.store.path}: node '{state.node}' SEL: "
                         f"unreadable saved entries: {exc!r}") from exc
    return SavedSel(entries, meta)


class SystemEventLog:
    """A ring of at most `capacity` SEL entries with IPMI reservations. Thread-safe.

    `refresh` is called (outside the lock) before entries are read, so that lazily found
    events (a temperature that drifted over a threshold) are logged before they are listed.
    """

    def __init__(self, capacity: int = CAPACITY, *, clock: Callable[[], float] = time.time,
                 refresh: Callable[[], object] | None = None) -> None:
        self.capacity = capacity
        self._clock = clock
        self.refresh = refresh
        self._lock = threading.Lock()
        self._entries: deque[SelEntry] = deque()
        self._next_id = 1
        self._offset = 0.0  # SEL time minus the host clock
        self._utc_offset = UTC_OFFSET_UNSPECIFIED
        self._last_addition = 0
        self._last_erase = 0
        self._overflow = False
        self._reservation = 0
        self._listeners: list[EntryListener] = []
        self._state: NodeState | None = None

    # -- persistence (bmc/state.py): one row per entry, one for the log's own fields ---------
    def attach(self, state: NodeState, saved: SavedSel | None = None) -> None:
        """Keep the log in `state`, starting from `saved` (`read_saved`, at start) if any."""
        saved = read_saved(state) if saved is None else saved
        with self._lock:
            if saved.meta is not None:
                self._entries = deque(saved.entries)
                meta = saved.meta
                self._next_id = int(meta["next_id"])
                self._offset = float(meta["offset"])
                self._utc_offset = int(meta["utc_offset"])
                self._last_addition = int(meta["last_addition"])
                self._last_erase = int(meta["last_erase"])
                self._overflow = bool(meta["overflow"])
            self._state = state  # saved from the first change on

    def _meta(self) -> dict[str, Any]:
        return {"next_id": self._next_id, "offset": self._offset, "utc_offset": self._utc_offset,
                "last_addition": self._last_addition, "last_erase": self._last_erase,
                "overflow": self._overflow}

    def _save(self, added: SelEntry | None = None, removed: SelEntry | None = None,
              cleared: bool = False) -> None:
        """Save a change (with the lock held: saves land in the order of the changes)."""
        if self._state is None:
            return
        if cleared:
            self._state.replace(SEL_KIND, {"meta": self._meta()})
            return
        saves: dict[str, Any] = {"meta": self._meta()}
        if added is not None:
            saves[str(added.record_id)] = {"raw": added.raw.hex(), "sensor_name": added.sensor_name,
                                           "detail": added.detail, "text": added.text,
                                           "severity": added.forwarded_severity}
        self._state.apply(SEL_KIND, saves,
                          [str(removed.record_id)] if removed is not None else [])

    # -- clock ------------------------------------------------------------------------------
    def time(self) -> int:
        """The SEL clock: seconds since 1970 (the host's clock plus any Set SEL Time offset)."""
        with self._lock:
            return self._now()

    def _now(self) -> int:
        return int(self._clock() + self._offset) & 0xFFFFFFFF

    def set_time(self, seconds: int) -> None:
        with self._lock:
            self._offset = seconds - self._clock()
            self._save()

    @property
    def utc_offset(self) -> int:
        """Minutes from UTC of the SEL clock, or UTC_OFFSET_UNSPECIFIED."""
        with self._lock:
            return self._utc_offset

    def set_utc_offset(self, minutes: int) -> None:
        if not (-1440 <= minutes <= 1440 or minutes == UTC_OFFSET_UNSPECIFIED):
            raise ValueError("UTC offset must be -1440..1440 minutes")
        with self._lock:
            self._utc_offset = minutes
            self._save()

    # -- reading ----------------------------------------------------------------------------
    def _refresh(self) -> None:
        if self.refresh is not None:
            self.refresh()

    def entries(self) -> list[SelEntry]:
        """Every entry, oldest first."""
        self._refresh()
        with self._lock:
            return list(self._entries)

    def entry(self, record_id: int) -> SelEntry | None:
        """The entry with exactly this record ID (Redfish LogEntries/<id>), or None."""
        return next((e for e in self.entries() if e.record_id == record_id), None)

    def get(self, record_id: int) -> tuple[SelEntry, int] | None:
        """The entry with `record_id` (0 = first, 0xFFFF = last) and the ID after it
        (0xFFFF after the last), or None."""
        self._refresh()
        with self._lock:
            entries = list(self._entries)
        if not entries:
            return None
        if record_id == 0x0000:
            index = 0
        elif record_id == 0xFFFF:
            index = len(entries) - 1
        else:
            index = next((i for i, e in enumerate(entries) if e.record_id == record_id), -1)
            if index < 0:
                return None
        following = entries[index + 1].record_id if index + 1 < len(entries) else 0xFFFF
        return entries[index], following

    def info(self) -> SelInfo:
        self._refresh()
        with self._lock:
            count = len(self._entries)
            return SelInfo(count, self.capacity, (self.capacity - count) * RECORD_SIZE,
                           self._last_addition, self._last_erase, self._overflow)

    # -- writing ----------------------------------------------------------------------------
    def subscribe(self, listener: EntryListener) -> None:
        """Call `listener(entry)` for every entry added from now on."""
        with self._lock:
            self._listeners.append(listener)

    def add(self, sensor_type: int, sensor_number: int, event_type: int, event_data: bytes, *,
            asserted: bool = True, generator_id: int = BMC_GENERATOR, sensor_name: str = "",
            detail: str = "") -> SelEntry:
        """Log a standard system event record (type 02h) stamped with the SEL clock."""
        data = bytes(event_data).ljust(3, b"\xff")[:3]
        record = (b"\x00\x00" + bytes((SYSTEM_EVENT,)) + b"\x00" * 4
                  + struct.pack("<HBBBB", generator_id, EVM_REV, sensor_type, sensor_number,
                                (event_type & 0x7F) | (0 if asserted else 0x80)) + data)
        return self.add_record(record, sensor_name=sensor_name, detail=detail)

    def add_sensor_event(self, sensor: EventSensor, offset: int, *, asserted: bool = True,
                         detail: str = "") -> SelEntry:
        """Log a sensor-specific event of one of this BMC's event sensors."""
        return self.add(sensor.sensor_type, sensor.number, SENSOR_SPECIFIC,
                        bytes((offset & 0x0F, 0xFF, 0xFF)), asserted=asserted,
                        sensor_name=sensor.name, detail=detail)

    def add_record(self, record: bytes, *, sensor_name: str = "", detail: str = "",
                   text: str = "", severity: str = "",
                   timestamp: float | None = None) -> SelEntry:
        """Log a 16-byte record as Add SEL Entry does: the log sets the record ID and, for
        timestamped types (below E0h), the timestamp (`timestamp`, host clock seconds, for
        an event that happened earlier). ValueError for a malformed record."""
        if len(record) != RECORD_SIZE:
            raise ValueError(f"a SEL record is {RECORD_SIZE} bytes")
        if record[2] != SYSTEM_EVENT and record[2] < 0xC0:
            raise ValueError(f"record type {record[2]:#04x} is not a system event or OEM type")
        with self._lock:
            record_id = self._take_id()
            raw = bytearray(record)
            raw[0:2] = record_id.to_bytes(2, "little")
            if raw[2] < 0xE0:
                when = self._now() if timestamp is None else int(timestamp + self._offset)
                raw[3:7] = (when & 0xFFFFFFFF).to_bytes(4, "little")
            entry = SelEntry(bytes(raw), sensor_name, detail, text, severity)
            dropped = None
            if len(self._entries) >= self.capacity:
                dropped = self._entries.popleft()
                self._overflow = True
            self._entries.append(entry)
            self._last_addition = self._now()
            self._save(added=entry, removed=dropped)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(entry)
        return entry

    def _take_id(self) -> int:
        used = {e.record_id for e in self._entries}
        while True:
            record_id = self._next_id
            self._next_id = self._next_id % 0xFFFE + 1  # 1..0xFFFE: 0 and FFFFh are special
            if record_id not in used:
                return record_id

    def delete(self, record_id: int, reservation: int | None = None) -> int | None:
        """Delete one entry (0 = first, 0xFFFF = last); its ID, or None if there is none."""
        with self._lock:
            self._check(reservation)
            entries = list(self._entries)
            if not entries:
                return None
            if record_id == 0x0000:
                victim = entries[0]
            elif record_id == 0xFFFF:
                victim = entries[-1]
            else:
                victim = next((e for e in entries if e.record_id == record_id), None)
                if victim is None:
                    return None
            self._entries.remove(victim)
            self._save(removed=victim)
            return victim.record_id

    def clear(self, reservation: int | None = None) -> None:
        """Erase every entry and log that the log was cleared (as real BMCs do).

        `reservation` (IPMI) must be the current one; None (Redfish) skips the check.
        Raises ReservationCancelled.
        """
        with self._lock:
            self._check(reservation)
            self._entries.clear()
            self._reservation = 0  # an erase cancels the reservation
            self._overflow = False
            self._next_id = 1
            self._last_erase = self._now()
            self._save(cleared=True)
        self.add_sensor_event(EVENT_LOG, 0x02)

    # -- reservations -----------------------------------------------------------------------
    def reserve(self) -> int:
        """A new reservation ID (cancels the previous one)."""
        with self._lock:
            self._reservation = self._reservation % 0xFFFF + 1
            return self._reservation

    def check_reservation(self, reservation: int) -> None:
        with self._lock:
            self._check(reservation)

    def _check(self, reservation: int | None) -> None:
        if reservation is not None and (reservation == 0 or reservation != self._reservation):
            raise ReservationCancelled(f"reservation {reservation:#06x} is not current")


# -- entries of the server's own BMC (a backend's `read_log`) ------------------------------------
#: ipmitool words a threshold event "Upper Critical going high"; ours have " - "
_THRESHOLD_BY_WORDS = {text.replace(" - ", " ").lower(): offset
                       for offset, text in enumerate(THRESHOLD_TEXT)}
#: record type of forwarded entries the model cannot express as a standard record:
#: timestamped OEM (C0h..DFh), so IPMI clients list it with its time
OEM_TIMESTAMPED = 0xC0


def forward_record(sel: SystemEventLog, record: LogRecord,
                   sensors: SensorModel | None = None) -> SelEntry:
    """Log an entry of the server's own event log with its time, words and severity.

    A threshold event of one of the node's (forwarded) sensors becomes the standard record
    of that sensor, so IPMI clients decode it as the BMC behind logged it; anything else an
    OEM record whose text Redfish and our own messages show.
    """
    spec = None
    if sensors is not None and record.sensor:
        with contextlib.suppress(KeyError):
            spec = sensors.spec(record.sensor)
    offset = _THRESHOLD_BY_WORDS.get(" ".join(record.event.split()).lower())
    if spec is not None and offset is not None and spec.kind in KIND_SENSOR_TYPES:
        direction = THRESHOLD | (0 if record.asserted else 0x80)
        raw = (b"\x00\x00" + bytes((SYSTEM_EVENT,)) + b"\x00" * 4
               + struct.pack("<HBBBB", BMC_GENERATOR, EVM_REV, KIND_SENSOR_TYPES[spec.kind],
                             spec.number, direction) + bytes((offset, 0xFF, 0xFF)))
    else:
        raw = bytes((0, 0, OEM_TIMESTAMPED)) + bytes(13)
    return sel.add_record(raw, sensor_name=record.sensor or "", text=record.message,
                          severity=record.severity, timestamp=record.created)


# -- what the BMC logs by itself --------------------------------------------------------------
def power_records(action: str, before: str, after: str) -> list[tuple[EventSensor, int, str]]:
    """(sensor, offset, kind) records for a power action; kind "state" marks the record that
    only says the power state changed (dropped if that change was already logged)."""
    was_on, is_on = before == "On", after == "On"
    records: list[tuple[EventSensor, int, str]] = []
    if action == "PushPowerButton":
        records.append((POWER_BUTTON, 0x00, "action"))
    if is_on and not was_on:
        records.append((ACPI_STATE, 0x00, "state"))  # S0/G0 working
    elif was_on and not is_on:
        if action == "ForceOff":
            records.append((POWER_UNIT, 0x00, "state"))  # power off/down
        else:
            records.append((ACPI_STATE, 0x05, "state"))  # S5/G2 soft-off
    elif was_on and is_on:
        match action:
            case "ForceRestart":
                records.append((SYS_RESTART, 0x01, "action"))  # hard reset
            case "GracefulRestart":
                records.append((SYS_RESTART, 0x02, "action"))  # warm reset
            case "PowerCycle":
                records.append((POWER_UNIT, 0x01, "action"))  # power cycle
            case "Nmi":
                records.append((CRITICAL_INT, 0x00, "action"))  # diagnostic interrupt
    return records


def _fmt(value: float, unit: str | None) -> str:
    text = f"{value:g}"
    return f"{text} {unit}" if unit else text


class NodeEventRecorder:
    """Logs a node's power actions and its sensors' threshold crossings into its SEL."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._lock = threading.Lock()
        self._powered = node.sensors.powered  # the power state the SEL last logged
        node.subscribe(self._node_event)
        node.sensors.subscribe(self._threshold_event)
        node.sensors.watch_power(self._power_seen)

    def _node_event(self, node: Node, event: NodeEvent) -> None:
        if event.kind in ("backend-failed", "backend-recovered"):
            failed = event.kind == "backend-failed"
            detail = f"{event.detail.get('action')}: {event.detail.get('error')}" if failed else ""
            node.sel.add_sensor_event(BACKEND_HEALTH, 0x01, asserted=failed, detail=detail)
            return
        if event.kind != "power":
            return
        action, before, after = (event.detail.get(k, "") for k in ("action", "before", "after"))
        with self._lock:
            seen = self._powered == (after == "On") and before != after
            self._powered = after == "On"
        reason = event.detail.get("reason")
        detail = f"{action}: {reason}" if reason else action
        for sensor, offset, kind in power_records(action, before, after):
            if kind == "state" and seen:
                continue  # a sensor read noticed this change first and logged it
            node.sel.add_sensor_event(sensor, offset, detail=detail)
        node.sensors.poll()  # log the threshold crossings the change caused, right after it

    def _power_seen(self, on: bool) -> None:
        """The sensors saw the power change without a Node.power call (the backend did it)."""
        with self._lock:
            if self._powered == on:
                return
            self._powered = on
        self.node.sel.add_sensor_event(ACPI_STATE, 0x00 if on else 0x05)

    def _threshold_event(self, event: ThresholdEvent) -> None:
        spec = event.spec
        assert spec.scale is not None
        offset = THRESHOLD_OFFSETS[event.threshold]
        # data 1: 0101b = bytes 2/3 hold the trigger reading and threshold (table 29-6)
        data = bytes((0x50 | offset, spec.scale.to_raw(event.value),
                      spec.scale.to_raw(event.threshold_value)))
        unit = {"Cel": "C"}.get(spec.unit or "", spec.unit)
        detail = (f"reading {_fmt(event.value, unit)}, "
                  f"threshold {_fmt(event.threshold_value, unit)}")
        self.node.sel.add(KIND_SENSOR_TYPES[spec.kind], spec.number, THRESHOLD, data,
                          asserted=event.asserted, sensor_name=spec.name, detail=detail)


def record_node_events(node: Node) -> NodeEventRecorder:
    """Start logging `node`'s power actions and threshold crossings into `node.sel`."""
    return NodeEventRecorder(node)
