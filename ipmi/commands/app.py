"""Application commands: device identity (IPMI 2.0 section 20)."""

from __future__ import annotations

import struct

from ipmi.commands import NETFN_APP, Context, command

# Get Device ID "additional device support": chassis device, FRU inventory, SEL, SDR
# repository and sensor device (ipmi/commands/storage.py, sensor.py). "Provides device SDRs"
# (device revision bit 7) stays clear: clients read the SDR repository
DEVICE_SUPPORT = 0x80 | 0x08 | 0x04 | 0x02 | 0x01


def _bcd(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


@command(NETFN_APP, 0x01)
def get_device_id(ctx: Context) -> bytes:
    ident = ctx.node.identity
    major, _, minor = ident.firmware_version.partition(".")
    fw_major = int(major) if major.isdigit() else 1
    fw_minor = int(minor[:2]) if minor[:2].isdigit() else 0
    return struct.pack(
        "<BBBBBB", 0x20, 0x01, fw_major & 0x7F, _bcd(fw_minor % 100), 0x02, DEVICE_SUPPORT,
    ) + struct.pack("<I", ident.manufacturer_id)[:3] + struct.pack(
        "<H", ident.product_id) + b"\x00\x00\x00\x00"


def _guid(ctx: Context) -> bytes:
    return ctx.endpoint.guid


@command(NETFN_APP, 0x08)
def get_device_guid(ctx: Context) -> bytes:
    return _guid(ctx)


@command(NETFN_APP, 0x37)
def get_system_guid(ctx: Context) -> bytes:
    return _guid(ctx)


@command(NETFN_APP, 0x04)
def get_self_test_results(ctx: Context) -> bytes:
    return b"\x55\x00"  # no error
