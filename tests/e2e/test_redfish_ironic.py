"""What OpenStack Ironic's redfish driver does, done through the real `sushy` client.

Virtual media boot, BIOS settings applied at reset, Secure Boot, firmware update with a task
monitor, inspection data (CPUs, disks, NICs, RAID), sensors. One in-process RedfishServer per
test on a free loopback port; the node model is checked directly, since that is what IPMI
reads too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
import sushy
from sushy import auth as sushy_auth
from sushy.connector import Connector

from backends.base import BootDevice, PowerState
from backends.memory import MemoryBackend
from bmc.node import Node, PowerAction
from redfish.server import RedfishServer

TIMEOUT = 5
IMAGE = "http://127.0.0.1:8080/images/ironic-python-agent.iso"


@pytest.fixture
def bmc() -> Iterator[tuple[Node, str]]:
    node = Node("node-a", MemoryBackend(power_on=True))
    node.users.add("admin", "password")
    node.firmware.update_seconds = 0.3  # a "flash" a test can wait for
    server = RedfishServer([("127.0.0.1", 0, node)], threads=4)
    server.start()
    try:
        yield node, f"http://127.0.0.1:{server.ports[0]}"
    finally:
        server.stop()


def connect(url: str, seen: list[requests.Response] | None = None) -> sushy.Sushy:
    """sushy as Ironic uses it: session auth, every response appended to `seen`."""
    connector = Connector(url, response_callback=seen.append if seen is not None else None,
                          server_side_retries=1, server_side_retries_delay=0.01,
                          default_request_timeout=TIMEOUT)
    auth = sushy_auth.SessionAuth(username="admin", password="password")
    return sushy.Sushy(url, auth=auth, connector=connector)


def test_virtual_media_boot(bmc: tuple[Node, str]) -> None:
    node, url = bmc
    seen: list[requests.Response] = []
    conn = connect(url, seen)
    system = conn.get_system()
    manager = conn.get_manager()
    media = {m.identity: m for m in manager.virtual_media.get_members()}
    assert set(media) == {"Cd", "USBStick"}
    cd = media["Cd"]
    assert sushy.VIRTUAL_MEDIA_CD in cd.media_types and not cd.inserted

    cd.insert_media(IMAGE, inserted=True, write_protected=True)
    cd.refresh()
    assert (cd.image, cd.inserted, cd.write_protected) == (IMAGE, True, True)
    assert cd.image_name == "ironic-python-agent.iso"
    assert node.virtual_media.get("Cd").transfer_protocol == "HTTP"  # type: ignore[union-attr]

    # boot once from the virtual CD, in UEFI mode (PATCH with If-Match), then reset
    system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_CD,
                                   enabled=sushy.BOOT_SOURCE_ENABLED_ONCE,
                                   mode=sushy.BOOT_SOURCE_MODE_UEFI)
    system.reset_system(sushy.RESET_FORCE_RESTART)
    assert node.last_boot_media == IMAGE
    assert node.backend.last_boot_device is BootDevice.CDROM  # type: ignore[attr-defined]
    system.refresh()
    assert system.boot.enabled == sushy.BOOT_SOURCE_ENABLED_DISABLED  # the "once" was used

    cd.eject_media()
    cd.refresh()
    assert cd.image is None and not cd.inserted
    system.reset_system(sushy.RESET_FORCE_RESTART)
    assert node.last_boot_media is None  # booted from the default order, no media
    patches = [r for r in seen if r.request.method == "PATCH"]
    assert patches and all(r.request.headers.get("If-Match") for r in patches)
    assert all(r.status_code < 400 for r in seen)


def test_sushy_retries_insert_media_as_quirky_bmcs_want(bmc: tuple[Node, str]) -> None:
    """Some BMCs want TransferProtocolType, then TransferMethod: sushy retries with them."""
    node, url = bmc
    node.virtual_media.require_transfer_protocol = True
    node.virtual_media.require_transfer_method = True
    seen: list[requests.Response] = []
    cd = connect(url, seen).get_manager().virtual_media.get_member(
        "/redfish/v1/Managers/BMC/VirtualMedia/Cd")
    cd.insert_media(IMAGE)
    inserts = [r for r in seen if r.request.method == "POST" and "InsertMedia" in r.url]
    assert [r.status_code for r in inserts] == [400, 400, 204]
    assert b'"TransferMethod": "Stream"' in inserts[-1].request.body  # type: ignore[operator]
    slot = node.virtual_media.get("Cd")
    assert slot is not None and slot.image == IMAGE and slot.transfer_method == "Stream"


@pytest.mark.parametrize("image", [
    "ftp://example.com/x.iso", "http://", "http:///x.iso", "not a url", "http://h:99999/x.iso",
    "file:///etc/passwd", "http://host/", "http://bad host/x.iso",
])
def test_bad_image_url_is_a_400_with_a_reason(bmc: tuple[Node, str], image: str) -> None:
    node, url = bmc
    cd = connect(url).get_manager().virtual_media.get_member(
        "/redfish/v1/Managers/BMC/VirtualMedia/Cd")
    with pytest.raises(sushy.exceptions.BadRequestError) as caught:
        cd.insert_media(image)
    assert "ActionParameterValueFormatError" in str(caught.value)
    assert node.virtual_media.get("Cd").image is None  # type: ignore[union-attr]
    # the PATCH way says why too
    response = requests.patch(f"{url}/redfish/v1/Managers/BMC/VirtualMedia/Cd",
                              json={"Image": image, "Inserted": True}, auth=("admin", "password"),
                              timeout=TIMEOUT)
    assert response.status_code == 400
    assert "PropertyValueFormatError" in response.text


def test_virtual_media_patch_insert_and_eject(bmc: tuple[Node, str]) -> None:
    node, url = bmc
    uri = f"{url}/redfish/v1/Managers/BMC/VirtualMedia/USBStick"
    auth = ("admin", "password")
    etag = requests.get(uri, auth=auth, timeout=TIMEOUT).headers["ETag"]
    response = requests.patch(uri, json={"Image": "nfs://files/boot.img", "Inserted": True,
                                         "WriteProtected": False},
                              headers={"If-Match": etag}, auth=auth, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.json()["TransferProtocolType"] == "NFS"
    node.set_boot_override(BootDevice.FLOPPY)
    node.power(PowerAction.FORCE_RESTART)
    assert node.last_boot_media == "nfs://files/boot.img"
    # a stale ETag changes nothing
    stale = requests.patch(uri, json={"Image": None, "Inserted": False},
                           headers={"If-Match": etag}, auth=auth, timeout=TIMEOUT)
    assert stale.status_code == 412
    response = requests.patch(uri, json={"Image": None, "Inserted": False}, auth=auth,
                              timeout=TIMEOUT)
    assert response.status_code == 200 and response.json()["Image"] is None


def test_bios_settings_apply_at_reset(bmc: tuple[Node, str]) -> None:
    node, url = bmc
    seen: list[requests.Response] = []
    system = connect(url, seen).get_system()
    bios = system.bios
    assert bios.attributes["ProcTurboMode"] == "Enabled"
    assert bios.attributes["BootMode"] == "Legacy"  # the node's boot mode
    assert sushy.APPLY_TIME_ON_RESET in bios.supported_apply_times

    bios.set_attributes({"ProcTurboMode": "Disabled", "SriovGlobalEnable": "Enabled",
                         "BootMode": "UEFI", "PowerOnDelay": 30})
    bios.refresh()
    assert bios.pending_attributes == {"ProcTurboMode": "Disabled",
                                       "SriovGlobalEnable": "Enabled", "BootMode": "UEFI",
                                       "PowerOnDelay": 30}
    assert bios.attributes["ProcTurboMode"] == "Enabled"  # not before the reset
    assert bios.update_status.status == sushy.resources.settings.NO_UPDATES

    system.reset_system(sushy.RESET_FORCE_RESTART)
    bios.refresh()
    assert bios.attributes["ProcTurboMode"] == "Disabled"
    assert bios.attributes["SriovGlobalEnable"] == "Enabled"
    assert bios.attributes["BootMode"] == "UEFI"
    assert node.boot_override.uefi  # BootMode is the node's boot mode
    bios._pending_settings_resource.refresh()
    assert bios.pending_attributes == {}
    assert bios.update_status.status == sushy.resources.settings.UPDATE_SUCCESS
    # sushy sent the settings ETag it was given, and the service accepted it
    patches = [r for r in seen if r.request.method == "PATCH"]
    assert [r.status_code for r in patches] == [200]
    assert patches[0].request.headers["If-Match"]

    # a bad value: 400, nothing pending
    with pytest.raises(sushy.exceptions.BadRequestError) as caught:
        bios.set_attributes({"ProcTurboMode": "Sometimes", "NoSuchSetting": 1})
    assert "PropertyValueNotInList" in str(caught.value)
    assert "PropertyUnknown" in str(caught.value)
    assert node.bios.pending == {}

    bios.reset_bios()
    assert node.bios.pending["ProcTurboMode"] == "Enabled"
    node.power(PowerAction.POWER_CYCLE)  # applied whichever protocol resets the node
    assert node.bios.attributes["ProcTurboMode"] == "Enabled"
    assert node.bios.attributes["SriovGlobalEnable"] == "Disabled"

    bios.change_password("new-secret", "", "AdminPassword")
    assert node.bios.has_password("AdminPassword")
    with pytest.raises(sushy.exceptions.BadRequestError):
        bios.change_password("other", "wrong-old", "AdminPassword")


def test_bios_attribute_registry(bmc: tuple[Node, str]) -> None:
    _, url = bmc
    conn = connect(url)
    registry = conn.get_system().bios.get_attribute_registry()
    assert registry is not None
    names = {a.name for a in registry.registry_entries.attributes}
    assert {"BootMode", "ProcTurboMode", "SriovGlobalEnable", "EmbeddedSata"} <= names


def test_secure_boot(bmc: tuple[Node, str]) -> None:
    node, url = bmc
    system = connect(url).get_system()
    secure_boot = system.secure_boot
    assert secure_boot.enabled is False
    assert secure_boot.current_boot == sushy.SECURE_BOOT_DISABLED
    with pytest.raises(sushy.exceptions.BadRequestError):
        secure_boot.set_enabled(True)  # Legacy boot mode: the firmware refuses
    system.set_system_boot_options(mode=sushy.BOOT_SOURCE_MODE_UEFI)
    secure_boot.set_enabled(True)
    secure_boot.refresh()
    assert secure_boot.enabled is True
    assert secure_boot.current_boot == sushy.SECURE_BOOT_DISABLED  # until the next boot
    system.reset_system(sushy.RESET_FORCE_RESTART)
    secure_boot.refresh()
    assert secure_boot.current_boot == sushy.SECURE_BOOT_ENABLED
    assert secure_boot.mode == sushy.SECURE_BOOT_MODE_DEPLOYED

    assert sushy.SECURE_BOOT_RESET_KEYS_DELETE_ALL in \
        secure_boot.get_allowed_reset_keys_values()
    secure_boot.reset_keys(sushy.SECURE_BOOT_RESET_KEYS_DELETE_ALL)
    secure_boot.refresh()
    assert secure_boot.mode == sushy.SECURE_BOOT_MODE_SETUP
    node.power(PowerAction.FORCE_RESTART)
    secure_boot.refresh()
    assert secure_boot.current_boot == sushy.SECURE_BOOT_DISABLED  # no keys, no verification
    secure_boot.reset_keys(sushy.SECURE_BOOT_RESET_KEYS_TO_DEFAULT)
    secure_boot.set_enabled(False)
    assert not node.secure_boot.enabled


def test_firmware_update_with_a_task_monitor(bmc: tuple[Node, str]) -> None:
    node, url = bmc
    conn = connect(url)
    update = conn.get_update_service()
    inventory = {c.identity: c for c in update.firmware_inventory.get_members()}
    assert inventory["BIOS"].version == "1.4.2"
    monitor = update.simple_update("http://127.0.0.1:8080/fw/bios-2.7.1.bin",
                                   targets=["/redfish/v1/UpdateService/FirmwareInventory/BIOS"],
                                   transfer_protocol="HTTP")
    assert monitor.task_monitor_uri.startswith("/redfish/v1/TaskService/TaskMonitors/")
    assert monitor.is_processing
    # what Ironic does: keep the URI, poll a fresh monitor until it is done, read the task
    deadline = time.monotonic() + 10
    while conn.get_task_monitor(monitor.task_monitor_uri).is_processing:
        assert time.monotonic() < deadline, "the update task never finished"
        time.sleep(0.1)
    task = conn.get_task_monitor(monitor.task_monitor_uri).get_task()
    assert task.task_state == sushy.TASK_STATE_COMPLETED
    assert task.task_status == sushy.HEALTH_OK
    assert task.percent_complete == 100
    inventory["BIOS"].refresh()
    assert inventory["BIOS"].version == "2.7.1"
    system = conn.get_system()
    assert system.bios_version == "2.7.1"
    tasks = conn.get_task_service().tasks.get_members()
    assert [t.identity for t in tasks] == [task.identity]

    # the BMC's own firmware: the Manager and IPMI's Get Device ID show it afterwards
    monitor = update.simple_update("https://127.0.0.1:8443/fw/bmc-3.12.0.bin",
                                   targets=["/redfish/v1/Managers/BMC"],
                                   transfer_protocol="HTTPS")
    monitor.wait(10)
    assert node.identity.firmware_version == "3.12"
    assert conn.get_manager().firmware_version == "3.12"

    with pytest.raises(sushy.exceptions.BadRequestError):
        update.simple_update("gopher://x/fw.bin")


def test_inspection_data(bmc: tuple[Node, str]) -> None:
    node, url = bmc
    system = connect(url).get_system()
    assert system.manufacturer and system.bios_version == "1.4.2"
    assert system.memory_summary.size_gib == 256
    summary = system.processors.summary
    # sushy's "count" is the number of threads, as Ironic reports CPUs
    assert summary.count == 64 and summary.architecture == sushy.PROCESSOR_ARCH_x86
    cpu = system.processors.get_members()[0]
    assert cpu.total_threads == 32 and cpu.total_cores == 16
    nics = system.ethernet_interfaces.summary
    assert set(nics) == {nic.mac for nic in node.inventory.nics}
    assert all(state == sushy.STATE_ENABLED for state in nics.values())
    sizes = system.simple_storage.disks_sizes_bytes
    assert sizes == sorted(d.capacity_bytes for d in node.inventory.drives)
    (storage,) = system.storage.get_members()
    assert len(storage.drives) == 3
    assert storage.drives[0].media_type == "SSD"
    (volume,) = storage.volumes.get_members()
    assert volume.raid_type == sushy.RAIDType.RAID1
    # Ironic's RAID: create a volume, then delete it
    new = storage.volumes.create({"RAIDType": "RAID0", "CapacityBytes": 10**9, "Links": {
        "Drives": [{"@odata.id": "/redfish/v1/Chassis/node-a/Drives/Disk2"}]}})
    assert new is not None and new.raid_type == sushy.RAIDType.RAID0
    assert [v.raid_type for v in node.inventory.volumes.all()] == ["RAID1", "RAID0"]
    new.delete()
    assert [v.id for v in node.inventory.volumes.all()] == ["Volume0"]
    assert {c.identity for c in storage.storage_controllers} or storage.controllers


def test_sensors_match_the_node_model(bmc: tuple[Node, str]) -> None:
    node, url = bmc
    chassis = connect(url).get_chassis()
    thermal = chassis.thermal
    names = {t.name for t in thermal.temperatures}
    assert names == {s.name for s in node.sensors.readings() if s.unit == "Cel"}
    cpu = next(t for t in thermal.temperatures if t.name == "CPU1 Temp")
    assert cpu.upper_threshold_critical == node.sensors.spec("CPU1 Temp").thresholds \
        .upper_critical
    assert all(f.reading > 1000 and f.reading_units.value == "RPM" for f in thermal.fans)
    power = chassis.power
    assert power.power_supplies and all(p.power_capacity_watts for p in power.power_supplies)
    node.power(PowerAction.FORCE_OFF)
    thermal.refresh()
    # the fans stop with the server, which no longer scans them: no reading, StandbyOffline
    assert all(f.reading is None for f in thermal.fans)
    assert all(f.status.state == sushy.STATE_STANDBYOFFLINE for f in thermal.fans)
    assert node.power_state is PowerState.OFF
