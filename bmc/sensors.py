"""The sensors of a node: what its BMC measures, shared by IPMI (SDR, Get Sensor Reading, SEL
threshold events, DCMI) and Redfish (Chassis Thermal/Power/Sensors).

No background thread: a reading is computed when asked for, from the time since the last power
change. On a change every analog value moves exponentially from where it was towards its
steady value for the new state (`SensorSpec.settle` seconds time constant; 0 = at once), so
CPUs cool towards the inlet temperature after power-off while fans and power draw follow the
power state immediately. A small bounded noise, fixed within `NOISE_PERIOD`, keeps readings
alive yet testable.

Thresholds follow IPMI (lower/upper non-critical, critical, non-recoverable) with hysteresis.
Each crossing is reported once to subscribers as a `ThresholdEvent` (the SEL logs them);
crossings are found whenever the sensors are read or the power changes.

A sensor on the server's main power (`scanning="powered"`: fans, CPU temperatures, the host's
voltage rails) is not scanned while the server is off, as on a real BMC: it has no reading
(IPMI "reading unavailable", ipmitool `na`; Redfish `Reading: null`, `StandbyOffline`) and no
threshold events, so a power-off does not fill the SEL with "fan stopped" criticals. Its
thresholds are re-armed when scanning resumes. `scanning="always"` sensors (inlet temperature,
the power supplies' standby readings) are read whatever the server does.

    readings = node.sensors.readings()            # list[Sensor], in sensor-number order
    fan = node.sensors.reading("FAN1")            # Sensor(value=8400.0, unit="RPM", ...)
    node.sensors.subscribe(lambda event: ...)     # ThresholdEvent, outside the model's lock
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from backends.base import SensorReading

log = logging.getLogger(__name__)

#: noise is constant within a period of this many seconds (so two reads close together agree)
NOISE_PERIOD = 5.0


class SensorKind(StrEnum):
    TEMPERATURE = "temperature"
    FAN = "fan"
    VOLTAGE = "voltage"
    POWER = "power"
    PSU = "psu"  # discrete: power supply presence/failure; no value


#: unit of each analog kind (UCUM codes where Redfish uses them: "Cel", "V", "W", "RPM")
UNITS: dict[SensorKind, str] = {
    SensorKind.TEMPERATURE: "Cel",
    SensorKind.FAN: "RPM",
    SensorKind.VOLTAGE: "V",
    SensorKind.POWER: "W",
}

#: threshold names, most severe lower to most severe upper (IPMI order of the SDR fields)
THRESHOLD_NAMES = ("lower_non_recoverable", "lower_critical", "lower_non_critical",
                   "upper_non_critical", "upper_critical", "upper_non_recoverable")
LOWER = THRESHOLD_NAMES[:3]
UPPER = THRESHOLD_NAMES[3:]
#: threshold name -> severity level of the status it causes
SEVERITY = {"lower_non_critical": 1, "upper_non_critical": 1, "lower_critical": 2,
            "upper_critical": 2, "lower_non_recoverable": 3, "upper_non_recoverable": 3}
STATUS_NAMES = ("ok", "non-critical", "critical", "non-recoverable")
#: when a sensor is scanned: "always" (standby power) or "powered" (while the server is on)
Scanning = Literal["always", "powered"]
SCANNING: tuple[Scanning, ...] = ("always", "powered")


@dataclass(frozen=True)
class Thresholds:
    """IPMI sensor thresholds in the sensor's unit; None = not set."""

    lower_non_recoverable: float | None = None
    lower_critical: float | None = None
    lower_non_critical: float | None = None
    upper_non_critical: float | None = None
    upper_critical: float | None = None
    upper_non_recoverable: float | None = None

    def items(self) -> list[tuple[str, float]]:
        """The thresholds that are set, as (name, value)."""
        return [(name, value) for name in THRESHOLD_NAMES
                if (value := getattr(self, name)) is not None]

    def values(self) -> list[float]:
        return [value for _, value in self.items()]


@dataclass(frozen=True)
class Scale:
    """How a reading is digitised: value = (m * raw + b * 10**b_exp) * 10**r_exp.

    IPMI's linear conversion (IPMI 2.0 section 36.3), kept in the model because it is the
    sensor's resolution: SEL threshold events carry raw readings, and every protocol should
    show the same quantised value.
    """

    m: int = 1
    b: int = 0
    b_exp: int = 0
    r_exp: int = 0
    signed: bool = False  # raw is two's complement (-128..127)

    @property
    def step(self) -> float:
        return self.m * 10.0 ** self.r_exp

    def to_raw(self, value: float) -> int:
        """The raw byte (0..255) nearest to `value`, clamped to the sensor's range."""
        offset = self.b * 10.0 ** (self.b_exp + self.r_exp)
        raw = round((value - offset) / self.step)
        low, high = (-128, 127) if self.signed else (0, 255)
        raw = min(max(raw, low), high)
        return raw & 0xFF

    def from_raw(self, raw: int) -> float:
        if self.signed and raw >= 0x80:
            raw -= 0x100
        value = (self.m * raw + self.b * 10.0 ** self.b_exp) * 10.0 ** self.r_exp
        return round(value, max(0, -self.r_exp))

    def quantise(self, value: float) -> float:
        return self.from_raw(self.to_raw(value))


#: resolution steps tried (x 10**k): "round" steps keep thresholds like 4.75 V exact
_STEPS = (10, 20, 25, 30, 40, 50, 60, 80)
#: the finest step per kind (no point showing a CPU temperature in 0.1 degrees over IPMI)
_MIN_STEP = {SensorKind.TEMPERATURE: 1.0, SensorKind.FAN: 1.0, SensorKind.VOLTAGE: 0.001,
             SensorKind.POWER: 1.0}


def auto_scale(kind: SensorKind, values: Iterable[float]) -> Scale:
    """The finest scale whose 8-bit range covers `values` (with a little headroom)."""
    values = list(values) or [0.0]
    signed = min(values) < 0
    span = max(max(abs(v) for v in values) * 1.05, 1e-9)
    counts = 127 if signed else 255
    for exponent in range(-4, 4):
        for m in _STEPS:
            step = m * 10.0 ** exponent
            if step >= _MIN_STEP.get(kind, 0.001) - 1e-12 and step * counts >= span:
                r_exp = exponent
                while m % 10 == 0:
                    m, r_exp = m // 10, r_exp + 1
                return Scale(m=m, r_exp=r_exp, signed=signed)
    raise ValueError(f"sensor values up to {span} do not fit 8 bits")


@dataclass(frozen=True)
class SensorSpec:
    """One sensor of a profile. `on`/`off` are the steady values in each power state.

    `number` is the IPMI sensor number (default: position in the profile, from 1).
    `scanning` "always" sensors keep working with the server off; "powered" ones are on the
    server's main power and are not scanned while it is off (no reading, no events).
    """

    name: str
    kind: SensorKind
    on: float = 0.0
    off: float = 0.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    settle: float = 0.0
    noise: float = 0.0
    hysteresis: float = 0.0
    number: int = 0
    entity: tuple[int, int] = (0x07, 1)  # IPMI entity ID and instance (default system board)
    scanning: Scanning = "powered"
    scale: Scale | None = None  # None: chosen from the values and thresholds

    def __post_init__(self) -> None:
        if self.scanning not in SCANNING:
            raise ValueError(f"sensor {self.name!r}: scanning must be one of "
                             f"{', '.join(SCANNING)}, not {self.scanning!r}")
        if not self.name or len(self.name.encode("latin-1", "replace")) > 16:
            raise ValueError(f"sensor name {self.name!r}: 1 to 16 characters")
        if self.kind is not SensorKind.PSU and self.scale is None:
            # the noise must not make a never-negative value (a fan) look signed
            values = [*self.thresholds.values()]
            for steady in (self.on, self.off):
                low = steady - self.noise
                values += [steady + self.noise, max(low, 0.0) if steady >= 0 else low]
            object.__setattr__(self, "scale", auto_scale(self.kind, values))
        if self.scale is not None:
            # thresholds at the sensor's resolution, so every protocol shows the same numbers
            quantised = {name: self.scale.quantise(value)
                         for name, value in self.thresholds.items()}
            object.__setattr__(self, "thresholds", replace(self.thresholds, **quantised))

    @property
    def unit(self) -> str | None:
        return UNITS.get(self.kind)

    @property
    def analog(self) -> bool:
        return self.kind is not SensorKind.PSU

    def target(self, powered: bool) -> float:
        return self.on if powered else self.off

    def scanned(self, powered: bool) -> bool:
        """Whether the BMC scans this sensor while the server is on (`powered`) or off."""
        return powered or self.scanning == "always"


@dataclass(frozen=True)
class Sensor:
    """A reading. `value` is quantised to the sensor's resolution (None for discrete sensors
    and for a sensor that is not being scanned).

    `status` is "ok", "non-critical", "critical" or "non-recoverable" (the worst threshold
    crossed, with hysteresis); `health` is its Redfish form. `scanning` is False for a
    main-power sensor while the server is off: it has no reading, no status (`health` None)
    and is left out of health rollups. `states` lists a discrete sensor's asserted states
    (a PSU: "present").
    """

    name: str
    number: int
    kind: SensorKind
    unit: str | None
    value: float | None
    thresholds: Thresholds
    status: str
    asserted: frozenset[str]  # threshold names currently crossed
    scanning: bool
    states: tuple[str, ...] = ()

    @property
    def health(self) -> str | None:
        """Redfish Health; None while the sensor is not scanned (it has no state to tell)."""
        if not self.scanning:
            return None
        return {"ok": "OK", "non-critical": "Warning"}.get(self.status, "Critical")


HEALTH_ORDER = ("OK", "Warning", "Critical")


def rollup(sensors: Iterable[Sensor]) -> str:
    """The worst Redfish Health of the sensors being scanned ("OK" if none is)."""
    worst = 0
    for sensor in sensors:
        health = sensor.health
        if health is not None:
            worst = max(worst, HEALTH_ORDER.index(health))
    return HEALTH_ORDER[worst]


@dataclass(frozen=True)
class ThresholdEvent:
    """A threshold crossed (asserted) or recovered from (deasserted)."""

    sensor: Sensor
    spec: SensorSpec
    threshold: str  # one of THRESHOLD_NAMES
    asserted: bool
    value: float
    threshold_value: float
    timestamp: float


ThresholdListener = Callable[[ThresholdEvent], None]


def _temperature(name: str, on: float, off: float, *, settle: float, entity: tuple[int, int],
                 high: tuple[float, float, float], low: tuple[float, float] | None = None,
                 noise: float = 0.6, scanning: Scanning = "powered") -> SensorSpec:
    unc, uc, unr = high
    lc, lnc = low or (None, None)
    return SensorSpec(name, SensorKind.TEMPERATURE, on, off,
                      Thresholds(lower_critical=lc, lower_non_critical=lnc,
                                 upper_non_critical=unc, upper_critical=uc,
                                 upper_non_recoverable=unr),
                      settle=settle, noise=noise, hysteresis=2.0, entity=entity,
                      scanning=scanning)


def _fan(index: int, rpm: float) -> SensorSpec:
    # Only a critical low threshold (as many vendors do): a fan that stops while the server
    # runs is logged; one stopped by a power-off is not scanned (no event)
    return SensorSpec(f"FAN{index}", SensorKind.FAN, rpm, 0.0,
                      Thresholds(lower_critical=600.0), noise=120.0, hysteresis=120.0,
                      entity=(0x1D, index))


def _voltage(name: str, nominal: float, loaded: float, step: float) -> SensorSpec:
    # +-5/10/15 % of nominal: non-critical, critical, non-recoverable
    t = Thresholds(*(round(nominal * (1 + k), 3) for k in (-0.15, -0.10, -0.05,
                                                           0.05, 0.10, 0.15)))
    return SensorSpec(name, SensorKind.VOLTAGE, loaded, nominal, t, noise=step,
                      hysteresis=step * 2, entity=(0x07, 1))


def default_profile() -> list[SensorSpec]:
    """A two-socket 1U server (the profile of every node unless `Node(sensors=...)`):

    | # | sensor | on / off | thresholds | scanned |
    | - | --- | --- | --- | --- |
    | 1-2 | CPU1/CPU2 Temp | 52/49 C / (24 C) | UNC 85, UC 95, UNR 105 | powered |
    | 3 | Inlet Temp | 24 C / 23 C | LC 3, LNC 8, UNC 40, UC 45, UNR 50 | always |
    | 4 | System Temp | 36 C / (24 C), 90 s | UNC 70, UC 80, UNR 90 | powered |
    | 5-8 | FAN1..FAN4 | ~8400 RPM / (0) | LC 600 | powered |
    | 9-11 | 12V, 5V, 3.3V | slightly under nominal when loaded | +-5/10/15 % | powered |
    | 12-13 | PSU1/PSU2 Status | presence detected | - | always |
    | 14 | Total Power | ~210 W / 8 W standby | UNC 420, UC 480 | always |

    Values in brackets are not shown (the sensor is not scanned while the server is off) but
    are where a reading starts from at the next power-on (CPUs cool down while off).
    """
    ambient = 24.0
    specs = [
        _temperature("CPU1 Temp", 52.0, ambient, settle=30.0, entity=(0x03, 1),
                     high=(85.0, 95.0, 105.0)),
        _temperature("CPU2 Temp", 49.0, ambient, settle=30.0, entity=(0x03, 2),
                     high=(85.0, 95.0, 105.0)),
        _temperature("Inlet Temp", 24.0, 23.0, settle=120.0, entity=(0x37, 1),
                     high=(40.0, 45.0, 50.0), low=(3.0, 8.0), noise=0.4, scanning="always"),
        _temperature("System Temp", 36.0, ambient, settle=90.0, entity=(0x07, 1),
                     high=(70.0, 80.0, 90.0), noise=0.4),
        *(_fan(i, rpm) for i, rpm in enumerate((8400.0, 8520.0, 8280.0, 8400.0), start=1)),
        _voltage("12V", 12.0, 11.94, 0.03),
        _voltage("5V", 5.0, 4.98, 0.015),
        _voltage("3.3V", 3.3, 3.29, 0.01),
        SensorSpec("PSU1 Status", SensorKind.PSU, entity=(0x0A, 1), scanning="always"),
        SensorSpec("PSU2 Status", SensorKind.PSU, entity=(0x0A, 2), scanning="always"),
        SensorSpec("Total Power", SensorKind.POWER, 210.0, 8.0,
                   Thresholds(upper_non_critical=420.0, upper_critical=480.0), noise=6.0,
                   hysteresis=10.0, entity=(0x13, 1), scanning="always"),
    ]
    return specs


_SPEC_KEYS = {f.name for f in fields(SensorSpec)} - {"scale", "entity"}


def profile_from_config(items: Sequence[Mapping[str, Any]]) -> list[SensorSpec]:
    """A profile from plain dicts (as a YAML `sensors:` list would give), e.g.

        [{"name": "CPU1 Temp", "kind": "temperature", "on": 60, "off": 25, "settle": 30,
          "thresholds": {"upper_critical": 90}}]

    Raises ValueError naming the bad entry.
    """
    specs = []
    for index, item in enumerate(items):
        unknown = set(item) - _SPEC_KEYS - {"entity"}
        if unknown:
            raise ValueError(f"sensors[{index}]: unknown keys {', '.join(sorted(unknown))}")
        missing = [key for key in ("name", "kind") if key not in item]
        if missing:
            raise ValueError(f"sensors[{index}]: {', '.join(missing)} required")
        try:
            values = dict(item)
            values["kind"] = SensorKind(values["kind"])
            values["thresholds"] = Thresholds(**values.get("thresholds", {}))
            if "entity" in values:
                values["entity"] = tuple(values["entity"])
            specs.append(SensorSpec(**values))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"sensors[{index}]: {exc}") from None
    return specs


def numbered(specs: Iterable[SensorSpec]) -> tuple[SensorSpec, ...]:
    """Give every spec without a number the next free one (from 1); refuse duplicates."""
    specs = list(specs)
    used = {s.number for s in specs if s.number}
    out, next_number = [], 1
    for spec in specs:
        if not spec.number:
            while next_number in used:
                next_number += 1
            spec = replace(spec, number=next_number)
            used.add(next_number)
        out.append(spec)
    numbers = [s.number for s in out]
    if len(set(numbers)) != len(numbers) or not all(1 <= n <= 0x7F for n in numbers):
        raise ValueError("sensor numbers must be unique and in 1..127")
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError("sensor names must be unique")
    return tuple(out)


#: sensors a profile may have (IPMI sensor numbers 1..0x7F)
MAX_SENSORS = 0x7F


def profile_from_readings(readings: Iterable[SensorReading]) -> list[SensorSpec]:
    """A profile of the sensors a backend reads from the server itself (`read_sensors`), in
    the order read (their numbers, so stable while the server keeps its sensors). Sensors of
    kind "other" (discrete sensors the model has no kind for) and bad ones are left out."""
    specs: list[SensorSpec] = []
    names: set[str] = set()
    for reading in readings:
        name = reading.name[:16]
        if (reading.kind not in {k.value for k in SensorKind} or len(specs) >= MAX_SENSORS
                or name in names):
            continue
        kind = SensorKind(reading.kind)
        known = {k: v for k, v in reading.thresholds.items()
                 if k in THRESHOLD_NAMES and math.isfinite(v)}
        value = reading.value if reading.value is not None and math.isfinite(reading.value) \
            else 0.0
        # the scale is fixed now but the readings move: room above the first one and the
        # thresholds, and at least a typical range (a fan read while the server was off)
        span = [value * 1.5, *known.values(), _FORWARDED_RANGE.get(kind, 0.0)]
        try:
            scale = None if kind is SensorKind.PSU else auto_scale(kind, span)
            specs.append(SensorSpec(name, kind, value, value, Thresholds(**known),
                                    scanning="always", scale=scale))
        except ValueError as exc:
            log.warning("sensor %r left out: %s", reading.name, exc)
            continue
        names.add(name)
    return specs


#: the least range of a forwarded sensor's scale, by kind (voltages: their own, +50 %)
_FORWARDED_RANGE = {SensorKind.TEMPERATURE: 120.0, SensorKind.FAN: 12000.0,
                    SensorKind.POWER: 1000.0}


@functools.cache
def _default_specs() -> tuple[SensorSpec, ...]:
    # specs are immutable: nodes share one (building it costs ~1 ms, x 1,000 nodes)
    return numbered(default_profile())


class SensorModel:
    """The sensors of one node. Thread-safe.

    `powered()` tells whether the server is on now; the model notices changes whenever it is
    read (so a change made by the backend itself is seen too), and `poll()` may be called
    after a power action to log threshold crossings at once. `powered()` is called with the
    model's lock held: it may take the node's lock, so the node must not call the model while
    holding its own. Listeners are called without the lock.
    """

    def __init__(self, specs: Iterable[SensorSpec] | None = None, *,
                 powered: Callable[[], bool], clock: Callable[[], float] = time.time,
                 seed: str = "", external: bool = False) -> None:
        self.specs = _default_specs() if specs is None else numbered(specs)
        #: external: the values are the server's own (`feed`), not modelled; its BMC logs
        #: its own threshold events, so the model logs none
        self._external: dict[str, float | None] | None = (
            {s.name: s.on for s in self.specs} if external else None)
        self._by_name = {s.name: s for s in self.specs}
        self._by_number = {s.number: s for s in self.specs}
        self._powered_fn = powered
        self._clock = clock
        self._seed = seed
        self._lock = threading.Lock()
        self._listeners: list[ThresholdListener] = []
        self._power_listeners: list[Callable[[bool], None]] = []
        self._pending: deque[ThresholdEvent | bool] = deque()  # events not yet delivered
        self._delivering = threading.Lock()
        self._on = False
        on = self._read_power()
        self._on = on
        self._changed_at = clock()
        self._last_change = self._changed_at
        # start in the steady state of the current power state, thresholds already known
        self._start = {s.name: s.target(on) for s in self.specs}
        self._asserted: dict[str, frozenset[str]] = {}
        for spec in self.specs:
            if spec.analog and spec.scanned(on):
                value = self._value(spec, self._changed_at)
                self._asserted[spec.name] = self._crossed(spec, value, frozenset())
            else:
                self._asserted[spec.name] = frozenset()
        self._power_stats = _Stats()

    # -- public API -------------------------------------------------------------------------
    def subscribe(self, listener: ThresholdListener) -> None:
        """Call `listener(ThresholdEvent)` for every threshold crossing from now on."""
        with self._lock:
            self._listeners.append(listener)

    def watch_power(self, listener: Callable[[bool], None]) -> None:
        """Call `listener(powered)` when a read finds the power state changed."""
        with self._lock:
            self._power_listeners.append(listener)

    def readings(self) -> list[Sensor]:
        """Every sensor's reading now, in sensor-number order."""
        return sorted(self.poll(), key=lambda s: s.number)

    def reading(self, name: str) -> Sensor:
        """One sensor by name; KeyError if there is none."""
        spec = self._by_name[name]
        return next(s for s in self.poll() if s.name == spec.name)

    def by_number(self, number: int) -> tuple[SensorSpec, Sensor] | None:
        spec = self._by_number.get(number)
        if spec is None:
            return None
        return spec, next(s for s in self.poll() if s.number == number)

    def spec(self, name: str) -> SensorSpec:
        return self._by_name[name]

    @property
    def powered(self) -> bool:
        """The power state as the sensors last saw it."""
        with self._lock:
            return self._on

    @property
    def last_power_change(self) -> float:
        with self._lock:
            return self._last_change

    @property
    def external(self) -> bool:
        return self._external is not None

    def feed(self, values: Mapping[str, float | None]) -> None:
        """New readings of an external model's sensors, by name (None: no reading now);
        sensors not named keep their last value."""
        with self._lock:
            if self._external is None:
                raise ValueError("feed: the sensors are modelled, not external")
            for name, value in values.items():
                if name in self._by_name:
                    self._external[name] = value

    def power_statistics(self) -> tuple[float, float, float, float, float]:
        """(now, minimum, maximum, average, seconds covered) of total power, for DCMI."""
        self.poll()
        with self._lock:
            return self._power_stats.summary(self._clock())

    def poll(self) -> list[Sensor]:
        """Bring the model up to date (power state, thresholds) and return every reading."""
        with self._lock:
            # read under our lock, so a stale state from a slower reader is never applied
            # after a newer one (the node's lock is taken inside ours, never the reverse)
            on = self._read_power()
            now = self._clock()
            if on != self._on:
                self._power_changed(on, now)
                self._pending.append(on)  # first: the SEL logs the cause, then the effects
            readings, events = self._evaluate(now)
            self._pending.extend(events)
        self._deliver()
        return readings

    def _read_power(self) -> bool:
        """The power state now; the last one known if the backend cannot tell (it failed)."""
        try:
            return bool(self._powered_fn())
        except Exception:
            log.debug("power state unavailable; sensors keep the last known", exc_info=True)
            return self._on

    def _deliver(self) -> None:
        """Hand pending events to the listeners, in the order they were found.

        One thread delivers at a time (the others leave theirs to it), and without the
        model's lock, so a listener may read the sensors again.
        """
        while self._pending:
            if not self._delivering.acquire(blocking=False):
                return  # the thread delivering re-checks the queue after it is done
            try:
                while True:
                    with self._lock:
                        if not self._pending:
                            break
                        item = self._pending.popleft()
                        listeners = list(self._listeners)
                        power_listeners = list(self._power_listeners)
                    if isinstance(item, bool):
                        for power_listener in power_listeners:
                            power_listener(item)
                    else:
                        for listener in listeners:
                            listener(item)
            finally:
                self._delivering.release()

    # -- internals --------------------------------------------------------------------------
    def _power_changed(self, on: bool, now: float) -> None:
        # every value continues from where it is now towards its new target
        self._start = {s.name: self._base(s, now) for s in self.specs}
        self._on, self._changed_at, self._last_change = on, now, now

    def _base(self, spec: SensorSpec, now: float) -> float:
        """The noise-free value at `now`."""
        start, target = self._start[spec.name], spec.target(self._on)
        if spec.settle <= 0:
            return target
        elapsed = max(0.0, now - self._changed_at)
        return target + (start - target) * math.exp(-elapsed / spec.settle)

    def _value(self, spec: SensorSpec, now: float) -> float:
        value = self._base(spec, now)
        amplitude = spec.noise
        if spec.kind in (SensorKind.FAN, SensorKind.POWER) and spec.on:
            # load-driven readings are steadier near idle: a stopped fan reads exactly 0
            amplitude *= min(1.0, abs(value / spec.on))
        if amplitude:
            value += amplitude * self._noise(spec.name, now)
        assert spec.scale is not None
        return spec.scale.quantise(value)

    def _noise(self, name: str, now: float) -> float:
        """Deterministic noise in [-1, 1] for this sensor and time period."""
        bucket = int(now // NOISE_PERIOD)
        digest = hashlib.blake2b(f"{self._seed}/{name}/{bucket}".encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") / 0xFFFFFFFF * 2 - 1

    @staticmethod
    def _crossed(spec: SensorSpec, value: float, before: frozenset[str]) -> frozenset[str]:
        """The thresholds crossed at `value`; one crossed before needs its hysteresis back."""
        crossed = set()
        for name, limit in spec.thresholds.items():
            lower = name in LOWER
            if lower:
                hit = value <= limit or (name in before and value <= limit + spec.hysteresis)
            else:
                hit = value >= limit or (name in before and value >= limit - spec.hysteresis)
            if hit:
                crossed.add(name)
        return frozenset(crossed)

    def _evaluate(self, now: float) -> tuple[list[Sensor], list[ThresholdEvent]]:
        readings: list[Sensor] = []
        events: list[ThresholdEvent] = []
        for spec in self.specs:
            scanning = spec.scanned(self._on)
            if not spec.analog:
                readings.append(Sensor(spec.name, spec.number, spec.kind, None, None,
                                       spec.thresholds, "ok", frozenset(), scanning,
                                       ("present",) if scanning else ()))
                continue
            external = self._external.get(spec.name) if self._external is not None else 0.0
            if not scanning or external is None:
                # not scanned: no reading, no events; its thresholds re-arm when it resumes
                self._asserted[spec.name] = frozenset()
                readings.append(Sensor(spec.name, spec.number, spec.kind, spec.unit, None,
                                       spec.thresholds, "ok", frozenset(), False))
                continue
            assert spec.scale is not None
            value = (self._value(spec, now) if self._external is None
                     else spec.scale.quantise(external))
            before = self._asserted[spec.name]
            after = self._crossed(spec, value, before)
            self._asserted[spec.name] = after
            level = max((SEVERITY[name] for name in after), default=0)
            sensor = Sensor(spec.name, spec.number, spec.kind, spec.unit, value,
                            spec.thresholds, STATUS_NAMES[level], after, True)
            readings.append(sensor)
            if spec.kind is SensorKind.POWER:
                self._power_stats.add(now, value)
            for name in THRESHOLD_NAMES:  # IPMI order: deterministic event order
                if (name in after) != (name in before) and self._external is None:
                    events.append(ThresholdEvent(sensor, spec, name, name in after, value,
                                                 getattr(spec.thresholds, name), now))
        return readings, events


@dataclass
class _Stats:
    """Running minimum/maximum/average of the total power readings seen."""

    since: float | None = None
    last: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    total: float = 0.0
    count: int = 0

    def add(self, now: float, value: float) -> None:
        if self.since is None:
            self.since = now
        self.last = value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        self.total += value
        self.count += 1

    def summary(self, now: float) -> tuple[float, float, float, float, float]:
        if not self.count:
            return 0.0, 0.0, 0.0, 0.0, 0.0
        return (self.last, self.minimum, self.maximum, self.total / self.count,
                max(0.0, now - (self.since or now)))
