"""Sensor/Event commands (NetFn 04h, IPMI 2.0 section 35): readings, thresholds, hysteresis,
event enables, and the device SDR commands (the same records as the SDR repository).
"""

from __future__ import annotations

from ipmi import sdr
from ipmi.commands import (
    CC_ILLEGAL_FOR_SENSOR,
    CC_NOT_PRESENT,
    NETFN_SENSOR,
    Context,
    IpmiError,
    command,
)
from ipmi.commands.storage import read_sdr

#: Get Sensor Reading byte 2: event messages enabled, sensor scanning enabled
_ENABLED = 0xC0
#: ... of a sensor not scanned while the server is off: reading/state unavailable (bit 5),
#: the enables as configured, as OpenBMC and Supermicro BMCs answer for host-powered sensors:
#: ipmitool shows "no reading" / "na", freeipmi "N/A"
_UNAVAILABLE = 0x80 | 0x40 | 0x20


def _sensor(ctx: Context) -> sdr.SensorRef:
    """The sensor the request names in its first byte; CBh if there is none."""
    number = ctx.need(1)[0]
    ref = sdr.repository(ctx.node).sensors.get(number)
    if ref is None:
        raise IpmiError(CC_NOT_PRESENT)
    return ref


def _threshold_sensor(ctx: Context) -> sdr.SensorRef:
    ref = _sensor(ctx)
    if not ref.threshold:
        raise IpmiError(CC_ILLEGAL_FOR_SENSOR)
    return ref


@command(NETFN_SENSOR, 0x2D)
def get_sensor_reading(ctx: Context) -> bytes:
    ref = _sensor(ctx)
    ctx.need(1, 1)
    found = ctx.node.sensors.by_number(ref.number) if ref.spec is not None else None
    if ref.threshold:
        assert found is not None and ref.spec is not None and ref.spec.scale is not None
        _, reading = found
        if reading.value is None:
            return bytes((0x00, _UNAVAILABLE, 0xC0, 0x80))
        # byte 4: reserved bits of threshold sensors read as 1 (table 35-15)
        return bytes((ref.spec.scale.to_raw(reading.value), _ENABLED,
                      0xC0 | sdr.threshold_status(reading.asserted), 0x80))
    if found is None:
        ctx.node.sensors.poll()  # brings the power state the event sensors show up to date
    if found is not None and not found[1].scanning:
        return bytes((0x00, _UNAVAILABLE, 0x00, 0x80))
    states = sdr.discrete_states(ctx.node, ref)
    return bytes((0x00, _ENABLED, states & 0xFF, 0x80 | (states >> 8) & 0x7F))


@command(NETFN_SENSOR, 0x27)
def get_sensor_thresholds(ctx: Context) -> bytes:
    ref = _threshold_sensor(ctx)
    ctx.need(1, 1)
    spec = ref.spec
    assert spec is not None and spec.scale is not None
    _, _, readable = sdr.threshold_masks(spec)
    values = dict(spec.thresholds.items())
    # response order: LNC, LC, LNR, UNC, UC, UNR (table 35-9); unreadable ones as 0
    order = ("lower_non_critical", "lower_critical", "lower_non_recoverable",
             "upper_non_critical", "upper_critical", "upper_non_recoverable")
    return bytes((readable,)) + bytes(
        spec.scale.to_raw(values[name]) if name in values else 0 for name in order)


@command(NETFN_SENSOR, 0x25)
def get_sensor_hysteresis(ctx: Context) -> bytes:
    ref = _threshold_sensor(ctx)
    ctx.need(2, 2)  # sensor number, reserved (FFh)
    spec = ref.spec
    assert spec is not None and spec.scale is not None
    raw = min(255, round(spec.hysteresis / spec.scale.step))
    return bytes((raw, raw))


@command(NETFN_SENSOR, 0x29)
def get_sensor_event_enable(ctx: Context) -> bytes:
    ref = _sensor(ctx)
    ctx.need(1, 1)
    if ref.spec is not None and ref.spec.analog:
        assertion, deassertion, _ = sdr.threshold_masks(ref.spec)
        assertion &= 0x0FFF
        deassertion &= 0x0FFF
    else:
        offsets = (ref.event_sensor.offsets if ref.event_sensor is not None
                   else sdr.PSU_OFFSETS)
        assertion = deassertion = sum(1 << o for o in offsets)
    return (bytes((_ENABLED,)) + assertion.to_bytes(2, "little")
            + deassertion.to_bytes(2, "little"))


@command(NETFN_SENSOR, 0x2B)
def get_sensor_event_status(ctx: Context) -> bytes:
    ref = _sensor(ctx)
    ctx.need(1, 1)
    if ref.threshold:
        found = ctx.node.sensors.by_number(ref.number)
        assert found is not None
        if not found[1].scanning:
            return bytes((_UNAVAILABLE,)) + b"\x00\x00\x00\x00"
        # an asserted lower threshold is its "going low" event, an upper one "going high"
        bits = sum(1 << sdr.EVENT_BIT[name] for name in found[1].asserted)
    else:
        ctx.node.sensors.poll()
        bits = sdr.discrete_states(ctx.node, ref)
    return bytes((_ENABLED,)) + bits.to_bytes(2, "little") + b"\x00\x00"


@command(NETFN_SENSOR, 0x2F)
def get_sensor_type(ctx: Context) -> bytes:
    ref = _sensor(ctx)
    ctx.need(1, 1)
    return bytes((ref.sensor_type, ref.event_type))


@command(NETFN_SENSOR, 0x23)
def get_sensor_reading_factors(ctx: Context) -> bytes:
    ref = _threshold_sensor(ctx)
    ctx.need(2, 2)  # sensor number, reading byte
    spec = ref.spec
    assert spec is not None and spec.scale is not None
    record = sdr.full_record(0, spec)
    # linear sensors: the factors hold for every reading, so "next reading" is FFh
    return b"\xff" + record[24:30]


# -- device SDRs: the BMC's own sensors, the same records as its repository ------------------
@command(NETFN_SENSOR, 0x20)
def get_device_sdr_info(ctx: Context) -> bytes:
    ctx.need(0, 1)
    repo = sdr.repository(ctx.node)
    count_sdrs = bool(ctx.data and ctx.data[0] & 0x01)
    count = len(repo.records) if count_sdrs else len(repo.sensors)
    # static sensor population on LUN 0, then the change indicator (the repository timestamp)
    return bytes((min(count, 0xFF), 0x01)) + repo.timestamp.to_bytes(4, "little")


@command(NETFN_SENSOR, 0x22)
def reserve_device_sdr_repository(ctx: Context) -> bytes:
    ctx.need(0, 0)
    return sdr.repository(ctx.node).reserve().to_bytes(2, "little")


@command(NETFN_SENSOR, 0x21)
def get_device_sdr(ctx: Context) -> bytes:
    return read_sdr(ctx)
