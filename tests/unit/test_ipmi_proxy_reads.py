"""The `ipmi` backend forwards the BMC's sensors, SEL and FRU: ipmitool's output parsed (text
captured from ipmitool against ipmi_sim), then live against ipmi_sim, then through a Node."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import create_backend
from backends.base import InventoryInfo, LogRecord, SensorReading
from backends.ipmi_proxy import IpmiProxyBackend
from backends.ipmitool_text import parse_fru, parse_sel, parse_sensors
from bmc.node import Node
from bmc.sel import SystemEventLog, forward_record
from bmc.sensors import SensorKind, SensorModel, profile_from_readings
from tests.ipmi_sim_env import SAMPLE_FRU, IpmiSim, available, sample_emu

ENV = "BMC_TEST_IPMI_PROXY_READS_PASSWORD"

# `ipmitool sensor` against ipmi_sim (tests/ipmi_sim_env.sample_emu, CPU Temp set to 91)
SENSOR_OUTPUT = """\
CPU Temp         | 91.000     | degrees C  | nc    | 1.000     | 3.000     | 5.000     | 85.000    | 95.000    | 105.000
Fan 1            | 8400.000   | RPM        | ok    | 0.000     | 600.000   | 720.000   | 15000.000 | 15120.000 | 15240.000
12V Rail         | 12.000     | Volts      | ok    | 0.000     | 10.000    | 11.000    | 13.000    | 14.000    | 15.000
"""  # noqa: E501 - (ipmitool pads the last column with blanks: stripped here)
# `ipmitool sel elist` against the same ipmi_sim (entry 3: its own event for the 91 C)
SEL_OUTPUT = """\
   1 |  Pre-Init  |0000004937| Temperature CPU Temp | Upper Critical going high | Asserted | Reading 96 > Threshold 95 degrees C
   2 |  Pre-Init  |0000004937| Fan Fan 1 | Lower Critical going low  | Asserted | Reading 300 < Threshold 600 RPM
   3 |  Pre-Init  |0000004938| Temperature CPU Temp | Upper Non-critical going high | Asserted | Reading 91 > Threshold 85 degrees C
"""  # noqa: E501
# `ipmitool fru print 0` against the same ipmi_sim
FRU_OUTPUT = """\
 Chassis Type          : Rack Mount Chassis
 Board Mfg Date        : Mon Jan  1 00:00:00 2024 UTC
 Board Mfg             : Acme Corp
 Board Product         : X11 Board
 Board Serial          : MB-778
 Product Manufacturer  : Acme Corp
 Product Name          : Acme R100
 Product Part Number   : PN-42
 Product Version       : B2
 Product Serial        : ACME-SN-0042
"""


# -- the parsers ------------------------------------------------------------------------------
def test_sensor_lines_become_readings_with_kind_unit_and_thresholds() -> None:
    readings = parse_sensors(SENSOR_OUTPUT)
    assert [(r.name, r.kind, r.value, r.unit) for r in readings] == [
        ("CPU Temp", "temperature", 91.0, "Cel"), ("Fan 1", "fan", 8400.0, "RPM"),
        ("12V Rail", "voltage", 12.0, "V")]
    assert readings[0].thresholds == {
        "lower_non_recoverable": 1.0, "lower_critical": 3.0, "lower_non_critical": 5.0,
        "upper_non_critical": 85.0, "upper_critical": 95.0, "upper_non_recoverable": 105.0}


def test_bad_sensor_lines_are_skipped_and_na_is_no_value() -> None:
    # real BMCs' odd lines (written here as ipmitool prints them): a discrete PSU sensor, a
    # reading not available, a truncated line, noise
    text = ("Get Device ID command failed\n"
            "PSU1 Status      | 0x1        | discrete   | 0x0100| na        | na        \n"
            "CPU2 Temp        | na         | degrees C  | na    | na        | na        | na"
            "        | 80.000    | 90.000    | na        \n"
            "Half | line\n\n" + SENSOR_OUTPUT + "CPU Temp | 1 | degrees C | ok\n")
    readings = {r.name: r for r in parse_sensors(text)}
    assert list(readings) == ["PSU1 Status", "CPU2 Temp", "CPU Temp", "Fan 1", "12V Rail"]
    assert readings["PSU1 Status"].kind == "psu" and readings["PSU1 Status"].value is None
    assert readings["CPU2 Temp"].value is None
    assert readings["CPU2 Temp"].thresholds == {"upper_non_critical": 80.0,
                                                "upper_critical": 90.0}
    assert readings["CPU Temp"].value == 91.0  # the first line of a name wins


def test_sel_lines_become_records_with_sensor_severity_and_text() -> None:
    records = parse_sel(SEL_OUTPUT, ("CPU Temp", "Fan 1"), now=1000.0)
    assert [(r.id, r.sensor, r.event, r.severity, r.created) for r in records] == [
        ("1", "CPU Temp", "Upper Critical going high", "Critical", 1000.0),
        ("2", "Fan 1", "Lower Critical going low", "Critical", 1000.0),
        ("3", "CPU Temp", "Upper Non-critical going high", "Warning", 1000.0)]
    assert records[0].message == ("Temperature CPU Temp: Upper Critical going high, asserted "
                                  "(Reading 96 > Threshold 95 degrees C)")
    # without the names the sensor is unknown, the text is the same
    assert parse_sel(SEL_OUTPUT)[0].sensor is None


def test_sel_dates_deassertions_and_bad_lines() -> None:
    text = ("SEL has no entries\n"
            "  1a | 11/30/2026 | 10:00:00 | Fan Fan 1 | Lower Critical going low | Deasserted\n"
            "  zz | 11/30/2026 | 10:00:00 | Fan Fan 1 | x | Asserted\n"
            "garbage\n")
    (record,) = parse_sel(text, ("Fan 1",))
    assert record.id == "1a" and not record.asserted and record.severity == "OK"
    assert time.localtime(record.created)[:6] == (2026, 11, 30, 10, 0, 0)


def test_fru_print_gives_the_product_identity() -> None:
    assert parse_fru(FRU_OUTPUT) == InventoryInfo(**SAMPLE_FRU)
    board_only = "\n".join(line for line in FRU_OUTPUT.splitlines()
                           if not line.startswith(" Product"))
    assert parse_fru(board_only) == InventoryInfo("Acme Corp", "X11 Board", "MB-778", None)
    assert parse_fru("FRU Device Description : Builtin FRU Device (ID 0)\n") is None
    assert parse_fru("") is None


# -- the model's side: external sensors, forwarded SEL entries --------------------------------
def test_an_external_sensor_model_shows_fed_values_and_logs_no_events_of_its_own() -> None:
    readings = parse_sensors(SENSOR_OUTPUT) + [SensorReading("Odd", "other", 1.0)]
    specs = profile_from_readings(readings)
    assert [(s.name, s.kind) for s in specs] == [
        ("CPU Temp", SensorKind.TEMPERATURE), ("Fan 1", SensorKind.FAN),
        ("12V Rail", SensorKind.VOLTAGE)]
    model = SensorModel(specs, powered=lambda: False, external=True)
    events: list[object] = []
    model.subscribe(events.append)
    model.feed({"CPU Temp": 91.0, "Fan 1": None})
    by_name = {s.name: s for s in model.readings()}
    assert [s.number for s in model.readings()] == [1, 2, 3]
    assert by_name["CPU Temp"].value == 91.0 and by_name["CPU Temp"].status == "non-critical"
    assert by_name["Fan 1"].value is None and by_name["12V Rail"].value == 12.0
    assert events == []  # the BMC behind logs its own (forwarded)
    with pytest.raises(ValueError):
        SensorModel(specs, powered=lambda: False).feed({"CPU Temp": 1.0})


def test_forwarded_sensors_have_room_to_move_and_unique_names() -> None:
    long_name = "A very long sensor name"
    specs = profile_from_readings([
        SensorReading("FAN9", "fan", None, "RPM", {"lower_critical": 600.0}),  # server off
        SensorReading("Total Power", "power", 8.0, "W", {}),
        SensorReading(long_name, "voltage", 1.05, "V", {}),
        SensorReading(long_name + " 2", "voltage", 1.8, "V", {}),  # same first 16 characters
        SensorReading("Bad", "fan", float("nan"), "RPM", {"upper_critical": float("inf")}),
    ])
    assert [s.name for s in specs] == ["FAN9", "Total Power", long_name[:16], "Bad"]
    model = SensorModel(specs, powered=lambda: True, external=True)
    model.feed({"FAN9": 8400.0, "Total Power": 310.0, long_name[:16]: 1.07})
    values = {s.name: s.value for s in model.readings()}
    assert abs(values["FAN9"] - 8400.0) <= 50 and abs(values["Total Power"] - 310.0) <= 4
    assert abs(values[long_name[:16]] - 1.07) <= 0.01


def test_forwarded_records_keep_their_text_severity_and_time() -> None:
    model = SensorModel(profile_from_readings(parse_sensors(SENSOR_OUTPUT)),
                        powered=lambda: True, external=True)
    sel = SystemEventLog()
    threshold, other = (LogRecord("1", 1767323045.0, "Critical", "Temperature CPU Temp: ...",
                                  "CPU Temp", "Upper Critical going high"),
                        LogRecord("2", 1767323050.0, "Warning", "Power Supply PS9: failure"))
    first, second = forward_record(sel, threshold, model), forward_record(sel, other, model)
    assert first.standard and first.sensor_number == 1 and first.sensor_type == 0x01
    assert first.event_text == "Upper Critical - going high" and first.asserted
    assert first.message == "Temperature CPU Temp: ..." and first.severity == "Critical"
    assert first.timestamp == 1767323045
    assert second.record_type == 0xC0 and second.message == "Power Supply PS9: failure"
    assert second.severity == "Warning" and second.timestamp == 1767323050


# -- live, against ipmi_sim -------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpmiSim]:
    if available():
        pytest.skip(available())
    workdir = tmp_path_factory.mktemp("ipmi_sim_reads")
    with IpmiSim(workdir, emu=sample_emu(workdir / "cpu_temp"), power_on=True) as sim:
        yield sim


@pytest.fixture
def backend(sim: IpmiSim, monkeypatch: pytest.MonkeyPatch) -> IpmiProxyBackend:
    monkeypatch.setenv(ENV, sim.password)
    made = create_backend("ipmi", {"address": "127.0.0.1", "port": sim.port,
                                   "username": sim.username, "password_env": ENV,
                                   "poll_interval": 1.0}, "front-1")
    assert isinstance(made, IpmiProxyBackend)
    return made


def test_the_backend_reads_the_bmcs_sensors_sel_and_fru(backend: IpmiProxyBackend,
                                                        sim: IpmiSim) -> None:
    caps = backend.capabilities
    assert caps.sensors and caps.event_log and caps.inventory
    started = time.monotonic()
    readings = {r.name: r for r in backend.read_sensors()}
    assert readings["Fan 1"].value == 8400.0 and readings["12V Rail"].unit == "V"
    records = backend.read_log(None)
    assert [(r.id, r.sensor, r.event) for r in records[:2]] == [
        ("1", "CPU Temp", "Upper Critical going high"), ("2", "Fan 1", "Lower Critical going low")]
    assert backend.read_log(records[-1].id) == []
    assert [r.id for r in backend.read_log("1")] == [r.id for r in records[1:]]
    assert backend.read_inventory() == InventoryInfo(**SAMPLE_FRU)
    assert time.monotonic() - started < 4 * backend.timeout


def test_a_node_shows_the_bmcs_sensors_log_and_identity_and_follows_them(
        backend: IpmiProxyBackend, sim: IpmiSim) -> None:
    value_file = sim.workdir / "cpu_temp"
    value_file.write_text("45\n")
    node = Node("front-1", backend)
    try:
        assert (node.identity.manufacturer, node.identity.product, node.identity.serial,
                node.identity.part_number) == ("Acme Corp", "Acme R100", "ACME-SN-0042", "PN-42")
        readings = {s.name: s for s in node.sensors.readings()}
        assert readings["Fan 1"].value == 8400.0 and readings["Fan 1"].unit == "RPM"
        assert readings["CPU Temp"].thresholds.upper_critical == 95.0
        forwarded = [e for e in node.sel.entries() if e.text]
        assert forwarded[0].message.startswith("Temperature CPU Temp: Upper Critical going high")
        assert forwarded[0].sensor_number == node.sensors.spec("CPU Temp").number
        count = len(forwarded)
        # the BMC's reading changes: ipmi_sim crosses a threshold and logs it itself
        value_file.write_text("91\n")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if node.sensors.reading("CPU Temp").value == 91.0 and any(
                    "Upper Non-critical going high" in e.message
                    for e in node.sel.entries() if e.text):
                break
            time.sleep(0.2)
        assert node.sensors.reading("CPU Temp").value == 91.0
        assert node.sensors.reading("CPU Temp").status == "non-critical"
        new = [e for e in node.sel.entries() if e.text][count:]
        assert [e.message.split(" (")[0] for e in new] == [
            "Temperature CPU Temp: Upper Non-critical going high, asserted"]
        time.sleep(1.5)  # more polls: nothing is forwarded twice
        assert len([e for e in node.sel.entries() if e.text]) == count + 1
    finally:
        node.close()


def test_other_backends_read_nothing(tmp_path: Path) -> None:
    memory = create_backend("memory", {}, "n")
    caps = memory.capabilities
    assert not (caps.sensors or caps.event_log or caps.inventory)
    assert memory.read_sensors() is None and memory.read_log(None) is None
    assert memory.read_inventory() is None
    node = Node("n", memory)
    try:
        assert node.sensors.specs[0].name == "CPU1 Temp" and not node.sensors.external
    finally:
        node.close()
