"""The node-level models behind the deeper Redfish services, without HTTP: BIOS, virtual
media URLs, Secure Boot, lockout, tasks, firmware versions, volumes, event filters, and the
PATCH/action checks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from backends.base import BootDevice
from backends.memory import MemoryBackend
from bmc.bios import BiosError
from bmc.firmware import next_version
from bmc.inventory import VolumeError
from bmc.lockout import AccountLockout
from bmc.node import Node, PowerAction
from bmc.secure_boot import SecureBootError
from bmc.tasks import TaskState, TaskStore
from bmc.virtual_media import ImageUrlError, check_image_url, redact
from redfish import odata
from redfish.errors import RedfishError
from redfish.event_service import EventFilter, EventRecord
from redfish.patching import Prop, parse_action, parse_patch


@pytest.fixture
def node() -> Node:
    return Node("node-1", MemoryBackend(power_on=False))


@pytest.mark.parametrize(("url", "protocol"), [
    ("http://10.0.0.1/ipa.iso", "HTTP"), ("https://[fd00::1]:8443/a/b.iso", "HTTPS"),
    ("nfs://server/export/boot.img", "NFS"), ("cifs://server/share/x.iso", "CIFS"),
    ("HTTP://Host.example/x.iso", "HTTP"),
])
def test_good_image_urls(url: str, protocol: str) -> None:
    assert check_image_url(url) == protocol


@pytest.mark.parametrize("url", [
    "", "ftp://host/x.iso", "http://", "http:///x.iso", "http://host", "http://host/",
    "http://host:0/x.iso", "http://host:99999/x.iso", "http://ho st/x.iso", "x.iso",
    "http://host/x.iso\n", "javascript:alert(1)", "http://" + "a" * 3000 + "/x.iso",
])
def test_bad_image_urls(url: str) -> None:
    with pytest.raises(ImageUrlError):
        check_image_url(url)


def test_redact_hides_credentials() -> None:
    assert redact("https://user:secret@host/x.iso") == "https://***@host/x.iso"
    assert redact("http://host/x.iso") == "http://host/x.iso"


def test_bios_pending_until_boot(node: Node) -> None:
    bios = node.bios
    with pytest.raises(BiosError) as caught:
        bios.set_pending({"ProcTurboMode": "Maybe", "Nope": 1, "PowerOnDelay": 999,
                          "MemTest": 1, "SystemModelName": "x", "AssetTag": "t" * 64})
    assert sorted(p.kind for p in caught.value.problems) == \
        ["length", "not-in-list", "range", "read-only", "type", "unknown"]
    assert bios.pending == {}
    bios.set_pending({"ProcTurboMode": "Disabled", "BootMode": "UEFI"})
    node.power(PowerAction.FORCE_OFF)  # no boot: nothing applied
    assert bios.attributes["ProcTurboMode"] == "Enabled"
    node.power(PowerAction.ON)
    assert bios.attributes["ProcTurboMode"] == "Disabled"
    assert bios.attributes["BootMode"] == "UEFI" and node.boot_override.uefi
    assert bios.pending == {} and bios.last_apply is not None
    # BootMode follows the node's boot mode, whoever changes it
    node.set_boot_override(uefi=False)
    assert bios.attributes["BootMode"] == "Legacy"
    bios.reset_to_defaults()
    assert bios.pending == {"ProcTurboMode": "Enabled"}
    node.power(PowerAction.FORCE_RESTART)
    assert bios.attributes["ProcTurboMode"] == "Enabled"


def test_bios_passwords(node: Node) -> None:
    node.bios.change_password("AdminPassword", "", "s3cret")
    with pytest.raises(ValueError):
        node.bios.change_password("AdminPassword", "wrong", "x")
    with pytest.raises(KeyError):
        node.bios.change_password("RootPassword", "", "x")
    assert node.bios.has_password("AdminPassword")


def test_virtual_media_boot_records_the_image(node: Node) -> None:
    node.virtual_media.insert("Cd", "http://h/a.iso")
    node.set_boot_override(BootDevice.CDROM)
    node.power(PowerAction.ON)
    assert node.last_boot_media == "http://h/a.iso"
    node.power(PowerAction.FORCE_RESTART)  # the one-time override was used up
    assert node.last_boot_media is None
    with pytest.raises(ImageUrlError):
        node.virtual_media.insert("Cd", "http://h/a.iso", transfer_protocol="NFS")


def test_secure_boot_needs_uefi_and_keys(node: Node) -> None:
    with pytest.raises(SecureBootError):
        node.secure_boot.set_enabled(True)
    node.set_boot_override(uefi=True)
    node.secure_boot.set_enabled(True)
    node.power(PowerAction.ON)
    assert node.secure_boot.current_boot == "Enabled"
    node.secure_boot.reset_keys("DeletePK")
    assert node.secure_boot.mode == "SetupMode"
    node.power(PowerAction.FORCE_RESTART)
    assert node.secure_boot.current_boot == "Disabled"


def test_lockout_counts_and_expires() -> None:
    now = [100.0]
    lockout = AccountLockout(threshold=3, duration=10, reset_after=5, clock=lambda: now[0])
    assert not lockout.failed("a") and not lockout.failed("a")
    now[0] += 6  # the counter resets after 5 s without failures
    assert not lockout.failed("a") and not lockout.failed("a")
    assert lockout.failed("a") and lockout.is_locked("a")
    now[0] += 9.9
    assert lockout.is_locked("a")
    now[0] += 0.2
    assert not lockout.is_locked("a")
    lockout.failed("b")
    lockout.succeeded("b")  # a success clears the count
    assert not lockout.failed("b") and not lockout.failed("b")
    assert not AccountLockout(threshold=0).failed("c")


def test_tasks_finish_fail_and_cancel() -> None:
    tasks = TaskStore(limit=2)
    seen: list[str] = []
    tasks.listeners.append(lambda t: seen.append(t.state.value))
    ok = tasks.start("ok", 0.01, lambda: [])

    def broken() -> list:  # type: ignore[type-arg]
        raise RuntimeError("flash failed")

    bad = tasks.start("bad", 0.01, broken)
    slow = tasks.start("slow", 60, lambda: [])
    deadline = time.monotonic() + 5
    while not (tasks.get(bad.id) and tasks.get(bad.id).finished) and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.01)
    assert tasks.get(bad.id).state is TaskState.EXCEPTION  # type: ignore[union-attr]
    assert tasks.cancel(slow.id).state is TaskState.CANCELLED  # type: ignore[union-attr]
    assert tasks.get(ok.id) is None or tasks.get(ok.id).state is TaskState.COMPLETED  # type: ignore[union-attr]
    assert "Running" in seen and "Cancelled" in seen
    tasks.close()


def test_next_version() -> None:
    assert next_version("1.4.2", "http://h/fw/bios-2.7.1.bin") == "2.7.1"
    assert next_version("1.4.2", "http://h/fw/latest.bin") == "1.4.3"
    assert next_version("abc", "http://h/fw/latest.bin") == "abc.1"


def test_volumes(node: Node) -> None:
    volumes = node.inventory.volumes
    with pytest.raises(VolumeError):
        volumes.create("x", "RAID1", ["Disk2"])  # too few drives
    with pytest.raises(VolumeError):
        volumes.create("x", "RAID0", ["Disk0"])  # in use by Volume0
    with pytest.raises(VolumeError):
        volumes.create("x", "RAID0", ["Disk9"])
    created = volumes.create("data", "RAID0", ["Disk2"])
    assert created.capacity_bytes == 1920 * 10**9
    assert volumes.delete(created.id) and not volumes.delete(created.id)


def test_event_filters() -> None:
    record = EventRecord("ResourceEvent.1.4.3.ResourcePoweredOn", "on", origin="/redfish/v1/"
                         "Systems/n", resource_type="ComputerSystem")
    assert EventFilter().matches(record)
    assert EventFilter(registry_prefixes=["ResourceEvent"]).matches(record)
    assert not EventFilter(registry_prefixes=["TaskEvent"]).matches(record)
    for wanted in ("ResourcePoweredOn", "ResourceEvent.ResourcePoweredOn",
                   "ResourceEvent.1.4.3.ResourcePoweredOn"):
        assert EventFilter(message_ids=[wanted]).matches(record)
    assert not EventFilter(message_ids=["TaskEvent.ResourcePoweredOn"]).matches(record)
    assert EventFilter(origin_resources=["/redfish/v1/Systems"],
                       subordinate_resources=True).matches(record)
    assert not EventFilter(origin_resources=["/redfish/v1/Systems"]).matches(record)


def test_parse_patch_reports_everything_at_once() -> None:
    shape = {"A": Prop(int, minimum=0), "B": {"C": Prop(str, ("x", "y"))}}
    current = {"A": 1, "B": {"C": "x"}, "ReadOnly": 2}
    with pytest.raises(RedfishError) as caught:
        parse_patch({"A": -1, "B": {"C": "z"}, "ReadOnly": 3}, shape, current)
    assert [m.message_id for m in caught.value.messages] == \
        ["PropertyValueOutOfRange", "PropertyValueNotInList", "PropertyNotWritable"]
    patch = parse_patch({"A": 2, "Nope": 1, "@odata.etag": "x"}, shape, current)
    assert patch.changes == {"A": 2}
    assert [m.message_id for m in patch.ignored] == ["PropertyUnknown"]
    with pytest.raises(RedfishError):
        parse_patch({"A": True}, shape, current)  # a bool is not a number here
    with pytest.raises(RedfishError) as caught:
        parse_action({"X": 1}, "#A.B", {"Y": Prop(str, required=True)})
    assert [m.message_id for m in caught.value.messages] == \
        ["ActionParameterUnknown", "ActionParameterMissing"]


def test_every_schema_version_exists_in_the_dmtf_bundle() -> None:
    csdl = Path(__file__).resolve().parents[3] / "shared" / "redfish-schema" / "csdl"
    if not csdl.is_dir():  # CI always has ../shared beside the clone: there it must be
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"no {csdl}")
    for name, version in {**odata.SCHEMAS, **odata.EMBEDDED_SCHEMAS}.items():
        text = (csdl / f"{name}_v1.xml").read_text()
        if version:
            assert f'Namespace="{name}.{version}"' in text, (name, version)
