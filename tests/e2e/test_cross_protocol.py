"""One node model, two protocols: what one changes, the other sees at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests
import sushy
from conftest import Emulator
from e2e_helpers import ipmitool
from sushy.resources.system.system import System


@pytest.fixture
def redfish(emulator: Emulator) -> Iterator[Callable[[int], System]]:
    """`redfish(i)`: node i's system through a logged-in sushy client (as Ironic uses it)."""
    clients: dict[int, sushy.Sushy] = {}

    def system(node: int) -> System:
        target = emulator.nodes[node]
        if node not in clients:
            clients[node] = sushy.Sushy(f"{target.redfish_url}/redfish/v1",
                                        username=emulator.username, password=emulator.password)
        return clients[node].get_system(f"/redfish/v1/Systems/{target.name}")

    yield system
    for client in clients.values():
        client._auth.close()  # log out while the server is up (sushy retries a dead one)


def test_power_set_over_ipmi_is_seen_over_redfish_and_back(emulator: Emulator,
        redfish: Callable[[int], System]) -> None:
    ipmitool(emulator, 0, "power", "on")
    assert redfish(0).power_state == sushy.POWER_STATE_ON
    ipmitool(emulator, 0, "power", "off")
    target = emulator.nodes[0]
    body = requests.get(f"{target.redfish_url}/redfish/v1/Systems/{target.name}",
                        auth=(emulator.username, emulator.password), timeout=10).json()
    assert body["PowerState"] == "Off"

    redfish(0).reset_system(sushy.RESET_ON)
    assert ipmitool(emulator, 0, "power", "status") == "Chassis Power is on\n"
    redfish(0).reset_system(sushy.RESET_FORCE_OFF)
    assert ipmitool(emulator, 0, "power", "status") == "Chassis Power is off\n"


def test_boot_set_over_redfish_is_read_by_ipmitool(emulator: Emulator,
        redfish: Callable[[int], System]) -> None:
    system = redfish(1)
    system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_PXE,
                                   enabled=sushy.BOOT_SOURCE_ENABLED_CONTINUOUS,
                                   mode=sushy.BOOT_SOURCE_MODE_UEFI)
    params = ipmitool(emulator, 1, "chassis", "bootparam", "get", "5")
    assert "Force PXE" in params
    assert "Options apply to all future boots" in params
    assert "BIOS EFI boot" in params

    system = redfish(1)
    system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_CD,
                                   enabled=sushy.BOOT_SOURCE_ENABLED_ONCE,
                                   mode=sushy.BOOT_SOURCE_MODE_BIOS)
    params = ipmitool(emulator, 1, "chassis", "bootparam", "get", "5")
    assert "Force Boot from CD/DVD" in params
    assert "Options apply to only next boot" in params
    assert "BIOS PC Compatible (legacy) boot" in params


def test_boot_set_over_ipmi_is_read_by_sushy(emulator: Emulator,
        redfish: Callable[[int], System]) -> None:
    ipmitool(emulator, 1, "chassis", "bootdev", "bios", "options=persistent,efiboot")
    boot = redfish(1).boot
    assert boot.target == sushy.BOOT_SOURCE_TARGET_BIOS_SETUP
    assert boot.enabled == sushy.BOOT_SOURCE_ENABLED_CONTINUOUS
    assert boot.mode == sushy.BOOT_SOURCE_MODE_UEFI

    # Ironic's raw bytes: one-time disk boot, legacy
    ipmitool(emulator, 1, "raw", "0x00", "0x08", "0x05", "0x80", "0x08", "0x00", "0x00",
             "0x00")
    boot = redfish(1).boot
    assert boot.target == sushy.BOOT_SOURCE_TARGET_HDD
    assert boot.enabled == sushy.BOOT_SOURCE_ENABLED_ONCE
    assert boot.mode == sushy.BOOT_SOURCE_MODE_BIOS
