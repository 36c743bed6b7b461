"""The libvirt backend against libvirt's own test driver (`test:///default`, in this process):
power, boot order and mode in the domain XML, lifecycle events from outside, virtual media,
settings, a shared connection; and its XML edits on their own."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backends import BackendError, BootDevice, BootMode, PowerState, create_backend
from backends import libvirt_xml as dx
from backends.base import BackendRefused
from backends.libvirt import LibvirtBackend
from backends.libvirt_media import local_path
from tests.libvirt_env import Domains, fake_domain_xml, unique_name

URI = "test:///default"
WAIT = 10.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def domains() -> Iterator[Domains]:
    doms = Domains(URI)
    yield doms
    doms.cleanup()


class Node:
    """A backend as the node model drives it, recording its power reports."""

    def __init__(self, domain: str, **settings: object) -> None:
        self.backend = create_backend("libvirt", {"domain": domain, "uri": URI, **settings},
                                      "node-x")
        self.reports: list[tuple[PowerState, str]] = []
        self.backend.on_power_change = lambda state, why: self.reports.append((state, why))
        # as the node's console hub does when the node is built (it waits for the first look)
        self.console = bytearray()
        self.has_console = self.backend.attach_console(self.console.extend)

    def __enter__(self) -> LibvirtBackend:
        assert isinstance(self.backend, LibvirtBackend)
        return self.backend

    def __exit__(self, *exc: object) -> None:
        self.backend.close()


def os_boot(xml: str) -> list[str]:
    return [b.get("dev", "") for b in dx.parse(xml).findall("os/boot")]


# -- the backend on the test driver ------------------------------------------------------------
def test_power_and_boot_device_in_the_domain_xml(domains: Domains) -> None:
    name = unique_name()
    domains.define(fake_domain_xml(name))
    node = Node(name)
    with node as backend:
        assert backend.power_state() is PowerState.OFF
        backend.power_on(BootDevice.PXE)
        assert backend.power_state() is PowerState.ON
        assert domains.get(name).isActive()
        # the next boot's definition, and the running one, boot the network first, then disk
        assert os_boot(domains.xml(name)) == ["network", "hd"]
        assert os_boot(domains.xml(name, inactive=False)) == ["network", "hd"]
        backend.power_off()
        assert not domains.get(name).isActive()
        backend.power_on(BootDevice.NONE)  # no override: the domain's own order again
        assert os_boot(domains.xml(name)) == ["hd"]
        assert "bmc-emulator" not in domains.xml(name)  # the saved copy is gone with it
        backend.power_cycle(BootDevice.CDROM)
        assert os_boot(domains.xml(name, inactive=False)) == ["cdrom", "hd"]
        backend.reset(BootDevice.CDROM)  # same boot configuration: a plain reset
        backend.nmi()
        assert backend.power_state() is PowerState.ON
    assert node.reports == [], "own actions are not news to the node"


def test_original_boot_order_survives_a_new_backend(domains: Domains) -> None:
    """The saved boot order lives in the domain (metadata), not in the emulator."""
    name = unique_name()
    xml = fake_domain_xml(name).replace("<boot dev='hd'/>", "<boot dev='cdrom'/><boot dev='hd'/>")
    domains.define(xml)
    with Node(name) as backend:
        backend.power_on(BootDevice.PXE)
        backend.power_off()
    assert os_boot(domains.xml(name)) == ["network", "cdrom", "hd"]
    with Node(name) as backend:  # as after a restart of the emulator
        backend.power_on(BootDevice.NONE)
    assert os_boot(domains.xml(name)) == ["cdrom", "hd"]


def test_lifecycle_events_from_outside_are_reported(domains: Domains) -> None:
    name = unique_name()
    domains.define(fake_domain_xml(name))
    node = Node(name)
    with node as backend:
        assert backend.capabilities.power_events
        assert backend.poll_interval is None
        backend.power_on(BootDevice.NONE)
        domains.get(name).destroy()  # as `virsh destroy` would, on another connection
        wait_for(lambda: len(node.reports) == 1, "the power-off report")
        assert node.reports[0][0] is PowerState.OFF
        assert "destroyed" in node.reports[0][1]
        domains.get(name).create()
        wait_for(lambda: len(node.reports) == 2, "the power-on report")
        assert node.reports[1][0] is PowerState.ON
        assert "started" in node.reports[1][1]
        # our own cycle right after: its stop and start are not reported
        backend.power_cycle(BootDevice.NONE)
        backend.power_off()
        time.sleep(0.3)  # events would have arrived by now (same process)
    assert len(node.reports) == 2


def test_capabilities_follow_the_domain(domains: Domains) -> None:
    name = unique_name()
    domains.define(fake_domain_xml(name))
    with Node(name) as backend:
        caps = backend.capabilities
        assert caps.boot_devices == {BootDevice.NONE, BootDevice.PXE, BootDevice.DISK,
                                     BootDevice.CDROM}
        assert caps.boot_modes == {BootMode.LEGACY}  # no loader, no firmware known
        assert not caps.serial_console and not caps.graphical_console
        assert caps.media_slots == ("Cd",)
        assert backend.attach_console(lambda data: None) is False
        assert backend.graphical_console() is None
        # UEFI was not offered: asked for anyway, the boot is refused with a clear reason
        backend.boot_uefi = True
        with pytest.raises(BackendRefused, match="UEFI"):
            backend.power_on(BootDevice.PXE)
        assert backend.power_state() is PowerState.OFF


def test_uefi_domain_boots_legacy_on_request_and_gets_its_firmware_back(
        domains: Domains) -> None:
    name = unique_name()
    loader = ("<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>"
              "<nvram>/var/lib/libvirt/qemu/nvram/x_VARS.fd</nvram>")
    domains.define(fake_domain_xml(name).replace("</type>", f"</type>{loader}"))
    with Node(name) as backend:
        assert backend.capabilities.boot_modes == {BootMode.LEGACY, BootMode.UEFI}
        backend.boot_uefi = False
        backend.power_on(BootDevice.PXE)
        assert dx.parse(domains.xml(name)).find("os/loader") is None
        backend.power_off()
        backend.boot_uefi = True
        backend.power_on(BootDevice.DISK)
        loader_element = dx.parse(domains.xml(name)).find("os/loader")
        assert loader_element is not None and loader_element.get("type") == "pflash"
        backend.power_off()
        backend.boot_uefi = False
        backend.power_on(BootDevice.NONE)  # no override: as defined, UEFI
        assert dx.is_uefi(dx.parse(domains.xml(name)))


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on loopback serving the directory it yields."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_virtual_media_on_a_driver_without_live_changes(domains: Domains, tmp_path: Path,
                                                        web: tuple[str, Path]) -> None:
    name = unique_name()
    domains.define(fake_domain_xml(name))
    iso = tmp_path / "boot.iso"
    iso.write_bytes(b"\0" * 2048)
    url, www = web
    (www / "remote.iso").write_bytes(b"ISO" * 1000)
    with Node(name, image_dir=str(tmp_path / "images")) as backend:
        backend.media_changed("Cd", f"file://{iso}")  # no updateDeviceFlags here: redefined
        assert dx.cdrom_media(domains.xml(name)) == str(iso)
        backend.media_changed("Cd", None)
        assert dx.cdrom_media(domains.xml(name)) is None
        # an http image is fetched onto the (local) hypervisor host
        backend.media_changed("Cd", f"{url}/remote.iso")
        fetched = dx.cdrom_media(domains.xml(name))
        assert fetched is not None and fetched.startswith(str(tmp_path / "images"))
        assert Path(fetched).read_bytes() == b"ISO" * 1000
        with pytest.raises(BackendRefused, match="404"):
            backend.media_changed("Cd", f"{url}/missing.iso")
        with pytest.raises(BackendRefused, match="http\\(s\\) URL, or a local path"):
            backend.media_changed("Cd", "nfs://127.0.0.1/boot.iso")
        with pytest.raises(BackendRefused, match="no such file"):
            backend.media_changed("Cd", str(tmp_path / "missing.iso"))
        with pytest.raises(BackendRefused, match="no media slot 'USBStick'"):
            backend.media_changed("USBStick", str(iso))
        assert dx.cdrom_media(domains.xml(name)) == fetched  # refusals changed nothing


def test_a_domain_without_cdrom_gets_one(domains: Domains, tmp_path) -> None:
    name = unique_name()
    domains.define(fake_domain_xml(name).replace(
        "<disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>", ""))
    iso = tmp_path / "boot.iso"
    iso.write_bytes(b"\0" * 2048)
    with Node(name) as backend:
        assert BootDevice.CDROM not in backend.capabilities.boot_devices
        backend.media_changed("Cd", str(iso))
        assert dx.cdrom_media(domains.xml(name)) == str(iso)
        assert BootDevice.CDROM in backend.capabilities.boot_devices


def test_domain_by_uuid_and_missing_domains(domains: Domains) -> None:
    name = unique_name()
    dom = domains.define(fake_domain_xml(name))
    with Node(dom.UUIDString()) as backend:
        backend.power_on(BootDevice.NONE)
        assert dom.isActive()
    with Node("no-such-domain-" + name) as backend:
        with pytest.raises(BackendError, match="no domain 'no-such-domain-"):
            backend.power_state()
        with pytest.raises(BackendError, match="no domain"):
            backend.power_on(BootDevice.NONE)


def test_one_connection_per_uri_shared_and_released(domains: Domains) -> None:
    a, b = unique_name(), unique_name()
    domains.define(fake_domain_xml(a))
    domains.define(fake_domain_xml(b))
    with Node(a) as first, Node(b) as second:
        assert first._conn is second._conn
        assert first._conn.refs >= 2
        first.power_on(BootDevice.NONE)
        second.power_on(BootDevice.NONE)
        refs = first._conn.refs
    assert first._conn.refs == refs - 2


def test_settings_are_checked() -> None:
    with pytest.raises(TypeError, match="domain"):
        create_backend("libvirt", {"domain": ""})
    with pytest.raises(TypeError):
        create_backend("libvirt", {"uri": URI})  # domain is required
    with pytest.raises(ValueError, match="uri"):
        create_backend("libvirt", {"domain": "x", "uri": "qemu"})
    with pytest.raises(ValueError, match="timeout"):
        create_backend("libvirt", {"domain": "x", "uri": URI, "timeout": 0})
    with pytest.raises(TypeError, match="manage_firmware"):
        create_backend("libvirt", {"domain": "x", "uri": URI, "manage_firmware": "yes"})


def test_unreachable_libvirt_fails_fast_and_never_blocks_the_constructor() -> None:
    started = time.monotonic()
    backend = create_backend("libvirt", {
        "domain": "x", "uri": "qemu+unix:///system?socket=/nonexistent/libvirt-sock",
        "connect_timeout": 0.5})
    assert time.monotonic() - started < 0.5
    try:
        started = time.monotonic()
        with pytest.raises(BackendError, match="not reachable.*reconnecting"):
            backend.power_state()
        assert time.monotonic() - started < 2.0
        # known to be down now: a second node on the URI adds no wait at all
        other = create_backend("libvirt", {
            "domain": "y", "uri": "qemu+unix:///system?socket=/nonexistent/libvirt-sock"})
        try:
            started = time.monotonic()
            assert other.attach_console(lambda data: None)  # unknown yet: offered
            with pytest.raises(BackendError, match="not reachable"):
                other.power_state()
            assert time.monotonic() - started < 0.2
        finally:
            other.close()
        # reports from any thread are fine, and nothing hangs on close
        closer = threading.Thread(target=backend.close)
        closer.start()
        closer.join(5)
        assert not closer.is_alive()
    finally:
        backend.close()


# -- the XML edits -----------------------------------------------------------------------------
PER_DEVICE = """<domain type='kvm'><name>d</name>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><target dev='vda' bus='virtio'/><boot order='2'/></disk>
    <interface type='network'><mac address='52:54:00:00:00:01'/><boot order='1'/></interface>
    <serial type='pty'/>
    <graphics type='vnc' port='5901' listen='0.0.0.0'/>
  </devices></domain>"""


def test_per_device_boot_orders_become_os_boot_and_come_back() -> None:
    xml = dx.set_boot(PER_DEVICE, BootDevice.CDROM, None)
    root = dx.parse(xml)
    assert os_boot(xml) == ["cdrom", "network", "hd"]  # the device, then the old order
    assert root.findall("devices/*/boot") == []  # libvirt refuses both kinds together
    again = dx.set_boot(xml, BootDevice.DISK, None)  # a second override keeps the original
    assert os_boot(again) == ["hd", "network"]
    restored = dx.parse(dx.set_boot(again, BootDevice.NONE, None))
    assert restored.findall("os/boot") == []
    orders = {d.tag: d.find("boot").get("order") for d in restored.find("devices")
              if d.find("boot") is not None}
    assert orders == {"disk": "2", "interface": "1"}
    assert restored.find("metadata") is None


def test_boot_mode_edits_and_signature() -> None:
    uefi = dx.set_boot(PER_DEVICE, BootDevice.PXE, True)
    assert dx.parse(uefi).find("os").get("firmware") == "efi"
    assert dx.boot_signature(uefi) != dx.boot_signature(PER_DEVICE)
    legacy = dx.set_boot(uefi, BootDevice.PXE, False)
    assert dx.parse(legacy).find("os").get("firmware") is None
    assert dx.boot_signature(dx.set_boot(legacy, BootDevice.NONE, None)) == \
        dx.boot_signature(PER_DEVICE)
    with pytest.raises(BackendError, match="BiosSetup"):
        dx.set_boot(PER_DEVICE, BootDevice.BIOS, None)


def test_facts_cdrom_and_vnc() -> None:
    facts = dx.facts(PER_DEVICE)
    assert facts.boot_devices == {BootDevice.NONE, BootDevice.PXE, BootDevice.DISK}
    assert facts.serial_console and facts.vnc and not facts.cdrom and not facts.uefi
    assert dx.vnc_endpoint(PER_DEVICE) == ("0.0.0.0", 5901)
    assert dx.cdrom_disk(PER_DEVICE, "/x.iso") is None
    added = dx.parse(dx.with_cdrom(PER_DEVICE, "/x.iso"))
    cdrom = added.find("devices/disk[@device='cdrom']")
    assert cdrom.find("target").get("bus") == "sata"  # q35 has no IDE
    assert cdrom.find("source").get("file") == "/x.iso"
    assert local_path("file:///srv/a%20b.iso") == "/srv/a b.iso"
    assert local_path("/srv/a.iso") == "/srv/a.iso"
    assert local_path("https://example.com/a.iso") is None  # fetched
    for bad in ("relative.iso", "file://otherhost/a.iso", "cifs://host/share/a.iso"):
        with pytest.raises(BackendRefused):
            local_path(bad)
    with pytest.raises(BackendRefused) as refused:
        local_path("smb://admin:s3cret@host/share/a.iso")
    assert "s3cret" not in str(refused.value)  # never shown or logged
