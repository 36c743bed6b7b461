"""Vendor presets: what a node's BMC says it is, so a node can pass for a Dell, HPE, Supermicro
or Lenovo BMC where a client looks (IPMI Get Device ID's manufacturer/product IDs, FRU, Redfish
Manufacturer/Model/FirmwareVersion).

IDs are IANA private enterprise numbers as those vendors' BMCs report them in Get Device ID.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bmc.node import Identity

PRESETS: dict[str, Identity] = {
    "generic": Identity(),
    "dell": Identity(manufacturer="Dell Inc.", product="PowerEdge R650", manufacturer_id=674,
                     product_id=0x0100, firmware_version="6.10"),
    "hpe": Identity(manufacturer="HPE", product="ProLiant DL360 Gen10", manufacturer_id=11,
                    product_id=0x2000, firmware_version="2.78"),
    "supermicro": Identity(manufacturer="Supermicro", product="SYS-1029P-WTR",
                           manufacturer_id=10876, product_id=0x0920, firmware_version="1.73"),
    "lenovo": Identity(manufacturer="Lenovo", product="ThinkSystem SR650",
                       manufacturer_id=19046, product_id=0x0137, firmware_version="8.30"),
}

#: the fields a config may set beside `vendor`
IDENTITY_FIELDS = ("manufacturer", "product", "serial", "manufacturer_id", "product_id",
                   "firmware_version")


def check_vendor(vendor: str) -> str:
    if vendor not in PRESETS:
        raise ValueError(f"unknown vendor {vendor!r}; one of {', '.join(PRESETS)}")
    return vendor


def identity_for(vendor: str, default_serial: str, **overrides: Any) -> Identity:
    """The preset of `vendor` with `overrides` applied (serial: `default_serial` if none)."""
    given = {"serial": default_serial,
             **{k: v for k, v in overrides.items() if v is not None}}
    return replace(PRESETS[check_vendor(vendor)], **given)
