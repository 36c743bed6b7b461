"""Storage commands (NetFn 0Ah, IPMI 2.0 sections 31-34): the SDR repository, the SEL and
FRU inventory device 0.
"""

from __future__ import annotations

import struct

from bmc.fru import node_fru
from bmc.sel import RECORD_SIZE, ReservationCancelled
from bmc.users import Privilege
from ipmi import sdr
from ipmi.commands import (
    CC_INVALID_DATA_FIELD,
    CC_INVALID_RESERVATION,
    CC_NOT_PRESENT,
    CC_PARAM_OUT_OF_RANGE,
    NETFN_STORAGE,
    Context,
    IpmiError,
    command,
)

SEL_VERSION = 0x51
#: "no time" in SEL/SDR timestamps
NO_TIMESTAMP = 0xFFFFFFFF
#: Get SEL Info operation support: delete, reserve, get allocation info
SEL_SUPPORT = 0x08 | 0x02 | 0x01
#: Get SDR Repository Info operation support: reserve, get allocation info (no updates)
SDR_SUPPORT = 0x02 | 0x01
SDR_UNIT = 16  # allocation unit size, bytes
CLEAR_MAGIC = b"CLR"
CLEAR_INITIATE = 0xAA
CLEAR_STATUS = 0x00
ERASE_COMPLETED = 0x01
ENTIRE_RECORD = 0xFF


def _stamp(seconds: int) -> bytes:
    return struct.pack("<I", seconds or NO_TIMESTAMP)


# -- SDR repository ---------------------------------------------------------------------------
@command(NETFN_STORAGE, 0x20)
def get_sdr_repository_info(ctx: Context) -> bytes:
    ctx.need(0, 0)
    repo = sdr.repository(ctx.node)
    return (bytes((sdr.SDR_VERSION,)) + struct.pack("<HH", len(repo.records), repo.free_space)
            + struct.pack("<II", repo.timestamp, repo.timestamp) + bytes((SDR_SUPPORT,)))


@command(NETFN_STORAGE, 0x21)
def get_sdr_repository_allocation_info(ctx: Context) -> bytes:
    ctx.need(0, 0)
    repo = sdr.repository(ctx.node)
    units = sum(-(-len(r) // SDR_UNIT) for r in repo.records)
    largest = max(-(-len(r) // SDR_UNIT) for r in repo.records)
    return struct.pack("<HHHHB", units, SDR_UNIT, 0, 0, largest)


@command(NETFN_STORAGE, 0x22)
def reserve_sdr_repository(ctx: Context) -> bytes:
    ctx.need(0, 0)
    return struct.pack("<H", sdr.repository(ctx.node).reserve())


def read_sdr(ctx: Context) -> bytes:
    """Get SDR / Get Device SDR: (part of) one record and the ID of the next."""
    reservation, record_id, offset, count = struct.unpack("<HHBB", ctx.need(6, 6))
    repo = sdr.repository(ctx.node)
    if offset:  # a partial read needs a reservation (section 33.12)
        try:
            repo.check(reservation)
        except sdr.ReservationError:
            raise IpmiError(CC_INVALID_RESERVATION) from None
    found = repo.get(record_id)
    if found is None:
        raise IpmiError(CC_NOT_PRESENT)
    record, following = found
    if offset >= len(record):
        raise IpmiError(CC_PARAM_OUT_OF_RANGE)
    end = len(record) if count == ENTIRE_RECORD else offset + count
    return struct.pack("<H", following) + record[offset:end]


@command(NETFN_STORAGE, 0x23)
def get_sdr(ctx: Context) -> bytes:
    return read_sdr(ctx)


# -- SEL --------------------------------------------------------------------------------------
@command(NETFN_STORAGE, 0x40)
def get_sel_info(ctx: Context) -> bytes:
    ctx.need(0, 0)
    info = ctx.node.sel.info()
    support = SEL_SUPPORT | (0x80 if info.overflow else 0)
    return (bytes((SEL_VERSION,)) + struct.pack("<HH", info.entries, min(info.free_bytes, 0xFFFF))
            + _stamp(info.last_addition) + _stamp(info.last_erase) + bytes((support,)))


@command(NETFN_STORAGE, 0x41)
def get_sel_allocation_info(ctx: Context) -> bytes:
    ctx.need(0, 0)
    info = ctx.node.sel.info()
    free = info.capacity - info.entries
    return struct.pack("<HHHHB", info.capacity, RECORD_SIZE, free, free, 1)


@command(NETFN_STORAGE, 0x42)
def reserve_sel(ctx: Context) -> bytes:
    ctx.need(0, 0)
    return struct.pack("<H", ctx.node.sel.reserve())


def _check_reservation(ctx: Context, reservation: int) -> None:
    try:
        ctx.node.sel.check_reservation(reservation)
    except ReservationCancelled:
        raise IpmiError(CC_INVALID_RESERVATION) from None


@command(NETFN_STORAGE, 0x43)
def get_sel_entry(ctx: Context) -> bytes:
    reservation, record_id, offset, count = struct.unpack("<HHBB", ctx.need(6, 6))
    if offset:  # only a partial read needs a reservation (section 31.5)
        _check_reservation(ctx, reservation)
    found = ctx.node.sel.get(record_id)
    if found is None:
        raise IpmiError(CC_NOT_PRESENT)
    entry, following = found
    if offset >= RECORD_SIZE:
        raise IpmiError(CC_PARAM_OUT_OF_RANGE)
    end = RECORD_SIZE if count == ENTIRE_RECORD else offset + count
    return struct.pack("<H", following) + entry.raw[offset:end]


@command(NETFN_STORAGE, 0x44, privilege=Privilege.OPERATOR)
def add_sel_entry(ctx: Context) -> bytes:
    record = ctx.need(RECORD_SIZE, RECORD_SIZE)
    try:
        entry = ctx.node.sel.add_record(bytes(record))
    except ValueError:
        raise IpmiError(CC_INVALID_DATA_FIELD) from None
    return struct.pack("<H", entry.record_id)


@command(NETFN_STORAGE, 0x46, privilege=Privilege.OPERATOR)
def delete_sel_entry(ctx: Context) -> bytes:
    reservation, record_id = struct.unpack("<HH", ctx.need(4, 4))
    try:
        deleted = ctx.node.sel.delete(record_id, reservation)
    except ReservationCancelled:
        raise IpmiError(CC_INVALID_RESERVATION) from None
    if deleted is None:
        raise IpmiError(CC_NOT_PRESENT)
    return struct.pack("<H", deleted)


@command(NETFN_STORAGE, 0x47, privilege=Privilege.OPERATOR)
def clear_sel(ctx: Context) -> bytes:
    data = ctx.need(6, 6)
    reservation = struct.unpack_from("<H", data)[0]
    if data[2:5] != CLEAR_MAGIC or data[5] not in (CLEAR_INITIATE, CLEAR_STATUS):
        raise IpmiError(CC_INVALID_DATA_FIELD)
    if data[5] == CLEAR_STATUS:
        # the erase cancelled the reservation the client polls with: accept any here
        return bytes((ERASE_COMPLETED,))  # erasing is instant
    try:
        ctx.node.sel.clear(reservation)
    except ReservationCancelled:
        raise IpmiError(CC_INVALID_RESERVATION) from None
    return bytes((ERASE_COMPLETED,))


@command(NETFN_STORAGE, 0x48)
def get_sel_time(ctx: Context) -> bytes:
    ctx.need(0, 0)
    return struct.pack("<I", ctx.node.sel.time())


@command(NETFN_STORAGE, 0x49, privilege=Privilege.OPERATOR)
def set_sel_time(ctx: Context) -> bytes:
    ctx.node.sel.set_time(struct.unpack("<I", ctx.need(4, 4))[0])
    return b""


@command(NETFN_STORAGE, 0x5C)
def get_sel_time_utc_offset(ctx: Context) -> bytes:
    ctx.need(0, 0)
    return struct.pack("<h", ctx.node.sel.utc_offset)


@command(NETFN_STORAGE, 0x5D, privilege=Privilege.OPERATOR)
def set_sel_time_utc_offset(ctx: Context) -> bytes:
    minutes = struct.unpack("<h", ctx.need(2, 2))[0]
    try:
        ctx.node.sel.set_utc_offset(minutes)
    except ValueError:
        raise IpmiError(CC_PARAM_OUT_OF_RANGE) from None
    return b""


# -- FRU inventory ----------------------------------------------------------------------------
def _fru_image(ctx: Context, device: int) -> bytes:
    if device != 0:  # only the BMC's own FRU device 0 exists
        raise IpmiError(CC_NOT_PRESENT)
    return node_fru(ctx.node).encode()


@command(NETFN_STORAGE, 0x10)
def get_fru_inventory_area_info(ctx: Context) -> bytes:
    image = _fru_image(ctx, ctx.need(1, 1)[0])
    return struct.pack("<HB", len(image), 0x00)  # size; accessed by bytes


@command(NETFN_STORAGE, 0x11)
def read_fru_data(ctx: Context) -> bytes:
    device, offset, count = struct.unpack("<BHB", ctx.need(4, 4))
    image = _fru_image(ctx, device)
    if offset >= len(image):
        raise IpmiError(CC_PARAM_OUT_OF_RANGE)
    chunk = image[offset:offset + count]
    return bytes((len(chunk),)) + chunk
