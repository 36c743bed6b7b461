"""The `ipmi` backend forwards what the BMC behind measures, logs and says it is, end to end:

    ipmitool / requests -> front emulator -> `ipmi` backend -> ipmi_sim with sensors, SEL, FRU

ipmi_sim (tests/ipmi_sim_env.sample_emu) has three threshold sensors ("CPU Temp" reads a file
the test writes), two SEL entries and FRU data; the front's IPMI (sdr, sensor, sel, fru) and
Redfish (Thermal, Sensors, the SEL LogService, the System) must show them.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import Emulator, Launcher

from tests.ipmi_sim_env import SAMPLE_FRU, IpmiSim, available, sample_emu

TIMEOUT = 30.0  # generous: a loaded 2-core machine
SIM_ENV = "BMC_TEST_PROXY_READS_PASSWORD"
NODE = "via-sim"

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpmiSim]:
    workdir = tmp_path_factory.mktemp("ipmi_sim_reads")
    with IpmiSim(workdir, emu=sample_emu(workdir / "cpu_temp"), power_on=True) as sim:
        yield sim


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, sim: IpmiSim) -> Iterator[Emulator]:
    launcher = Launcher(tmp_path_factory.mktemp("front_reads"))
    nodes = [{"name": NODE, "backend": {"type": "ipmi", "address": launcher.host,
                                        "port": sim.port, "username": sim.username,
                                        "password_env": SIM_ENV, "poll_interval": 1}}]
    with pytest.MonkeyPatch.context() as env:
        env.setenv(SIM_ENV, sim.password)
        bmc = launcher(nodes, log_level="info")
    yield bmc
    launcher.close()
    assert sim.password not in bmc.stdout + bmc.stderr


def ipmitool(bmc: Emulator, *command: str) -> str:
    result = subprocess.run(bmc.ipmitool(bmc.node(NODE), *command), capture_output=True,
                            text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return result.stdout


def get(bmc: Emulator, path: str) -> Any:
    response = requests.get(f"{bmc.node(NODE).redfish_url}{path}", timeout=TIMEOUT,
                            auth=(bmc.username, bmc.password))
    assert response.status_code == 200, response.text
    return response.json()


def rows(text: str) -> dict[str, list[str]]:
    """ipmitool's `|` tables by their first column."""
    table = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) > 2:
            table[cells[0]] = cells[1:]
    return table


def test_ipmitool_sensor_and_sdr_show_the_bmcs_sensors(front: Emulator) -> None:
    sensors = rows(ipmitool(front, "sensor"))
    # the BMC's, in its order, instead of the modelled ones; then our BMC's event sensors
    assert list(sensors)[:4] == ["CPU Temp", "Fan 1", "12V Rail", "ACPI State"]
    assert "CPU1 Temp" not in sensors and "FAN1" not in sensors
    assert float(sensors["Fan 1"][0]) == 8400.0 and sensors["Fan 1"][1] == "RPM"
    assert float(sensors["12V Rail"][0]) == 12.0 and sensors["12V Rail"][1] == "Volts"
    assert [float(v) for v in sensors["CPU Temp"][3:9]] == [1, 3, 5, 85, 95, 105]
    sdr = rows(ipmitool(front, "sdr", "elist", "full"))
    assert sdr["CPU Temp"][0] == "01h" and sdr["Fan 1"][3] == "8400 RPM"


def test_sel_and_fru_show_the_bmcs_log_and_identity(front: Emulator) -> None:
    sel = ipmitool(front, "sel", "elist")
    assert "Temperature CPU Temp | Upper Critical going high | Asserted" in sel
    assert "Fan Fan 1 | Lower Critical going low" in sel
    fru = ipmitool(front, "fru", "print", "0")
    assert "Product Manufacturer  : Acme Corp" in fru
    assert "Product Name          : Acme R100" in fru
    assert "Product Serial        : ACME-SN-0042" in fru
    assert "Product Part Number   : PN-42" in fru


def test_redfish_shows_the_bmcs_sensors_log_and_identity(front: Emulator) -> None:
    system = get(front, f"/redfish/v1/Systems/{NODE}")
    assert (system["Manufacturer"], system["Model"], system["SerialNumber"]) == (
        SAMPLE_FRU["manufacturer"], SAMPLE_FRU["product"], SAMPLE_FRU["serial"])
    thermal = get(front, f"/redfish/v1/Chassis/{NODE}/Thermal")
    assert [(t["Name"], t["ReadingCelsius"], t["UpperThresholdCritical"])
            for t in thermal["Temperatures"]] == [("CPU Temp", 45, 95)]
    assert [(f["Name"], f["Reading"]) for f in thermal["Fans"]] == [("Fan 1", 8400)]
    members = get(front, f"/redfish/v1/Chassis/{NODE}/Sensors")["Members"]
    readings = {sensor["Name"]: (sensor["Reading"], sensor["ReadingUnits"])
                for sensor in (get(front, m["@odata.id"]) for m in members)}
    assert readings == {"CPU Temp": (45, "Cel"), "Fan 1": (8400, "RPM"),
                        "12V Rail": (12, "V")}
    entries = get(front, "/redfish/v1/Managers/BMC/LogServices/SEL/Entries")["Members"]
    forwarded = [e for e in entries if "CPU Temp" in e["Message"]]
    assert forwarded[0]["Message"].startswith(
        "Temperature CPU Temp: Upper Critical going high, asserted")
    assert forwarded[0]["Severity"] == "Critical"


def test_a_new_reading_and_event_behind_reach_both_protocols(front: Emulator,
                                                             sim: IpmiSim) -> None:
    (sim.workdir / "cpu_temp").write_text("91\n")  # ipmi_sim logs Upper Non-critical itself
    deadline = time.monotonic() + TIMEOUT
    while True:
        sensors = rows(ipmitool(front, "sensor"))
        sel = ipmitool(front, "sel", "elist")
        if (float(sensors["CPU Temp"][0]) == 91.0
                and "CPU Temp | Upper Non-critical going high" in sel):
            break
        assert time.monotonic() < deadline, (sensors, sel)
        time.sleep(0.5)
    assert sensors["CPU Temp"][2] == "nc"
    thermal = get(front, f"/redfish/v1/Chassis/{NODE}/Thermal")
    assert thermal["Temperatures"][0]["ReadingCelsius"] == 91
    assert thermal["Temperatures"][0]["Status"]["Health"] == "Warning"
    entries = get(front, "/redfish/v1/Managers/BMC/LogServices/SEL/Entries")["Members"]
    assert sum("Upper Non-critical going high" in e["Message"] for e in entries) == 1
