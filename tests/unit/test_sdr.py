"""SDR encoding, the sensor and SDR repository commands, FRU data and DCMI, as bytes."""

from __future__ import annotations

import struct

import pytest

from backends.memory import MemoryBackend
from bmc.fru import FruInventory, node_fru
from bmc.node import Node, PowerAction
from bmc.sensors import SensorKind, SensorSpec, Thresholds
from ipmi import sdr
from ipmi.commands import (
    NETFN_APP,
    NETFN_GROUP,
    NETFN_SENSOR,
    NETFN_STORAGE,
    Context,
    IpmiError,
    load_all,
)


def call(node: Node, netfn: int, cmd: int, data: bytes = b"") -> tuple[int, bytes]:
    """(completion code, response data) of a command run through the registry."""
    entry = load_all()[(netfn, cmd)]
    try:
        return 0, entry.handler(Context(node, data, None, None, netfn, cmd))
    except IpmiError as exc:
        return exc.code, b""


@pytest.fixture
def node() -> Node:
    return Node("n1", MemoryBackend(power_on=True))


def _records(node: Node) -> list[bytes]:
    return sdr.repository(node).records


def _sensor_number(node: Node, name: str) -> int:
    return node.sensors.spec(name).number


def test_every_record_has_a_consistent_header_and_unique_ids(node: Node) -> None:
    records = _records(node)
    ids = [int.from_bytes(r[0:2], "little") for r in records]
    assert ids == list(range(1, len(records) + 1))
    for record in records:
        assert record[2] == 0x51
        assert record[4] == len(record) - 5  # the length byte counts what follows the header
        assert record[3] in (0x01, 0x02, 0x12)
    numbers = [r[7] for r in records if r[3] in (0x01, 0x02)]
    assert len(numbers) == len(set(numbers))
    assert records[-1][3] == 0x12  # the BMC's own locator
    assert {r[3] for r in records} == {0x01, 0x02, 0x12}


def test_full_record_layout_of_a_voltage_sensor(node: Node) -> None:
    spec = node.sensors.spec("12V")
    record = next(r for r in _records(node) if r[3] == 0x01 and r[7] == spec.number)
    assert len(record) == 48 + len("12V")
    assert record[5] == 0x20 and record[6] == 0x00  # owned by the BMC, LUN 0
    assert record[12] == 0x02 and record[13] == 0x01  # voltage, threshold
    assert record[20] & 0xC0 == 0x00 and record[21] == 4  # unsigned, volts
    m = record[24] | (record[25] >> 6) << 8
    r_exp = record[29] >> 4
    r_exp = r_exp - 16 if r_exp > 7 else r_exp
    assert (m, r_exp) == (6, -2)  # 0.06 V per count
    unr, uc, unc, lnr, lc, lnc = record[36:42]
    assert [round(v * 0.06, 2) for v in (lnr, lc, lnc, unc, uc, unr)] == [
        10.2, 10.8, 11.4, 12.6, 13.2, 13.8]
    assert record[18] == 0x3F  # all six thresholds readable
    assert record[47] == 0xC0 | 3 and record[48:] == b"12V"


def test_threshold_masks_match_the_thresholds_that_exist(node: Node) -> None:
    spec = node.sensors.spec("FAN1")  # lower critical only
    assertion, deassertion, readable = sdr.threshold_masks(spec)
    assert readable == 0x02
    assert assertion == (1 << 2) | (1 << 13)  # LC going low; LC comparison returned
    assert deassertion == 1 << 2


def test_compact_and_locator_records(node: Node) -> None:
    psu = node.sensors.spec("PSU1 Status")
    record = next(r for r in _records(node) if r[3] == 0x02 and r[7] == psu.number)
    assert record[12] == 0x08 and record[13] == 0x6F  # power supply, sensor-specific
    assert record[20] == 0xC0  # no analog reading
    assert record[31] == 0xC0 | len("PSU1 Status") and record[32:] == b"PSU1 Status"
    locator = _records(node)[-1]
    assert locator[5] == 0x20 and locator[8] == 0x8F
    assert locator[15] == 0xC3 and locator[16:] == b"BMC"


def test_sdr_repository_commands(node: Node) -> None:
    code, info = call(node, NETFN_STORAGE, 0x20)
    count = len(_records(node))
    assert code == 0 and info[0] == 0x51 and struct.unpack_from("<H", info, 1)[0] == count
    timestamp = struct.unpack_from("<I", info, 5)[0]
    assert timestamp == sdr.repository(Node("other", MemoryBackend())).timestamp  # stable
    assert call(node, NETFN_STORAGE, 0x20, b"\x00")[0] == 0xC7
    # walk the repository as a client does: whole records, following "next record ID"
    record_id, seen = 0, []
    while record_id != 0xFFFF:
        code, data = call(node, NETFN_STORAGE, 0x23, struct.pack("<HHBB", 0, record_id, 0,
                                                                 0xFF))
        assert code == 0
        record_id = struct.unpack_from("<H", data)[0]
        seen.append(data[2:])
    assert seen == _records(node)


def test_partial_sdr_reads_need_a_reservation(node: Node) -> None:
    record = _records(node)[0]
    code, header = call(node, NETFN_STORAGE, 0x23, struct.pack("<HHBB", 0, 1, 0, 5))
    assert code == 0 and header[2:] == record[:5]
    assert call(node, NETFN_STORAGE, 0x23, struct.pack("<HHBB", 0, 1, 5, 16))[0] == 0xC5
    reservation = struct.unpack("<H", call(node, NETFN_STORAGE, 0x22)[1])[0]
    code, chunk = call(node, NETFN_STORAGE, 0x23, struct.pack("<HHBB", reservation, 1, 5, 16))
    assert code == 0 and chunk[2:] == record[5:21]
    code, tail = call(node, NETFN_STORAGE, 0x23, struct.pack("<HHBB", reservation, 1, 40, 60))
    assert tail[2:] == record[40:]  # no more than the record holds
    assert call(node, NETFN_STORAGE, 0x23,
                struct.pack("<HHBB", reservation, 1, len(record), 1))[0] == 0xC9
    assert call(node, NETFN_STORAGE, 0x23, struct.pack("<HHBB", 0, 999, 0, 0xFF))[0] == 0xCB
    assert call(node, NETFN_STORAGE, 0x23, b"\x00\x00\x01")[0] == 0xC7
    # the device SDR command serves the same records
    code, same = call(node, NETFN_SENSOR, 0x21, struct.pack("<HHBB", 0, 1, 0, 0xFF))
    assert code == 0 and same[2:] == record


def test_get_sensor_reading_of_threshold_and_discrete_sensors(node: Node) -> None:
    fan = _sensor_number(node, "FAN1")
    code, data = call(node, NETFN_SENSOR, 0x2D, bytes((fan,)))
    assert code == 0 and data[1] & 0xC0 == 0xC0  # events and scanning enabled
    assert 7000 <= data[0] * 40 <= 9000 and data[2] & 0x3F == 0  # spinning, nothing crossed
    node.power(PowerAction.FORCE_OFF)
    code, data = call(node, NETFN_SENSOR, 0x2D, bytes((fan,)))
    # not scanned while the server is off: reading unavailable (ipmitool: no reading, na)
    assert code == 0 and data[1] == 0xE0 and data[2] & 0x3F == 0
    psu = _sensor_number(node, "PSU1 Status")
    assert call(node, NETFN_SENSOR, 0x2D, bytes((psu,)))[1][2] == 0x01  # presence detected
    acpi = call(node, NETFN_SENSOR, 0x2D, bytes((0x80,)))[1]
    assert acpi[2] == 0x20  # S5/G2 soft-off
    assert call(node, NETFN_SENSOR, 0x2D, b"\x7e")[0] == 0xCB
    assert call(node, NETFN_SENSOR, 0x2D, b"")[0] == 0xC7
    assert call(node, NETFN_SENSOR, 0x2D, bytes((fan, 0)))[0] == 0xC7


def test_thresholds_hysteresis_event_enables_and_type(node: Node) -> None:
    volts = _sensor_number(node, "12V")
    code, data = call(node, NETFN_SENSOR, 0x27, bytes((volts,)))
    assert code == 0 and data == bytes((0x3F, 190, 180, 170, 210, 220, 230))
    code, data = call(node, NETFN_SENSOR, 0x25, bytes((volts, 0xFF)))
    assert code == 0 and data == bytes((1, 1))  # 0.06 V
    code, data = call(node, NETFN_SENSOR, 0x29, bytes((volts,)))
    assert code == 0 and data[0] == 0xC0 and struct.unpack_from("<HH", data, 1) == (
        0x0A95, 0x0A95)  # the "away from normal" crossing of each of the six thresholds
    assert call(node, NETFN_SENSOR, 0x2F, bytes((volts,))) == (0, b"\x02\x01")
    psu = _sensor_number(node, "PSU1 Status")
    assert call(node, NETFN_SENSOR, 0x27, bytes((psu,)))[0] == 0xCD
    assert call(node, NETFN_SENSOR, 0x25, bytes((psu, 0xFF)))[0] == 0xCD
    assert call(node, NETFN_SENSOR, 0x2F, bytes((psu,))) == (0, b"\x08\x6f")
    assert call(node, NETFN_SENSOR, 0x27, b"\x7e")[0] == 0xCB
    code, factors = call(node, NETFN_SENSOR, 0x23, bytes((volts, 0)))
    assert code == 0 and factors[0] == 0xFF and factors[1] == 6


def test_device_sdr_info_and_device_id_announce_the_devices(node: Node) -> None:
    code, data = call(node, NETFN_SENSOR, 0x20)
    assert code == 0 and data[0] == len(sdr.repository(node).sensors) and data[1] == 0x01
    code, device = call(node, NETFN_APP, 0x01)
    assert device[5] == 0x8F  # chassis, FRU, SEL, SDR repository, sensor device
    assert not device[1] & 0x80  # no device SDRs: clients use the repository


def test_a_custom_profile_becomes_the_sdr(node: Node) -> None:
    specs = [SensorSpec("Cold", SensorKind.TEMPERATURE, on=-5, off=-20,
                        thresholds=Thresholds(lower_critical=-40), scanning="always")]
    custom = Node("c", MemoryBackend(), sensors=specs)
    record = sdr.repository(custom).records[0]
    assert record[20] & 0xC0 == 0x80  # two's complement readings
    assert record[40] == (-40) & 0xFF
    code, data = call(custom, NETFN_SENSOR, 0x2D, b"\x01")
    assert code == 0 and data[0] == (-20) & 0xFF


# -- FRU --------------------------------------------------------------------------------------
def _field(data: bytes, at: int) -> tuple[str, int]:
    length = data[at] & 0x3F
    return data[at + 1:at + 1 + length].decode("latin-1"), at + 1 + length


def test_fru_image_format(node: Node) -> None:
    image = node_fru(node).encode()
    header = image[:8]
    assert header[0] == 0x01 and sum(header) % 256 == 0
    offsets = [header[i] * 8 for i in (2, 3, 4)]  # chassis, board, product
    assert header[1] == 0 and header[5] == 0
    for offset in offsets:
        length = image[offset + 1] * 8
        area = image[offset:offset + length]
        assert area[0] == 0x01 and sum(area) % 256 == 0 and len(area) == length
    board = offsets[1]
    manufacturer, at = _field(image, board + 6)
    product, at = _field(image, at)
    serial, _ = _field(image, at)
    assert manufacturer == node.identity.manufacturer
    assert product.startswith(node.identity.product)
    assert node.identity.serial in serial
    assert node.uuid.encode() in image[offsets[2]:]
    assert len(image) == offsets[2] + image[offsets[2] + 1] * 8


def test_one_character_fields_are_not_mistaken_for_the_end_marker() -> None:
    image = FruInventory(chassis_part_number="X").encode()
    chassis = image[image[2] * 8:]
    assert chassis[3:6] == b"\xc2X "


def test_fru_commands(node: Node) -> None:
    image = node_fru(node).encode()
    code, info = call(node, NETFN_STORAGE, 0x10, b"\x00")
    assert code == 0 and info == struct.pack("<HB", len(image), 0)
    data, offset = b"", 0
    while offset < len(image):
        code, chunk = call(node, NETFN_STORAGE, 0x11, struct.pack("<BHB", 0, offset, 24))
        assert code == 0 and chunk[0] == len(chunk) - 1
        data += chunk[1:]
        offset += chunk[0]
    assert data == image
    assert call(node, NETFN_STORAGE, 0x10, b"\x01")[0] == 0xCB
    assert call(node, NETFN_STORAGE, 0x11, struct.pack("<BHB", 1, 0, 8))[0] == 0xCB
    assert call(node, NETFN_STORAGE, 0x11, struct.pack("<BHB", 0, len(image), 8))[0] == 0xC9
    assert call(node, NETFN_STORAGE, 0x11, b"\x00\x00")[0] == 0xC7
    assert call(node, NETFN_STORAGE, 0x10, b"")[0] == 0xC7


# -- DCMI -------------------------------------------------------------------------------------
def test_dcmi_power_reading_matches_the_power_sensor(node: Node) -> None:
    code, data = call(node, NETFN_GROUP, 0x02, b"\xdc\x01\x00\x00")
    assert code == 0 and data[0] == 0xDC and len(data) == 18
    current, low, high, average = struct.unpack_from("<HHHH", data, 1)
    sensor = node.sensors.reading("Total Power").value
    assert sensor is not None and abs(current - sensor) <= 1
    assert low <= average <= high and data[17] & 0x40
    assert call(node, NETFN_GROUP, 0x02, b"\xdd\x01\x00\x00")[0] == 0xCC
    assert call(node, NETFN_GROUP, 0x02, b"\xdc\x02\x00\x00")[0] == 0xCC
    assert call(node, NETFN_GROUP, 0x02, b"\xdc")[0] == 0xC7
    assert call(node, NETFN_GROUP, 0x02, b"")[0] == 0xC7


def test_dcmi_capabilities_and_temperatures(node: Node) -> None:
    for parameter in range(1, 6):
        code, data = call(node, NETFN_GROUP, 0x01, bytes((0xDC, parameter)))
        assert code == 0 and data[:4] == b"\xdc\x01\x05\x02"
    assert call(node, NETFN_GROUP, 0x01, b"\xdc\x09")[0] == 0xCC
    code, data = call(node, NETFN_GROUP, 0x07, b"\xdc\x01\x41\x00\x01")
    assert code == 0 and data[1:3] == b"\x02\x02"  # two CPU sensors, both listed
    repo = sdr.repository(node)
    assert struct.unpack_from("<HH", data, 3) == (
        repo.record_id(node.sensors.spec("CPU1 Temp").number),
        repo.record_id(node.sensors.spec("CPU2 Temp").number))
    code, data = call(node, NETFN_GROUP, 0x10, b"\xdc\x01\x40\x00\x01")
    inlet = node.sensors.reading("Inlet Temp").value
    assert code == 0 and data[1:3] == b"\x01\x01" and abs(data[3] - (inlet or 0)) <= 1
    assert call(node, NETFN_GROUP, 0x10, b"\xdc\x01\x99\x00\x01")[0] == 0xCC
