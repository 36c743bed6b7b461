"""A node configured to pass for a vendor's BMC, as ipmitool, freeipmi and Redfish see it."""

from __future__ import annotations

import requests
from conftest import Launcher
from e2e_helpers import freeipmi, ipmitool


def test_a_dell_node_looks_like_one_through_every_client(emulator_factory: Launcher) -> None:
    bmc = emulator_factory([{"name": "r650", "identity": {"vendor": "dell", "serial": "7XK2"}}])
    node = bmc.nodes[0]

    info = ipmitool(bmc, "mc", "info")
    assert "Manufacturer ID           : 674" in info
    assert "Manufacturer Name         : Dell Inc." in info
    fru = ipmitool(bmc, "fru", "print", "0")
    assert "Product Manufacturer  : Dell Inc." in fru
    assert "Product Name          : PowerEdge R650" in fru
    assert "Product Serial        : 7XK2" in fru

    assert "Dell" in freeipmi(bmc, "bmc-info", "--get-device-id")

    auth = (bmc.username, bmc.password)
    system = requests.get(f"{node.redfish_url}/redfish/v1/Systems/r650", auth=auth,
                          timeout=10).json()
    assert (system["Manufacturer"], system["Model"], system["SerialNumber"]) == \
        ("Dell Inc.", "PowerEdge R650", "7XK2")
    manager = requests.get(f"{node.redfish_url}/redfish/v1/Managers/BMC", auth=auth,
                           timeout=10).json()
    assert manager["FirmwareVersion"] == "6.10"
