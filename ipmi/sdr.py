"""The Sensor Data Record repository of a node (IPMI 2.0 sections 33 and 43), built from its
sensor model: a full record (type 01h: thresholds, linearisation) per analog sensor, a compact
record (02h) per discrete sensor (PSU status and the SEL's event sensors), and the BMC's
management controller device locator (12h).

The repository never changes while the node lives, so its timestamps are derived from its
content: a client's SDR cache (freeipmi keeps one per host) stays valid across emulator restarts
and is reported out of date only when the sensor profile changed.
"""

from __future__ import annotations

import threading
import weakref
import zlib
from collections import deque
from dataclasses import dataclass

from bmc.node import Node
from bmc.sel import EVENT_SENSORS, KIND_SENSOR_TYPES, SENSOR_SPECIFIC, THRESHOLD, EventSensor
from bmc.sensors import LOWER, THRESHOLD_NAMES, SensorSpec

SDR_VERSION = 0x51
FULL_SENSOR = 0x01
COMPACT_SENSOR = 0x02
MC_LOCATOR = 0x12
BMC_ADDRESS = 0x20
#: IPMI unit type codes (table 43-15)
UNIT_CODES = {"Cel": 1, "V": 4, "A": 5, "W": 6, "RPM": 18}
#: discrete states of a PSU status sensor: presence, failure, input lost
PSU_OFFSETS = (0x00, 0x01, 0x03)
#: the BMC's own entity: system management module, instance 1
BMC_ENTITY = (0x06, 1)
#: device capabilities of the locator: chassis device, FRU, SEL, SDR repository, sensors
DEVICE_SUPPORT = 0x80 | 0x08 | 0x04 | 0x02 | 0x01
#: timestamps are a content hash mapped into 2024, so they look like dates
_EPOCH_2024 = 1704067200
_YEAR = 366 * 86400
#: how many recent reservations stay valid (clients interleave on a shared BMC)
RESERVATION_KEEP = 8

# sensor initialisation: init scanning + events + sensor type, events on, scanning on
_INIT = 0x40 | 0x20 | 0x04 | 0x02 | 0x01
# threshold sensor capabilities: auto re-arm, hysteresis readable, thresholds readable,
# per-threshold event enables
_THRESHOLD_CAPS = 0x40 | 0x20 | 0x04
_DISCRETE_CAPS = 0x40  # auto re-arm, no hysteresis, no thresholds

# event mask bit and readable-threshold bit of each threshold (table 43-1, bytes 15-19)
EVENT_BIT = {"lower_non_critical": 0, "lower_critical": 2, "lower_non_recoverable": 4,
              "upper_non_critical": 7, "upper_critical": 9, "upper_non_recoverable": 11}
_READ_BIT = {"lower_non_critical": 0, "lower_critical": 1, "lower_non_recoverable": 2,
             "upper_non_critical": 3, "upper_critical": 4, "upper_non_recoverable": 5}
# order of the six threshold bytes in the full record and in Get Sensor Thresholds
RECORD_THRESHOLD_ORDER = ("upper_non_recoverable", "upper_critical", "upper_non_critical",
                          "lower_non_recoverable", "lower_critical", "lower_non_critical")


def _id_string(name: str) -> bytes:
    data = name.encode("latin-1", "replace")[:16]
    return bytes((0xC0 | len(data),)) + data


def _header(record_id: int, record_type: int, body: bytes) -> bytes:
    return record_id.to_bytes(2, "little") + bytes((SDR_VERSION, record_type, len(body))) + body


def _nibble(value: int) -> int:
    """A 4-bit two's complement field."""
    return value & 0x0F


def threshold_masks(spec: SensorSpec) -> tuple[int, int, int]:
    """(assertion word, deassertion word, readable mask) of a threshold sensor."""
    events = readable = lower_mask = upper_mask = 0
    for name, _ in spec.thresholds.items():
        events |= 1 << EVENT_BIT[name]
        readable |= 1 << _READ_BIT[name]
        if name in LOWER:
            lower_mask |= 1 << (12 + _READ_BIT[name])
        else:
            upper_mask |= 1 << (12 + _READ_BIT[name] - 3)
    return events | lower_mask, events | upper_mask, readable


def full_record(record_id: int, spec: SensorSpec) -> bytes:
    """A full sensor record for an analog (threshold) sensor."""
    scale = spec.scale
    assert scale is not None and spec.unit is not None
    assertion, deassertion, readable = threshold_masks(spec)
    raw = {name: scale.to_raw(value) for name, value in spec.thresholds.items()}
    hysteresis = min(255, round(spec.hysteresis / scale.step))
    m, b = scale.m & 0x3FF, scale.b & 0x3FF
    body = bytes((
        BMC_ADDRESS, 0x00, spec.number,
        spec.entity[0], spec.entity[1] & 0x7F,
        _INIT, _THRESHOLD_CAPS, KIND_SENSOR_TYPES[spec.kind], THRESHOLD,
    )) + assertion.to_bytes(2, "little") + deassertion.to_bytes(2, "little") + bytes((
        readable, 0x00,  # readable thresholds; none settable
        0x80 if scale.signed else 0x00,  # analog data format; no rate/modifier units
        UNIT_CODES[spec.unit], 0x00,
        0x00,  # linear
        m & 0xFF, (m >> 8) << 6,  # M, tolerance 0
        b & 0xFF, (b >> 8) << 6,  # B, accuracy 0
        0x00,  # accuracy, sensor direction unspecified
        (_nibble(scale.r_exp) << 4) | _nibble(scale.b_exp),
        0x01,  # nominal reading given
        scale.to_raw(spec.on),
        raw.get("upper_non_critical", 0xFF if not scale.signed else 0x7F),
        raw.get("lower_non_critical", 0x00 if not scale.signed else 0x80),
        0x7F if scale.signed else 0xFF,  # sensor maximum reading
        0x80 if scale.signed else 0x00,  # sensor minimum reading
    )) + bytes(raw.get(name, 0) for name in RECORD_THRESHOLD_ORDER) + bytes((
        hysteresis, hysteresis, 0x00, 0x00, 0x00,  # +/- hysteresis, reserved x2, OEM
    )) + _id_string(spec.name)
    return _header(record_id, FULL_SENSOR, body)


def compact_record(record_id: int, number: int, name: str, sensor_type: int,
                   entity: tuple[int, int], offsets: tuple[int, ...]) -> bytes:
    """A compact sensor record for a sensor-specific discrete sensor."""
    mask = sum(1 << offset for offset in offsets).to_bytes(2, "little")
    body = bytes((
        BMC_ADDRESS, 0x00, number, entity[0], entity[1] & 0x7F, _INIT,
        _DISCRETE_CAPS, sensor_type, SENSOR_SPECIFIC,
    )) + mask + mask + mask + bytes((
        0xC0, 0x00, 0x00,  # no analog reading, no units
        0x01, 0x00,  # record sharing: one sensor
        0x00, 0x00,  # no hysteresis
        0x00, 0x00, 0x00, 0x00,  # reserved x3, OEM
    )) + _id_string(name)
    return _header(record_id, COMPACT_SENSOR, body)


def mc_locator_record(record_id: int, name: str = "BMC") -> bytes:
    """The management controller device locator of the BMC itself."""
    body = bytes((
        BMC_ADDRESS, 0x00,  # slave address, channel 0
        0x00,  # no ACPI notifications; event message generation enabled
        DEVICE_SUPPORT, 0x00, 0x00, 0x00,
        BMC_ENTITY[0], BMC_ENTITY[1], 0x00,
    )) + _id_string(name)
    return _header(record_id, MC_LOCATOR, body)


@dataclass(frozen=True)
class SensorRef:
    """What a sensor number stands for: a modelled sensor or one of the SEL's event sensors."""

    number: int
    spec: SensorSpec | None = None
    event_sensor: EventSensor | None = None

    @property
    def threshold(self) -> bool:
        return self.spec is not None and self.spec.analog

    @property
    def sensor_type(self) -> int:
        if self.spec is not None:
            return KIND_SENSOR_TYPES[self.spec.kind]
        assert self.event_sensor is not None
        return self.event_sensor.sensor_type

    @property
    def event_type(self) -> int:
        return THRESHOLD if self.threshold else SENSOR_SPECIFIC


class ReservationError(Exception):
    pass


class SdrRepository:
    """A read-only repository of SDRs with IPMI reservations. Thread-safe."""

    def __init__(self, records: list[bytes], sensors: dict[int, SensorRef]) -> None:
        self.records = records
        self.sensors = sensors
        self._index = {int.from_bytes(r[0:2], "little"): i for i, r in enumerate(records)}
        self._by_sensor = {r[7]: int.from_bytes(r[0:2], "little") for r in records
                           if r[3] in (FULL_SENSOR, COMPACT_SENSOR)}
        digest = zlib.crc32(b"".join(records))
        self.timestamp = _EPOCH_2024 + digest % _YEAR
        self._lock = threading.Lock()
        self._reservations: deque[int] = deque(maxlen=RESERVATION_KEEP)
        self._next_reservation = 1

    @property
    def free_space(self) -> int:
        return 0  # nothing can be added

    def reserve(self) -> int:
        with self._lock:
            reservation = self._next_reservation
            self._next_reservation = self._next_reservation % 0xFFFF + 1
            self._reservations.append(reservation)
            return reservation

    def check(self, reservation: int) -> None:
        with self._lock:
            if reservation not in self._reservations:
                raise ReservationError(reservation)

    def record_id(self, sensor_number: int) -> int:
        """The ID of the record describing a sensor; KeyError if none does."""
        return self._by_sensor[sensor_number]

    def get(self, record_id: int) -> tuple[bytes, int] | None:
        """The record (0 = first, 0xFFFF = last) and the ID of the next (0xFFFF: none)."""
        if not self.records:
            return None
        if record_id == 0x0000:
            index = 0
        elif record_id == 0xFFFF:
            index = len(self.records) - 1
        elif record_id in self._index:
            index = self._index[record_id]
        else:
            return None
        following = (int.from_bytes(self.records[index + 1][0:2], "little")
                     if index + 1 < len(self.records) else 0xFFFF)
        return self.records[index], following


def build_repository(node: Node) -> SdrRepository:
    records: list[bytes] = []
    sensors: dict[int, SensorRef] = {}
    specs = node.sensors.specs
    for spec in [s for s in specs if s.analog] + [s for s in specs if not s.analog]:
        record_id = len(records) + 1
        if spec.analog:
            records.append(full_record(record_id, spec))
        else:
            records.append(compact_record(record_id, spec.number, spec.name,
                                          KIND_SENSOR_TYPES[spec.kind], spec.entity,
                                          PSU_OFFSETS))
        sensors[spec.number] = SensorRef(spec.number, spec=spec)
    for event_sensor in EVENT_SENSORS:
        records.append(compact_record(len(records) + 1, event_sensor.number, event_sensor.name,
                                      event_sensor.sensor_type, event_sensor.entity,
                                      event_sensor.offsets))
        sensors[event_sensor.number] = SensorRef(event_sensor.number, event_sensor=event_sensor)
    records.append(mc_locator_record(len(records) + 1))
    return SdrRepository(records, sensors)


_REPOSITORIES: weakref.WeakKeyDictionary[Node, SdrRepository] = weakref.WeakKeyDictionary()
_REPOSITORIES_LOCK = threading.Lock()


def repository(node: Node) -> SdrRepository:
    """The node's SDR repository (built once; the sensor profile of a node does not change)."""
    with _REPOSITORIES_LOCK:
        repo = _REPOSITORIES.get(node)
        if repo is None:
            repo = _REPOSITORIES[node] = build_repository(node)
        return repo


def discrete_states(node: Node, ref: SensorRef) -> int:
    """The asserted states (bit per offset) of a discrete sensor now."""
    if ref.spec is not None:
        return 0x0001  # PSU: presence detected
    powered = node.sensors.powered
    if ref.event_sensor is not None and ref.event_sensor.sensor_type == 0x22:
        return 0x0001 if powered else 0x0020  # S0/G0 working, or S5/G2 soft-off
    if ref.event_sensor is not None and ref.event_sensor.sensor_type == 0x09:
        return 0x0000 if powered else 0x0001  # power off/down
    return 0x0000


def threshold_status(asserted: frozenset[str]) -> int:
    """The threshold comparison bits of Get Sensor Reading (byte 3)."""
    return sum(1 << _READ_BIT[name] for name in asserted if name in THRESHOLD_NAMES)
