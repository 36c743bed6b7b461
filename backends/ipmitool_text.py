"""Reading ipmitool's printed tables: `sensor` (readings, thresholds), `sel elist` (the event
log) and `fru print` (the server's identity).

ipmitool has no machine-readable output, so every parser here takes lines it recognises and
skips the others (a BMC's odd sensor, a line ipmitool words differently): a bad line costs
that line, never the whole read.
"""

from __future__ import annotations

import time
from datetime import datetime

from backends.base import InventoryInfo, LogRecord, SensorKindName, SensorReading

#: `sensor` columns 5..10, in order
_THRESHOLD_COLUMNS = ("lower_non_recoverable", "lower_critical", "lower_non_critical",
                      "upper_non_critical", "upper_critical", "upper_non_recoverable")
#: ipmitool's unit names -> (kind, unit as the model writes it)
_UNITS: dict[str, tuple[SensorKindName, str]] = {
    "degrees c": ("temperature", "Cel"),
    "rpm": ("fan", "RPM"),
    "volts": ("voltage", "V"),
    "watts": ("power", "W"),
}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "na", "0x0", "" ...


def parse_sensors(text: str) -> list[SensorReading]:
    """`ipmitool sensor` lines: name | value | unit | status | lnr | lc | lnc | unc | uc | unr.

    Analog sensors of a known unit become temperature/fan/voltage/power readings; a discrete
    sensor whose name says it is a power supply becomes "psu", any other "other".
    """
    readings: list[SensorReading] = []
    seen: set[str] = set()
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) < 4 or not cells[0] or cells[0] in seen:
            continue
        name, value, unit = cells[0], cells[1], cells[2].lower()
        if unit in _UNITS:
            kind, our_unit = _UNITS[unit]
            thresholds = {key: number for key, cell in zip(_THRESHOLD_COLUMNS, cells[4:10],
                                                            strict=False)
                          if (number := _number(cell)) is not None}
            readings.append(SensorReading(name, kind, _number(value), our_unit, thresholds))
        else:
            lowered = name.lower()
            kind = "psu" if "psu" in lowered or "power supply" in lowered else "other"
            readings.append(SensorReading(name, kind, None, None, {}))
        seen.add(name)
    return readings


def _severity(event: str, asserted: bool) -> str:
    lowered = event.lower()
    if not asserted:
        return "OK"
    if "non-critical" in lowered:
        return "Warning"
    if "critical" in lowered or "non-recoverable" in lowered or "failure" in lowered:
        return "Critical"
    return "OK"


def _timestamp(date: str, clock: str) -> float | None:
    """ipmitool prints the SEL time in the local time zone; "Pre-Init" times (the BMC's clock
    was not set yet) have no date: None."""
    try:
        return datetime.strptime(f"{date} {clock}", "%m/%d/%Y %H:%M:%S").timestamp()
    except ValueError:
        return None


def parse_sel(text: str, sensor_names: list[str] | tuple[str, ...] = (),
              now: float | None = None) -> list[LogRecord]:
    """`ipmitool sel elist` lines: id | date | time | sensor | event | direction [| detail].

    The sensor column is the sensor type and name ("Temperature CPU Temp"); a name in
    `sensor_names` is recognised in it. Entries without a usable time get `now`.
    """
    now = time.time() if now is None else now
    records: list[LogRecord] = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if len(cells) < 5 or not cells[0]:
            continue
        record_id = cells[0].lower()
        try:
            int(record_id, 16)
        except ValueError:
            continue
        sensor_text, event = cells[3], cells[4]
        direction = cells[5] if len(cells) > 5 else ""
        asserted = direction.lower() != "deasserted"
        detail = " | ".join(cell for cell in cells[6:] if cell)
        sensor = next((name for name in sorted(sensor_names, key=len, reverse=True)
                       if sensor_text == name or sensor_text.endswith(" " + name)), None)
        message = f"{sensor_text}: {event}"
        if direction:
            message += f", {direction.lower()}"
        if detail:
            message += f" ({detail})"
        created = _timestamp(cells[1], cells[2])
        records.append(LogRecord(record_id, now if created is None else created,
                                 _severity(event, asserted),  # type: ignore[arg-type]
                                 message, sensor, event, asserted))
    return records


def parse_fru(text: str) -> InventoryInfo | None:
    """`ipmitool fru print N`: "Key : value" lines; the product area first, then the board's
    and chassis' fields. None when nothing is known."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and value.strip():
            fields.setdefault(key.strip().lower(), value.strip())

    def first(*keys: str) -> str | None:
        return next((fields[key] for key in keys if key in fields), None)

    info = InventoryInfo(
        manufacturer=first("product manufacturer", "board mfg"),
        product=first("product name", "board product"),
        serial=first("product serial", "chassis serial", "board serial"),
        part_number=first("product part number", "board part number", "chassis part number"),
    )
    return info if any((info.manufacturer, info.product, info.serial, info.part_number)) \
        else None
