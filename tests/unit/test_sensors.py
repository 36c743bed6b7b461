"""The sensor model: readings that follow the power state, thresholds and their events."""

from __future__ import annotations

import re
import threading

import pytest

from backends.base import BackendError, PowerState
from backends.memory import MemoryBackend
from bmc.node import Node, PowerAction
from bmc.sensors import (
    Scale,
    SensorKind,
    SensorModel,
    SensorSpec,
    ThresholdEvent,
    Thresholds,
    auto_scale,
    profile_from_config,
)


class Rig:
    """A sensor model with a hand-driven clock and power switch."""

    def __init__(self, specs: list[SensorSpec] | None = None, on: bool = False) -> None:
        self.now = 1_000_000.0
        self.on = on
        self.events: list[ThresholdEvent] = []
        self.model = SensorModel(specs, powered=lambda: self.on, clock=lambda: self.now,
                                 seed="test")
        self.model.subscribe(self.events.append)

    def value(self, name: str) -> float:
        value = self.model.reading(name).value
        assert value is not None
        return value


def test_default_profile_has_the_usual_server_sensors() -> None:
    kinds = {s.name: s.kind for s in SensorModel(powered=lambda: False).readings()}
    assert {"CPU1 Temp", "CPU2 Temp", "Inlet Temp", "FAN1", "FAN4", "12V", "5V", "3.3V",
            "PSU1 Status", "Total Power"} <= set(kinds)
    assert kinds["FAN1"] is SensorKind.FAN and kinds["Total Power"] is SensorKind.POWER
    readings = SensorModel(powered=lambda: False).readings()
    assert [s.number for s in readings] == sorted({s.number for s in readings})
    assert {s.unit for s in readings if s.kind is SensorKind.VOLTAGE} == {"V"}


def test_powered_off_fans_are_not_scanned_and_power_is_standby() -> None:
    rig = Rig()
    fan = rig.model.reading("FAN1")
    assert fan.value is None and fan.status == "ok" and fan.health is None
    assert fan.asserted == frozenset() and not fan.scanning
    assert rig.model.reading("CPU1 Temp").value is None
    assert rig.model.reading("Inlet Temp").scanning  # on standby power
    assert 0 < rig.value("Total Power") <= 15
    assert rig.model.reading("12V").value is None
    assert rig.model.reading("PSU1 Status").states == ("present",)
    assert rig.events == []  # the state the BMC started in is not an event


def test_power_on_spins_fans_and_draws_power_at_once_while_cpus_warm_up() -> None:
    rig = Rig()
    ambient = rig.model.spec("CPU1 Temp").off
    rig.on = True
    assert rig.value("FAN1") > 7000 and rig.model.reading("FAN1").status == "ok"
    assert 190 <= rig.value("Total Power") <= 230
    assert rig.value("CPU1 Temp") <= ambient + 1  # no time has passed yet
    rig.now += 30  # one time constant: ~63 % of the way from 24 to 52 degrees
    assert 38 <= rig.value("CPU1 Temp") <= 45
    rig.now += 600
    assert 50 <= rig.value("CPU1 Temp") <= 54
    assert rig.events == []  # fans start scanning at speed: nothing crossed


def test_temperatures_drift_back_to_ambient_after_power_off() -> None:
    specs = [SensorSpec("CPU", SensorKind.TEMPERATURE, on=60, off=20, settle=10,
                        scanning="always")]
    rig = Rig(specs, on=True)
    assert rig.value("CPU") == 60
    rig.on = False
    readings = []
    for _ in range(8):
        readings.append(rig.value("CPU"))
        rig.now += 5
    assert readings == sorted(readings, reverse=True) and readings[0] == 60
    rig.now += 200
    assert rig.value("CPU") == 20


def test_a_power_change_in_the_middle_of_a_drift_continues_from_the_current_value() -> None:
    specs = [SensorSpec("CPU", SensorKind.TEMPERATURE, on=60, off=20, settle=10,
                        scanning="always")]
    rig = Rig(specs)
    rig.on = True
    rig.model.poll()
    rig.now += 10
    warm = rig.value("CPU")  # ~45
    rig.on = False
    assert abs(rig.value("CPU") - warm) <= 1  # no jump back to 60 or down to 20


def test_noise_is_bounded_and_steady_within_a_period() -> None:
    rig = Rig(on=True)
    spec = rig.model.spec("FAN2")
    seen = set()
    for _ in range(200):
        rig.now += 1.7
        value = rig.value("FAN2")
        assert abs(value - spec.on) <= spec.noise + spec.scale.step  # type: ignore[union-attr]
        seen.add(value)
    assert len(seen) > 1  # it does move
    rig.now = 5_000_000.0
    assert rig.value("FAN2") == rig.value("FAN2")


def test_threshold_crossings_are_reported_once_with_hysteresis() -> None:
    specs = [SensorSpec("Hot", SensorKind.TEMPERATURE, on=100, off=20, settle=20,
                        thresholds=Thresholds(upper_non_critical=70, upper_critical=90),
                        hysteresis=3, scanning="always")]
    rig = Rig(specs)
    rig.on = True
    rig.model.poll()  # the node polls on every power action: the change is seen now
    rig.now += 200
    assert rig.model.reading("Hot").status == "critical"
    assert [(e.threshold, e.asserted) for e in rig.events] == [
        ("upper_non_critical", True), ("upper_critical", True)]
    event = rig.events[0]
    assert event.threshold_value == 70 and event.value >= 70
    rig.model.readings()
    assert len(rig.events) == 2  # no repeats while it stays hot
    rig.on = False
    rig.model.poll()
    rig.now += 1000
    assert rig.model.reading("Hot").status == "ok"
    assert [(e.threshold, e.asserted) for e in rig.events[2:]] == [
        ("upper_non_critical", False), ("upper_critical", False)]


def test_hysteresis_keeps_a_threshold_asserted_until_the_value_is_clear_of_it() -> None:
    spec = SensorSpec("T", SensorKind.TEMPERATURE, on=50, off=50,
                      thresholds=Thresholds(upper_critical=90), hysteresis=5)
    crossed = SensorModel._crossed
    assert crossed(spec, 90, frozenset()) == {"upper_critical"}
    assert crossed(spec, 89, frozenset()) == frozenset()
    assert crossed(spec, 86, frozenset({"upper_critical"})) == {"upper_critical"}
    assert crossed(spec, 84, frozenset({"upper_critical"})) == frozenset()


def test_scale_round_trip_and_clamping() -> None:
    scale = Scale(m=6, r_exp=-2)
    assert scale.to_raw(12.0) == 200 and scale.from_raw(200) == 12.0
    assert scale.to_raw(1000) == 255 and scale.to_raw(-5) == 0
    signed = Scale(m=1, signed=True)
    assert signed.to_raw(-10) == 0xF6 and signed.from_raw(0xF6) == -10
    assert auto_scale(SensorKind.FAN, [0, 9000]) == Scale(m=4, r_exp=1)
    assert auto_scale(SensorKind.TEMPERATURE, [-20, 60]).signed


def test_thresholds_are_kept_at_the_sensors_resolution() -> None:
    spec = SensorSpec("V", SensorKind.VOLTAGE, on=3.3, off=3.3,
                      thresholds=Thresholds(upper_critical=3.637))
    # 0..3.82 V in 8 bits: 20 mV steps (m=2, 10^-2); 3.637 V is raw 182 (181.85), 3.64 V
    assert spec.scale == Scale(m=2, r_exp=-2)
    assert spec.thresholds.upper_critical == 3.64


def test_profile_from_config() -> None:
    specs = profile_from_config([
        {"name": "CPU Temp", "kind": "temperature", "on": 70, "off": 25, "settle": 5,
         "thresholds": {"upper_critical": 95}, "entity": [3, 1]},
        {"name": "PSU", "kind": "psu"},
    ])
    assert specs[0].thresholds.upper_critical == 95 and specs[0].entity == (3, 1)
    model = SensorModel(specs, powered=lambda: True)
    assert [s.number for s in model.readings()] == [1, 2]
    for bad, message in (({"name": "x", "kind": "smell"}, "sensors[0]: 'smell'"),
                         ({"name": "x", "kind": "fan", "colour": 1}, "unknown keys colour"),
                         ({"kind": "fan"}, "sensors[0]: name required"),
                         ({"name": "x" * 17, "kind": "fan"}, "1 to 16")):
        with pytest.raises(ValueError, match=re.escape(message)):
            profile_from_config([bad])


def test_duplicate_sensor_numbers_or_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        SensorModel([SensorSpec("a", SensorKind.FAN, number=3),
                     SensorSpec("b", SensorKind.FAN, number=3)], powered=lambda: True)
    with pytest.raises(ValueError, match="unique"):
        SensorModel([SensorSpec("a", SensorKind.FAN), SensorSpec("a", SensorKind.FAN)],
                    powered=lambda: True)


def test_lookup_by_name_and_number() -> None:
    model = SensorModel(powered=lambda: True)
    fan = model.reading("FAN1")
    found = model.by_number(fan.number)
    assert found is not None and found[0].name == "FAN1"
    assert model.by_number(0x7E) is None
    with pytest.raises(KeyError):
        model.reading("Flux Capacitor")


def test_node_sensors_follow_power_from_any_caller() -> None:
    backend = MemoryBackend()
    node = Node("n1", backend)
    assert node.sensors.reading("FAN1").value is None
    node.power(PowerAction.ON)
    assert node.sensors.reading("FAN1").value > 7000
    # the backend powers off by itself (a guest shutdown) and says so
    backend._power = PowerState.OFF
    backend.report_power(PowerState.OFF, "guest shutdown")
    assert node.sensors.reading("FAN1").value is None
    assert any(e.message.startswith("ACPI State: S5/G2: soft-off") for e in node.sel.entries())


def test_power_statistics_cover_what_was_read() -> None:
    rig = Rig()
    rig.model.readings()
    rig.on = True
    rig.now += 10
    now, low, high, average, period = rig.model.power_statistics()
    assert low <= 15 and high >= 190 and low <= average <= high and now == high
    assert period == 10


def test_concurrent_reads_and_power_changes() -> None:
    node = Node("n1", MemoryBackend())
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(200):
                node.sensors.readings()
                node.sel.entries()
        except BaseException as exc:  # pragma: no cover - only on failure
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(30):
        node.power(PowerAction.ON)
        node.power(PowerAction.FORCE_OFF)
    for thread in threads:
        thread.join()
    assert not errors
    # a fan stopped by a power-off is not scanned: never a threshold event
    assert [e for e in node.sel.entries() if e.event_type == 0x01] == []


def test_a_backend_that_cannot_tell_its_power_state_does_not_break_the_sensors() -> None:
    class Vanished(MemoryBackend):
        def power_state(self) -> PowerState:
            raise BackendError("domain vanished")

    node = Node("n1", Vanished())
    assert node.sensors.reading("FAN1").value is None  # the last known state: off
    # the SEL has the failure, and no made-up sensor events
    assert [(e.sensor_name, e.detail) for e in node.sel.entries()] == [
        ("Backend", "power state: domain vanished")]
    node.close()
