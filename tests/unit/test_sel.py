"""The System Event Log: the model, what the BMC logs by itself, and the IPMI SEL commands."""

from __future__ import annotations

import struct

import pytest

from backends.memory import MemoryBackend
from bmc.node import Node, PowerAction
from bmc.sel import (
    ACPI_STATE,
    CAPACITY,
    EVENT_LOG,
    ReservationCancelled,
    SelEntry,
    SystemEventLog,
)
from bmc.sensors import Scale, SensorKind, SensorSpec, Thresholds
from bmc.users import Privilege
from ipmi.commands import NETFN_STORAGE, Context, IpmiError, load_all

RECORD = bytes.fromhex("0000" "02" "00000000" "4100" "04" "01" "30" "01" "59" "5a" "50")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def call(node: Node, cmd: int, data: bytes = b"") -> tuple[int, bytes]:
    """(completion code, response data) of a storage command run through the registry."""
    entry = load_all()[(NETFN_STORAGE, cmd)]
    try:
        return 0, entry.handler(Context(node, data, None, None, NETFN_STORAGE, cmd))
    except IpmiError as exc:
        return exc.code, b""


def test_entries_get_ids_and_timestamps_from_the_sel_clock() -> None:
    clock = Clock()
    sel = SystemEventLog(clock=clock)
    first = sel.add(0x01, 0x05, 0x01, b"\x57\x50\x5a")
    clock.now += 60
    second = sel.add_sensor_event(ACPI_STATE, 0x00, asserted=False)
    assert (first.record_id, second.record_id) == (1, 2)
    assert first.timestamp == 1_700_000_000 and second.timestamp == 1_700_000_060
    assert first.raw[2] == 0x02 and first.generator_id == 0x20 and first.raw[9] == 0x04
    assert second.sensor_type == 0x22 and second.sensor_number == ACPI_STATE.number
    assert second.event_type == 0x6F and not second.asserted and second.raw[12] == 0xEF
    assert [e.record_id for e in sel.entries()] == [1, 2]
    assert sel.get(0) == (first, 2) and sel.get(0xFFFF) == (second, 0xFFFF)
    assert sel.get(1) == (first, 2) and sel.get(7) is None
    assert sel.entry(2) == second and sel.entry(0) is None and sel.entry(0xFFFF) is None


def test_sel_time_can_be_set_and_new_entries_use_it() -> None:
    clock = Clock()
    sel = SystemEventLog(clock=clock)
    sel.set_time(1_900_000_000)
    clock.now += 10
    assert sel.time() == 1_900_000_010
    assert sel.add(0x01, 1, 0x01, b"\x00").timestamp == 1_900_000_010


def test_the_ring_drops_the_oldest_and_reports_overflow() -> None:
    sel = SystemEventLog(capacity=3)
    for sensor in range(5):
        sel.add(0x01, sensor, 0x01, b"\x00")
    info = sel.info()
    assert info.entries == 3 and info.overflow and info.free_bytes == 0
    assert [e.sensor_number for e in sel.entries()] == [2, 3, 4]


def test_clear_needs_the_current_reservation_and_logs_that_it_cleared() -> None:
    sel = SystemEventLog()
    sel.add(0x01, 1, 0x01, b"\x00")
    stale = sel.reserve()
    current = sel.reserve()
    with pytest.raises(ReservationCancelled):
        sel.clear(stale)
    with pytest.raises(ReservationCancelled):
        sel.clear(0)
    sel.clear(current)
    entries = sel.entries()
    assert len(entries) == 1 and entries[0].sensor_type == EVENT_LOG.sensor_type
    assert entries[0].message == "Event Log: Log area reset/cleared, asserted"
    assert entries[0].record_id == 1
    with pytest.raises(ReservationCancelled):  # the erase cancelled it
        sel.clear(current)
    sel.clear()  # Redfish: no reservation
    assert sel.info().last_erase > 0


def test_add_record_sets_id_and_timestamp_and_refuses_bad_records() -> None:
    sel = SystemEventLog(clock=Clock())
    entry = sel.add_record(RECORD)
    assert entry.record_id == 1 and entry.timestamp == 1_700_000_000
    assert entry.raw[7:] == RECORD[7:]
    oem = sel.add_record(bytes(2) + b"\xe0" + bytes(range(13)))
    assert oem.raw[3:7] == bytes(range(4)) and oem.timestamp == 0  # not timestamped
    for bad in (RECORD[:15], RECORD + b"\x00", bytes(2) + b"\x01" + bytes(13)):
        with pytest.raises(ValueError):
            sel.add_record(bad)


def test_entry_descriptions_for_redfish() -> None:
    sel = SystemEventLog(clock=Clock())
    threshold = SelEntry(sel.add(0x04, 5, 0x01, b"\x52\x00\x0f").raw, "FAN1",
                         "reading 0 RPM, threshold 600 RPM")
    assert threshold.entry_code == "Lower Critical - going low"
    assert threshold.severity == "Critical" and threshold.sensor_type_name == "Fan"
    assert threshold.message == ("FAN1: Lower Critical - going low, asserted "
                                 "(reading 0 RPM, threshold 600 RPM)")
    assert threshold.created == "2023-11-14T22:13:20+00:00"
    power = sel.add_sensor_event(ACPI_STATE, 0x05)
    assert power.entry_code == "Assert" and power.severity == "OK"
    assert power.sensor_type_name == "System ACPI PowerState"
    unknown = sel.add_record(RECORD)
    assert unknown.message.startswith("Temperature #0x30: Upper Critical - going high")


def test_listeners_see_every_new_entry() -> None:
    sel = SystemEventLog()
    seen: list[SelEntry] = []
    sel.subscribe(seen.append)
    sel.add(0x01, 1, 0x01, b"\x00")
    sel.clear()
    assert [e.record_id for e in seen] == [1, 1]


def _messages(node: Node) -> list[str]:
    return [e.message.split(" (")[0] for e in node.sel.entries()]


def test_power_actions_from_any_caller_are_logged() -> None:
    node = Node("n1", MemoryBackend())
    node.power(PowerAction.ON)
    node.power(PowerAction.ON)  # nothing happens: nothing logged
    node.power(PowerAction.FORCE_RESTART)
    node.power(PowerAction.NMI)
    node.power(PowerAction.POWER_CYCLE)
    node.power(PowerAction.GRACEFUL_SHUTDOWN)
    node.power(PowerAction.PUSH_POWER_BUTTON)
    node.power(PowerAction.FORCE_OFF)
    assert _messages(node) == [
        "ACPI State: S0/G0: working, asserted",
        "Sys Restart: Initiated by hard reset, asserted",
        "NMI: Front panel NMI / diagnostic interrupt, asserted",
        "Power Unit: Power cycle, asserted",
        "ACPI State: S5/G2: soft-off, asserted",
        "Power Button: Power button pressed, asserted",
        "ACPI State: S0/G0: working, asserted",
        "Power Unit: Power off/down, asserted",
    ]
    entries = node.sel.entries()
    assert entries[-1].detail == "ForceOff"


def test_a_power_off_logs_the_power_record_only() -> None:
    node = Node("n1", MemoryBackend(power_on=True))
    node.power(PowerAction.FORCE_OFF)
    assert _messages(node) == ["Power Unit: Power off/down, asserted"]


def test_a_fan_failing_while_the_server_runs_is_logged_with_its_reading() -> None:
    # a fan that only reaches 280 RPM: below its 600 RPM critical threshold once scanned
    weak = SensorSpec("FAN1", SensorKind.FAN, on=280.0, off=0.0,
                      thresholds=Thresholds(lower_critical=600.0), scale=Scale(m=40))
    node = Node("n1", MemoryBackend(), sensors=[weak])
    node.power(PowerAction.ON)
    entries = node.sel.entries()
    assert entries[0].message.startswith("ACPI State: S0/G0: working")
    (fan,) = entries[1:]
    assert fan.sensor_name == "FAN1" and fan.event_type == 0x01 and fan.asserted
    assert fan.sensor_type == 0x04  # Fan
    # 52h: LC going low (offset 2), bytes 2/3 hold the reading and the threshold (raw, m=40)
    assert fan.event_data == bytes((0x52, 7, 15))
    assert fan.detail == "reading 280 RPM, threshold 600 RPM"
    assert fan.message.startswith("FAN1: Lower Critical - going low, asserted")
    node.power(PowerAction.FORCE_OFF)  # no longer scanned: neither deasserted nor logged again
    assert [e.sensor_name for e in node.sel.entries()[2:]] == ["Power Unit"]


# -- IPMI commands ----------------------------------------------------------------------------
def test_sel_info_allocation_and_time_commands() -> None:
    node = Node("n1", MemoryBackend())
    node.sel.add(0x01, 1, 0x01, b"\x00")
    code, info = call(node, 0x40)
    assert code == 0 and info[0] == 0x51
    assert struct.unpack_from("<HH", info, 1) == (1, (CAPACITY - 1) * 16)
    assert info[13] & 0x0F == 0x0B  # delete, reserve, allocation info
    code, alloc = call(node, 0x41)
    assert struct.unpack("<HHHHB", alloc) == (CAPACITY, 16, CAPACITY - 1, CAPACITY - 1, 1)
    assert call(node, 0x49, struct.pack("<I", 2_000_000_000)) == (0, b"")
    code, now = call(node, 0x48)
    assert abs(struct.unpack("<I", now)[0] - 2_000_000_000) <= 2
    assert call(node, 0x49, b"\x00\x00")[0] == 0xC7
    assert call(node, 0x5C) == (0, struct.pack("<h", 0x7FF))
    assert call(node, 0x5D, struct.pack("<h", 60)) == (0, b"")
    assert call(node, 0x5D, struct.pack("<h", 3000))[0] == 0xC9


def test_get_sel_entry_reads_whole_and_partial_records() -> None:
    node = Node("n1", MemoryBackend())
    first = node.sel.add(0x01, 1, 0x01, b"\x00")
    second = node.sel.add(0x01, 2, 0x01, b"\x00")
    code, data = call(node, 0x43, struct.pack("<HHBB", 0, 0, 0, 0xFF))
    assert code == 0 and data == struct.pack("<H", 2) + first.raw
    code, data = call(node, 0x43, struct.pack("<HHBB", 0, 0xFFFF, 0, 0xFF))
    assert data == struct.pack("<H", 0xFFFF) + second.raw
    # a partial read needs a reservation
    assert call(node, 0x43, struct.pack("<HHBB", 0, 1, 4, 4))[0] == 0xC5
    reservation = struct.unpack("<H", call(node, 0x42)[1])[0]
    code, data = call(node, 0x43, struct.pack("<HHBB", reservation, 1, 4, 4))
    assert code == 0 and data[2:] == first.raw[4:8]
    assert call(node, 0x43, struct.pack("<HHBB", 0, 9, 0, 0xFF))[0] == 0xCB
    assert call(node, 0x43, struct.pack("<HHBB", reservation, 1, 16, 1))[0] == 0xC9
    assert call(node, 0x43, b"\x00\x00\x00")[0] == 0xC7
    assert call(node, 0x43, bytes(7))[0] == 0xC7


def test_add_delete_and_clear_commands() -> None:
    node = Node("n1", MemoryBackend())
    code, data = call(node, 0x44, RECORD)
    assert code == 0 and data == b"\x01\x00"
    assert node.sel.entries()[0].raw[7:] == RECORD[7:]
    assert call(node, 0x44, RECORD[:10])[0] == 0xC7
    assert call(node, 0x44, bytes(2) + b"\x05" + bytes(13))[0] == 0xCC
    reservation = struct.unpack("<H", call(node, 0x42)[1])[0]
    assert call(node, 0x46, struct.pack("<HH", reservation, 7))[0] == 0xCB
    assert call(node, 0x46, struct.pack("<HH", reservation + 1, 1))[0] == 0xC5
    assert call(node, 0x46, struct.pack("<HH", reservation, 1)) == (0, b"\x01\x00")
    node.sel.add(0x01, 1, 0x01, b"\x00")
    assert call(node, 0x47, struct.pack("<H", reservation) + b"CLX\xaa")[0] == 0xCC
    assert call(node, 0x47, struct.pack("<H", reservation) + b"CLR\x55")[0] == 0xCC
    assert call(node, 0x47, struct.pack("<H", reservation + 1) + b"CLR\xaa")[0] == 0xC5
    assert call(node, 0x47, struct.pack("<H", reservation) + b"CLR")[0] == 0xC7
    assert call(node, 0x47, struct.pack("<H", reservation) + b"CLR\xaa") == (0, b"\x01")
    assert len(node.sel.entries()) == 1  # just "log area reset/cleared"
    # the erase cancelled the reservation; asking for the erase status still works
    assert call(node, 0x47, struct.pack("<H", reservation) + b"CLR\xaa")[0] == 0xC5
    assert call(node, 0x47, struct.pack("<H", reservation) + b"CLR\x00") == (0, b"\x01")


def test_changing_commands_need_operator_privilege() -> None:
    commands = load_all()
    for cmd in (0x44, 0x46, 0x47, 0x49, 0x5D):
        assert commands[(NETFN_STORAGE, cmd)].privilege is Privilege.OPERATOR
    for cmd in (0x40, 0x41, 0x42, 0x43, 0x48):
        assert commands[(NETFN_STORAGE, cmd)].privilege is Privilege.USER


def test_a_power_loss_reported_by_the_backend_is_logged_once_with_its_reason() -> None:
    backend = MemoryBackend(power_on=True)
    node = Node("n1", backend)
    backend.power_off()  # the server died by itself; the backend reports it as an event
    node._emit("power", action="ServerExited", before="On", after="Off",
               reason="killed by SIGKILL")
    acpi = [e for e in node.sel.entries() if e.sensor_number == ACPI_STATE.number]
    assert [(e.offset, e.detail) for e in acpi] == [(0x05, "ServerExited: killed by SIGKILL")]
    node.sensors.readings()  # reading again finds nothing new to log
    assert len([e for e in node.sel.entries() if e.sensor_number == ACPI_STATE.number]) == 1
