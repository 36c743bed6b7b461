"""DCMI 1.5 commands (NetFn 2Ch, group extension DCh): capabilities, power reading, the
temperature sensors and the management controller identifier string. Every request and
response starts with the group extension byte DCh.

Power *limiting* (Get/Set/Activate Power Limit) is not implemented, so the capabilities do not
advertise DCMI power management; Get Power Reading is answered all the same (clients such as
`ipmitool dcmi power reading` ask without looking).
"""

from __future__ import annotations

import struct
import threading
import weakref
from typing import TYPE_CHECKING

from bmc.users import Privilege
from ipmi.commands import (
    CC_INVALID_DATA_FIELD,
    CC_NOT_PRESENT,
    CC_PARAM_OUT_OF_RANGE,
    CC_REQ_DATA_LEN_INVALID,
    NETFN_GROUP,
    Context,
    IpmiError,
    command,
)

if TYPE_CHECKING:
    from bmc.node import Node
    from bmc.sensors import SensorSpec

# bmc.sensors and ipmi.sdr are imported where used: clients probe NetFn 2Ch (PICMG, VITA) in
# their first session, and answering "invalid command" must not wait for the sensor model

DCMI = 0xDC
SPEC_VERSION = (0x01, 0x05)  # DCMI 1.5
PARAMETER_REVISION = 0x02
MODE_SYSTEM_POWER = 0x01
POWER_ACTIVE = 0x40  # power reading state: measurement active
TEMPERATURE = 0x01  # DCMI sensor type
#: DCMI entity IDs and the IPMI entity IDs they stand for (DCMI 1.5 table 6-14)
ENTITIES = {0x40: 0x37, 0x41: 0x03, 0x42: 0x07,  # inlet, CPU, baseboard
            0x37: 0x37, 0x03: 0x03, 0x07: 0x07}
MAX_PER_RESPONSE = 8


def _request(ctx: Context, length: int) -> bytes:
    """The request data after checking its length and group extension byte."""
    data = ctx.data
    if len(data) < 1 or len(data) < length:
        raise IpmiError(CC_REQ_DATA_LEN_INVALID)
    if data[0] != DCMI:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    return data


def _power_sensor(ctx: Context) -> SensorSpec | None:
    from bmc.sensors import SensorKind

    return next((s for s in ctx.node.sensors.specs if s.kind is SensorKind.POWER), None)


def _capability(ctx: Context, parameter: int) -> bytes:
    match parameter:
        case 0x01:  # supported capabilities: identification, SEL, chassis power,
            # temperature monitoring; no optional ones (no power limiting); primary LAN
            return bytes((0x0F, 0x00, 0x08))
        case 0x02:  # SEL: entry count and automatic rollover; GUID; temperatures monitored
            capacity = min(ctx.node.sel.capacity, 0x0FFF) | 0x8000
            return struct.pack("<HBB", capacity, 0x01, 0x07)
        case 0x03:  # power management at the BMC (slave address 20h), channel 0
            return bytes((0x40, 0x00))
        case 0x04:  # out-of-band access: primary LAN channel 1, no secondary LAN or serial
            return bytes((0x01, 0xFF, 0xFF))
        case 0x05:  # enhanced power statistics: no rolling averages
            return bytes((0x00,))
    raise IpmiError(CC_INVALID_DATA_FIELD)


@command(NETFN_GROUP, 0x01)
def get_dcmi_capability_info(ctx: Context) -> bytes:
    data = _request(ctx, 2)
    return bytes((DCMI, *SPEC_VERSION, PARAMETER_REVISION)) + _capability(ctx, data[1])


@command(NETFN_GROUP, 0x02)
def get_power_reading(ctx: Context) -> bytes:
    data = _request(ctx, 4)
    if data[1] != MODE_SYSTEM_POWER:  # enhanced statistics are not offered
        raise IpmiError(CC_INVALID_DATA_FIELD)
    if _power_sensor(ctx) is None:
        raise IpmiError(CC_NOT_PRESENT)
    now, minimum, maximum, average, period = ctx.node.sensors.power_statistics()
    watts = [max(0, min(0xFFFF, round(v))) for v in (now, minimum, maximum, average)]
    return (bytes((DCMI,)) + struct.pack("<HHHH", *watts)
            + struct.pack("<II", ctx.node.sel.time(), min(int(period * 1000), 0xFFFFFFFF))
            + bytes((POWER_ACTIVE,)))


def _temperatures(ctx: Context, entity: int) -> list[SensorSpec]:
    from bmc.sensors import SensorKind

    ipmi_entity = ENTITIES.get(entity)
    if ipmi_entity is None:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    return [s for s in ctx.node.sensors.specs
            if s.kind is SensorKind.TEMPERATURE and s.entity[0] == ipmi_entity]


def _selected(specs: list[SensorSpec], instance: int, start: int) -> list[SensorSpec]:
    """One instance (1..), or with instance 0 up to 8 from the `start`-th (1-based)."""
    if instance:
        return [s for s in specs if s.entity[1] == instance]
    return specs[max(start, 1) - 1:][:MAX_PER_RESPONSE]


@command(NETFN_GROUP, 0x07)
def get_dcmi_sensor_info(ctx: Context) -> bytes:
    from ipmi import sdr

    data = _request(ctx, 5)
    if data[1] != TEMPERATURE:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    specs = _temperatures(ctx, data[2])
    chosen = _selected(specs, data[3], data[4])
    repo = sdr.repository(ctx.node)
    ids = [repo.record_id(s.number) for s in chosen]
    return bytes((DCMI, len(specs), len(ids))) + b"".join(struct.pack("<H", i) for i in ids)


@command(NETFN_GROUP, 0x10)
def get_temperature_readings(ctx: Context) -> bytes:
    data = _request(ctx, 5)
    if data[1] != TEMPERATURE:
        raise IpmiError(CC_INVALID_DATA_FIELD)
    specs = _temperatures(ctx, data[2])
    chosen = _selected(specs, data[3], data[4])
    readings = {s.name: s for s in ctx.node.sensors.readings()}
    # a sensor not being scanned (the server is off) has no temperature to report
    chosen = [spec for spec in chosen if readings[spec.name].value is not None]
    body = b""
    for spec in chosen:
        value = round(readings[spec.name].value or 0.0)
        sign = 0x80 if value < 0 else 0x00
        body += bytes((sign | min(abs(value), 0x7F), spec.entity[1]))
    return bytes((DCMI, len(specs), len(chosen))) + body


# -- management controller identifier string (DCMI 1.5 section 6.4.6) ------------------------
#: the ID string's room, its null terminator included
MC_ID_SIZE = 64
#: at most this many bytes per Get/Set request
MC_ID_CHUNK = 16


class McId:
    """A node's MC ID string (what the BMC calls itself, e.g. in DHCP): the node name until
    set. A write at offset 0 starts a new string; the string ends at its first null."""

    def __init__(self, name: str) -> None:
        self._lock = threading.Lock()
        self._buffer = bytearray(name.encode("utf-8", "replace")[:MC_ID_SIZE - 1])

    @property
    def value(self) -> bytes:
        with self._lock:
            return bytes(self._buffer).split(b"\x00", 1)[0]

    def write(self, offset: int, data: bytes) -> int:
        """Write `data` at `offset`; the total length written so far (offset + len)."""
        end = offset + len(data)
        if end > MC_ID_SIZE:
            raise IpmiError(CC_PARAM_OUT_OF_RANGE)
        with self._lock:
            if offset == 0:
                self._buffer = bytearray()
            if offset > len(self._buffer):
                raise IpmiError(CC_PARAM_OUT_OF_RANGE)  # a hole in the string
            self._buffer[offset:end] = data
        return end


_MC_IDS: weakref.WeakKeyDictionary[Node, McId] = weakref.WeakKeyDictionary()
_MC_IDS_LOCK = threading.Lock()


def mc_id(node: Node) -> McId:
    with _MC_IDS_LOCK:
        found = _MC_IDS.get(node)
        if found is None:
            found = _MC_IDS[node] = McId(node.name)
        return found


@command(NETFN_GROUP, 0x09)
def get_mc_id_string(ctx: Context) -> bytes:
    data = _request(ctx, 3)
    offset, count = data[1], data[2]
    if count > MC_ID_CHUNK or offset >= MC_ID_SIZE:
        raise IpmiError(CC_PARAM_OUT_OF_RANGE)
    value = mc_id(ctx.node).value
    # the total length does not count the null terminator
    return bytes((DCMI, len(value))) + value[offset:offset + count]


@command(NETFN_GROUP, 0x0A, privilege=Privilege.ADMINISTRATOR)
def set_mc_id_string(ctx: Context) -> bytes:
    data = _request(ctx, 3)
    offset, count = data[1], data[2]
    chunk = data[3:]
    if count > MC_ID_CHUNK or len(chunk) != count:
        raise IpmiError(CC_REQ_DATA_LEN_INVALID if len(chunk) != count
                        else CC_PARAM_OUT_OF_RANGE)
    written = mc_id(ctx.node).write(offset, chunk)
    return bytes((DCMI, written))
