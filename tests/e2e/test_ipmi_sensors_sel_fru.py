"""Sensors/SDR, SEL, FRU and DCMI driven by the real clients: ipmitool and freeipmi.

freeipmi runs with its default options (no workaround flags); only its SDR cache is kept in
the test's temporary directory instead of the user's home.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from conftest import Emulator, EmulatorNode
from e2e_helpers import freeipmi, ipmitool, raw_error, run

SENSORS = ["CPU1 Temp", "CPU2 Temp", "Inlet Temp", "System Temp", "FAN1", "FAN2", "FAN3",
           "FAN4", "12V", "5V", "3.3V", "Total Power", "PSU1 Status", "PSU2 Status"]
# e2e_helpers.run gives every client LC_ALL=C and TZ=UTC: ipmitool's "sel time set" parses
# with the locale's date format ("%x %X")


def table(text: str) -> dict[str, list[str]]:
    """`ipmitool sdr/sensor list` output: name -> the other columns."""
    rows = [[cell.strip() for cell in line.split("|")] for line in text.splitlines() if line]
    return {row[0]: row[1:] for row in rows}


def reading(bmc: Emulator, node: int, name: str) -> float:
    return float(table(ipmitool(bmc, node, "sensor", "list"))[name][0])


def redfish_reset(bmc: Emulator, node: EmulatorNode, reset_type: str) -> None:
    response = requests.post(
        f"{node.redfish_url}/redfish/v1/Systems/{node.name}/Actions/ComputerSystem.Reset",
        json={"ResetType": reset_type}, auth=(bmc.username, bmc.password), timeout=10)
    assert response.status_code in (200, 202, 204), response.text


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("freeipmi")


# -- sensors and SDR --------------------------------------------------------------------------
def test_sdr_list_elist_and_info(emulator: Emulator) -> None:
    ipmitool(emulator, 0, "power", "off")
    rows = table(ipmitool(emulator, 0, "sdr", "list"))
    assert set(SENSORS) <= set(rows)
    # host-powered sensors are not scanned while the server is off (tests/e2e/test_fidelity.py)
    assert rows["FAN1"] == ["no reading", "ns"]
    assert rows["Inlet Temp"][0].endswith(" degrees C") and rows["Inlet Temp"][1] == "ok"
    assert rows["Total Power"][0].endswith(" Watts")
    elist = table(ipmitool(emulator, 0, "sdr", "elist"))
    assert elist["PSU1 Status"][-1] == "Presence detected"
    assert elist["ACPI State"][-1] == "S5/G2: soft-off"
    assert elist["FAN2"][1] == "ns" and elist["FAN2"][-1] == "No Reading"
    info = ipmitool(emulator, 0, "sdr", "info")
    count = int(re.search(r"Record Count\s+: (\d+)", info).group(1))  # type: ignore[union-attr]
    assert count == len(rows) + 1  # every sensor plus the BMC's own locator record
    ipmitool(emulator, 0, "power", "on")
    rows = table(ipmitool(emulator, 0, "sdr", "list", interface="lan"))
    assert rows["FAN1"][1] == "ok" and int(rows["FAN1"][0].split()[0]) > 7000
    assert rows["12V"][0].endswith(" Volts") and rows["CPU1 Temp"][0].endswith(" degrees C")
    assert table(ipmitool(emulator, 0, "sdr", "elist"))["ACPI State"][-1] == "S0/G0: working"


def test_sensor_list_shows_readings_units_and_thresholds(emulator: Emulator) -> None:
    ipmitool(emulator, 0, "power", "on")
    rows = table(ipmitool(emulator, 0, "sensor", "list"))
    assert set(SENSORS) <= set(rows)
    # value | unit | status | lnr | lcr | lnc | unc | ucr | unr
    assert rows["12V"][1:] == ["Volts", "ok", "10.200", "10.800", "11.400", "12.600",
                               "13.200", "13.800"]
    assert 11.4 < float(rows["12V"][0]) < 12.6
    assert rows["CPU1 Temp"][1:3] == ["degrees C", "ok"] and rows["CPU1 Temp"][7] == "95.000"
    assert rows["FAN3"][1:4] == ["RPM", "ok", "na"] and rows["FAN3"][4] == "600.000"
    assert 7000 < float(rows["FAN3"][0]) < 10000
    assert rows["PSU2 Status"][1] == "discrete"
    ipmitool(emulator, 0, "power", "off")
    assert table(ipmitool(emulator, 0, "sensor", "list"))["FAN3"][:3] == ["na", "RPM", "na"]


def test_sensor_get(emulator: Emulator) -> None:
    ipmitool(emulator, 0, "power", "on")  # a CPU temperature is read while the server runs
    out = ipmitool(emulator, 0, "sensor", "get", "CPU1 Temp", "PSU1 Status")
    assert "Sensor ID              : CPU1 Temp (0x1)" in out
    assert "Sensor Type (Threshold)  : Temperature" in out
    assert re.search(r"Sensor Reading\s+: \d+ \(\+/- 0\) degrees C", out)
    assert re.search(r"Upper Critical\s+: 95\.000", out)
    assert re.search(r"Positive Hysteresis\s+: 2\.000", out)
    assert "[Presence detected]" in out
    missing = run([*emulator.ipmitool(0), "sensor", "get", "Flux Capacitor"])
    assert missing.returncode != 0


def test_dcmi_power_reading_matches_the_power_sensor(emulator: Emulator) -> None:
    def dcmi_watts() -> int:
        out = ipmitool(emulator, 0, "dcmi", "power", "reading")
        match = re.search(r"Instantaneous power reading:\s+(\d+) Watts", out)
        assert match, out
        return int(match.group(1))

    ipmitool(emulator, 0, "power", "on")
    watts = dcmi_watts()
    assert 190 <= watts <= 230
    # the sensor has 2 W steps and both may sit in different noise periods (+/- 6 W)
    assert abs(reading(emulator, 0, "Total Power") - watts) <= 14
    ipmitool(emulator, 0, "power", "off")
    assert dcmi_watts() <= 15
    assert reading(emulator, 0, "Total Power") <= 15


def test_dcmi_discover_and_sensors(emulator: Emulator) -> None:
    out = ipmitool(emulator, 0, "dcmi", "discover")
    # power limiting is not implemented: power management is not claimed
    assert "Power management" not in out and "512 SEL entries" in out
    out = ipmitool(emulator, 0, "dcmi", "sensors")
    assert "CPU: 2 temperature sensors found" in out and "Inlet Temp" in out


# -- SEL --------------------------------------------------------------------------------------
def test_power_actions_from_both_protocols_are_in_the_sel(emulator: Emulator) -> None:
    node = emulator.nodes[1]
    ipmitool(emulator, 1, "power", "off")
    ipmitool(emulator, 1, "sel", "clear")
    ipmitool(emulator, 1, "chassis", "power", "on")
    redfish_reset(emulator, node, "ForceOff")
    lines = ipmitool(emulator, 1, "sel", "list").splitlines()
    events = [line.split("|", 3)[3].strip() for line in lines]
    assert events[0].startswith("Event Logging Disabled") and "Log area reset/cleared" in events[0]
    # only the power records: fans stopped by a power-off are not scanned (no criticals)
    assert events[1:] == ["System ACPI Power State #0x80 | S0/G0: working | Asserted",
                          "Power Unit #0x81 | Power off/down | Asserted"]
    elist = ipmitool(emulator, 1, "sel", "elist")
    assert "ACPI State | S0/G0: working | Asserted" in elist
    assert "Power Unit Power Unit | Power off/down | Asserted" in elist
    assert "S0/G0: working" in ipmitool(emulator, 1, "sel", "list", interface="lan")


def test_sel_info_get_add_and_clear(emulator: Emulator, tmp_path: Path) -> None:
    ipmitool(emulator, 1, "sel", "clear")
    events = tmp_path / "events.txt"
    events.write_text("# evm sensor-type sensor event-type data1 data2 data3\n"
                      "0x04 0x01 0x30 0x01 0x09 0x5a 0x50  # temperature critical high\n"
                      "0x04 0x09 0x31 0xef 0x00 0xff 0xff\n")
    ipmitool(emulator, 1, "sel", "add", str(events))
    info = ipmitool(emulator, 1, "sel", "info")
    assert re.search(r"Entries\s+: 3\b", info) and "'Reserve'" in info
    lines = ipmitool(emulator, 1, "sel", "list").splitlines()
    assert "Temperature #0x30 | Upper Critical going high | Asserted" in lines[1]
    assert "Power Unit #0x31 | Power off/down | Deasserted" in lines[2]
    record_id = lines[1].split("|")[0].strip()
    entry = ipmitool(emulator, 1, "sel", "get", f"0x{record_id}")
    assert "Generator ID          : 0041" in entry and "Sensor Number         : 30" in entry
    ipmitool(emulator, 1, "sel", "clear")
    lines = ipmitool(emulator, 1, "sel", "list").splitlines()
    assert len(lines) == 1 and "Log area reset/cleared" in lines[0]


def test_sel_time_get_and_set(emulator: Emulator, tmp_path: Path) -> None:
    ipmitool(emulator, 1, "sel", "time", "set", "01/02/30 03:04:05")
    assert ipmitool(emulator, 1, "sel", "time", "get").startswith("01/02/30 03:0")
    events = tmp_path / "event.txt"
    events.write_text("0x04 0x12 0x40 0x6f 0x01 0xff 0xff\n")
    ipmitool(emulator, 1, "sel", "add", str(events))
    assert "| 01/02/30 | 03:0" in ipmitool(emulator, 1, "sel", "list").splitlines()[-1]
    ipmitool(emulator, 1, "sel", "time", "set", "now")
    assert not ipmitool(emulator, 1, "sel", "time", "get").startswith("01/02/30")


def test_stale_reservations_and_malformed_requests_get_completion_codes(
        emulator: Emulator) -> None:
    stale = ipmitool(emulator, 1, "raw", "0x0a", "0x42").split()
    ipmitool(emulator, 1, "raw", "0x0a", "0x42")  # a newer reservation cancels it
    clr = ["0x43", "0x4c", "0x52", "0xaa"]
    assert "rsp=0xc5" in raw_error(emulator, 1, "0x0a", "0x47", *(f"0x{b}" for b in stale),
                                   *clr)
    current = ipmitool(emulator, 1, "raw", "0x0a", "0x42").split()
    assert "rsp=0xcc" in raw_error(emulator, 1, "0x0a", "0x47", *(f"0x{b}" for b in current),
                                   "0x43", "0x4c", "0x58", "0xaa")  # "CLX"
    assert "rsp=0xc7" in raw_error(emulator, 1, "0x0a", "0x43", "0x00")
    assert "rsp=0xcb" in raw_error(emulator, 1, "0x0a", "0x43", "0", "0", "0x99", "0x99", "0",
                                   "0xff")
    assert "rsp=0xcb" in raw_error(emulator, 1, "0x04", "0x2d", "0x7e")
    assert "rsp=0xcb" in raw_error(emulator, 1, "0x0a", "0x11", "0x01", "0", "0", "8")
    assert "rsp=0xcc" in raw_error(emulator, 1, "0x2c", "0x02", "0xdd", "1", "0", "0")
    assert "rsp=0xc7" in raw_error(emulator, 1, "0x0a", "0x44", "0x00")


# -- FRU --------------------------------------------------------------------------------------
def test_fru_print_matches_the_node_identity(emulator: Emulator) -> None:
    node = emulator.nodes[0]
    system = requests.get(f"{node.redfish_url}/redfish/v1/Systems/{node.name}",
                          auth=(emulator.username, emulator.password), timeout=10).json()
    for command in (("fru", "print"), ("fru", "print", "0")):
        out = ipmitool(emulator, 0, *command)
        assert re.search(r"Chassis Type\s+: Rack Mount Chassis", out)
        assert re.search(r"Board Mfg\s+: bmc-emulator", out)
        assert re.search(r"Board Mfg Date\s+: Mon Jan  1 00:00:00 2024", out)
        assert re.search(rf"Product Serial\s+: {re.escape(system['SerialNumber'])}$", out,
                         re.MULTILINE)
        assert re.search(rf"Product Extra\s+: {system['UUID']}", out, re.IGNORECASE)
        assert re.search(rf"Product Asset Tag\s+: {node.name}$", out, re.MULTILINE)


# -- freeipmi ---------------------------------------------------------------------------------
def test_freeipmi_sensors(emulator: Emulator, cache: Path) -> None:
    ipmitool(emulator, 0, "power", "on")
    out = freeipmi(emulator, 0, "ipmi-sensors", cache=cache)
    rows = {r[1]: r for r in ([c.strip() for c in line.split("|")]
                              for line in out.splitlines()[1:])}
    assert set(SENSORS) <= set(rows)
    assert rows["FAN1"][2] == "Fan" and rows["FAN1"][4] == "RPM" and rows["FAN1"][5] == "'OK'"
    assert float(rows["FAN1"][3]) > 7000
    assert rows["12V"][4] == "V" and rows["CPU1 Temp"][4] == "C"
    assert rows["Total Power"][4] == "W" and 190 <= float(rows["Total Power"][3]) <= 230
    assert rows["PSU1 Status"][5] == "'Presence detected'"
    ipmitool(emulator, 0, "power", "off")
    out = freeipmi(emulator, 0, "ipmi-sensors", cache=cache)
    assert re.search(r"\| FAN2\s+\| Fan\s+\| N/A\s+\| RPM\s+\| N/A", out)
    verbose = freeipmi(emulator, 0, "ipmi-sensors", "-v", cache=cache)
    assert "Upper Critical Threshold: 95.000000 C" in verbose
    assert "Lower Critical Threshold: 600.000000 RPM" in verbose


def test_freeipmi_sel_and_clear(emulator: Emulator, cache: Path) -> None:
    ipmitool(emulator, 1, "power", "off")
    ipmitool(emulator, 1, "power", "on")
    out = freeipmi(emulator, 1, "ipmi-sel", cache=cache)
    assert re.search(r"\| ACPI State\s+\| System ACPI Power State\s+\| S0/G0", out)
    assert "FAN1" not in out  # not scanned while off: no threshold events
    freeipmi(emulator, 1, "ipmi-sel", "--clear", cache=cache)
    lines = freeipmi(emulator, 1, "ipmi-sel", cache=cache).splitlines()
    assert len(lines) == 2 and "Log Area Reset/Cleared" in lines[1]


def test_freeipmi_fru_and_dcmi(emulator: Emulator, cache: Path) -> None:
    out = freeipmi(emulator, 0, "ipmi-fru", cache=cache)
    assert "FRU Board Manufacturer: bmc-emulator" in out
    assert "FRU Chassis Type: Rack Mount Chassis" in out
    assert f"FRU Product Asset Tag: {emulator.nodes[0].name}" in out
    ipmitool(emulator, 0, "power", "on")
    out = freeipmi(emulator, 0, "ipmi-dcmi", "--get-system-power-statistics")
    watts = int(re.search(r"Current Power\s+: (\d+) Watts", out).group(1))  # type: ignore
    assert 190 <= watts <= 230 and "Power Measurement                    : Active" in out
