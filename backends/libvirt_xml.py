"""Domain XML edits for the `libvirt` backend: boot order, firmware, the CD-ROM, what a domain has.

Pure functions on XML text (no libvirt here), so they are tested without a hypervisor.

Boot override, as VirtualBMC does it: every per-device `<boot order=...>` is removed (libvirt
refuses them together with `<os><boot dev=...>`) and `<os>` gets `<boot dev=...>` elements,
the requested device first, then the devices the domain booted from before, so a failed
network boot still falls back to the disk. The boot configuration the domain had before the
first override (its `<os><boot>`s, per-device orders and firmware) is saved in the domain's own
`<metadata>`, so it survives a restart of the emulator; a boot without override (NONE) puts it
back and drops the saved copy.

Boot mode, as sushy-tools does it with firmware autoselection: UEFI is `<os firmware='efi'>`
(libvirt picks the OVMF build and makes the NVRAM file), legacy BIOS is no firmware/loader
(SeaBIOS). A domain defined with its own `<loader>` gets exactly that loader back for UEFI.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from backends.base import BackendError, BackendRefused, BootDevice

#: our `<metadata>` namespace (libvirt keys metadata by namespace URI)
NS = "https://github.com/bmc-emulator/bmc-emulator/libvirt"
ET.register_namespace("bmc", NS)
SAVED = f"{{{NS}}}boot"

#: boot override target -> `<os><boot dev=...>`
BOOT_DEV = {BootDevice.PXE: "network", BootDevice.DISK: "hd", BootDevice.CDROM: "cdrom",
            BootDevice.FLOPPY: "fd"}
#: a device's kind -> the `<os><boot dev>` that boots it (for per-device boot orders)
DISK_DEV = {"disk": "hd", "lun": "hd", "cdrom": "cdrom", "floppy": "fd"}
#: the `<os>` children that make up the firmware choice
FIRMWARE_TAGS = ("loader", "nvram", "firmware")
#: devices that can carry a per-device `<boot order=...>`
BOOTABLE = ("disk", "interface", "hostdev", "redirdev", "filesystem")
X86 = ("i686", "x86_64")


def parse(xml: str) -> ET.Element:
    try:
        return ET.fromstring(xml)
    except ET.ParseError as exc:
        raise BackendError(f"libvirt returned domain XML that does not parse: {exc}") from exc


def serialize(root: ET.Element) -> str:
    return ET.tostring(root, encoding="unicode")


def _os(root: ET.Element) -> ET.Element:
    os_element = root.find("os")
    if os_element is None:
        raise BackendError("the domain XML has no <os> element")
    return os_element


def _devices(root: ET.Element) -> ET.Element:
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    return devices


# -- what a domain has --------------------------------------------------------------------------
@dataclass(frozen=True)
class DomainFacts:
    """What the domain's configuration offers the BMC."""

    boot_devices: frozenset[BootDevice]
    #: defined with UEFI firmware (autoselected or an explicit pflash loader)
    uefi: bool
    #: an x86 guest: SeaBIOS (legacy) is there
    legacy: bool
    serial_console: bool
    vnc: bool
    cdrom: bool
    arch: str
    machine: str
    virt_type: str


def is_uefi(root: ET.Element) -> bool:
    os_element = root.find("os")
    if os_element is None:
        return False
    if os_element.get("firmware") == "efi":
        return True
    loader = os_element.find("loader")
    return loader is not None and (loader.get("type") == "pflash"
                                   or "OVMF" in (loader.text or "")
                                   or "AAVMF" in (loader.text or ""))


def facts(xml: str) -> DomainFacts:
    root = parse(xml)
    devices = root.find("devices")
    kids = list(devices) if devices is not None else []
    disks = {d.get("device", "disk") for d in kids if d.tag == "disk"}
    boot = {BootDevice.NONE}
    if any(d.tag == "interface" for d in kids):
        boot.add(BootDevice.PXE)
    if disks & {"disk", "lun"}:
        boot.add(BootDevice.DISK)
    if "cdrom" in disks:
        boot.add(BootDevice.CDROM)
    if "floppy" in disks:
        boot.add(BootDevice.FLOPPY)
    os_type = root.find("os/type")
    arch = os_type.get("arch", "") if os_type is not None else ""
    saved = _saved(root)  # booting legacy now, but defined with UEFI: it still has UEFI
    return DomainFacts(
        boot_devices=frozenset(boot),
        uefi=is_uefi(root) or (saved is not None and _saved_is_uefi(saved)),
        legacy=arch in X86 or not arch,
        serial_console=any(d.tag in ("serial", "console") for d in kids),
        vnc=any(d.tag == "graphics" and d.get("type") == "vnc" for d in kids),
        cdrom="cdrom" in disks, arch=arch,
        machine=os_type.get("machine", "") if os_type is not None else "",
        virt_type=root.get("type", ""))


# -- boot order ---------------------------------------------------------------------------------
def _device_key(device: ET.Element, index: int) -> str:
    """How a saved per-device boot order finds its device again."""
    if device.tag == "interface":
        mac = device.find("mac")
        if mac is not None and mac.get("address"):
            return f"interface/{mac.get('address')}"
    target = device.find("target")
    if device.tag == "disk" and target is not None and target.get("dev"):
        return f"disk/{target.get('dev')}"
    return f"{device.tag}#{index}"


def _bootable(root: ET.Element) -> list[tuple[str, ET.Element]]:
    devices = root.find("devices")
    if devices is None:
        return []
    return [(_device_key(d, i), d) for i, d in enumerate(devices) if d.tag in BOOTABLE]


def _capture(root: ET.Element) -> ET.Element:
    """The domain's current boot configuration, as a `<bmc:boot>` metadata element."""
    os_element = _os(root)
    saved = ET.Element(SAVED)
    if os_element.get("firmware") is not None:
        saved.set("firmware", os_element.get("firmware", ""))
    for child in os_element:
        if child.tag == "boot" or child.tag in FIRMWARE_TAGS:
            saved.append(copy.deepcopy(child))
    for key, device in _bootable(root):
        for boot in device.findall("boot"):
            entry = ET.SubElement(saved, "device", key=key)
            entry.append(copy.deepcopy(boot))
    return saved


def _saved(root: ET.Element) -> ET.Element | None:
    metadata = root.find("metadata")
    return None if metadata is None else metadata.find(SAVED)


def _store(root: ET.Element, saved: ET.Element | None) -> None:
    metadata = root.find("metadata")
    if metadata is None:
        if saved is None:
            return
        metadata = ET.Element("metadata")
        # libvirt's order does not matter on input, but keep it near the top for readers
        root.insert(3, metadata)
    for old in metadata.findall(SAVED):
        metadata.remove(old)
    if saved is not None:
        metadata.append(saved)
    elif not len(metadata):
        root.remove(metadata)


def _clear_boot(root: ET.Element) -> None:
    os_element = _os(root)
    for boot in os_element.findall("boot"):
        os_element.remove(boot)
    for _, device in _bootable(root):
        for boot in device.findall("boot"):
            device.remove(boot)


def _clear_firmware(os_element: ET.Element) -> None:
    os_element.attrib.pop("firmware", None)
    for tag in FIRMWARE_TAGS:
        for child in os_element.findall(tag):
            os_element.remove(child)


def _os_insert(os_element: ET.Element, child: ET.Element) -> None:
    # libvirt's schema wants <type> first; everything else may follow in any order
    os_element.insert(1 if os_element.find("type") is not None else 0, child)


def _restore_firmware(os_element: ET.Element, saved: ET.Element) -> None:
    _clear_firmware(os_element)
    if saved.get("firmware"):
        os_element.set("firmware", saved.get("firmware", ""))
    for child in reversed([c for c in saved if c.tag in FIRMWARE_TAGS]):
        _os_insert(os_element, copy.deepcopy(child))


def _fallback_order(saved: ET.Element, root: ET.Element) -> list[str]:
    """The `<os><boot dev>` list equivalent to the saved boot configuration."""
    devs = [b.get("dev", "") for b in saved.findall("boot")]
    if devs:
        return devs
    by_key = {key: device for key, device in _bootable(root)}
    ordered = []
    for entry in saved.findall("device"):
        boot = entry.find("boot")
        device = by_key.get(entry.get("key", ""))
        if boot is None or device is None:
            continue
        dev = ("network" if device.tag == "interface"
               else DISK_DEV.get(device.get("device", "disk")) if device.tag == "disk" else None)
        if dev:
            ordered.append((int(boot.get("order", "0") or 0), dev))
    return [dev for _, dev in sorted(ordered)] or ["hd"]


def set_boot(xml: str, device: BootDevice, uefi: bool | None) -> str:
    """The domain XML booting `device` next (NONE: as originally defined), in mode `uefi`
    (None: leave the firmware alone; ignored for NONE, which restores the original firmware)."""
    root = parse(xml)
    os_element = _os(root)
    saved = _saved(root)
    if device is BootDevice.NONE:
        if saved is None:
            return xml  # never overridden: nothing to undo
        _clear_boot(root)
        for boot in reversed(saved.findall("boot")):
            _os_insert(os_element, copy.deepcopy(boot))
        by_key = dict(_bootable(root))
        for entry in saved.findall("device"):
            target = by_key.get(entry.get("key", ""))
            boot = entry.find("boot")
            if target is not None and boot is not None:
                target.append(copy.deepcopy(boot))
        _restore_firmware(os_element, saved)
        _store(root, None)
        return serialize(root)
    dev = BOOT_DEV.get(device)
    if dev is None:
        raise BackendRefused(f"a libvirt domain cannot boot {device.value}")
    if saved is None:
        saved = _capture(root)
        _store(root, saved)
    order = [dev] + [d for d in _fallback_order(saved, root) if d != dev]
    _clear_boot(root)
    for name in reversed(order):
        _os_insert(os_element, ET.Element("boot", dev=name))
    if uefi is not None:
        _set_firmware(os_element, saved, uefi)
    return serialize(root)


def _saved_is_uefi(saved: ET.Element) -> bool:
    """Whether the saved (original) firmware is UEFI."""
    saved_root = ET.Element("domain")
    saved_os = ET.SubElement(saved_root, "os")
    if saved.get("firmware"):
        saved_os.set("firmware", saved.get("firmware", ""))
    saved_os.extend(child for child in saved if child.tag in FIRMWARE_TAGS)
    return is_uefi(saved_root)


def _set_firmware(os_element: ET.Element, saved: ET.Element, uefi: bool) -> None:
    if _saved_is_uefi(saved) == uefi:
        _restore_firmware(os_element, saved)  # the domain's own firmware is the right one
        return
    _clear_firmware(os_element)
    if uefi:
        os_element.set("firmware", "efi")  # libvirt autoselects OVMF and makes the NVRAM


def boot_signature(xml: str) -> tuple[object, ...]:
    """What of a domain's XML decides how it boots: equal signatures boot the same way."""
    root = parse(xml)
    os_element = root.find("os")
    if os_element is None:
        return ()
    devs = tuple(b.get("dev") for b in os_element.findall("boot"))
    per_device = tuple(sorted((key, b.get("order", "")) for key, d in _bootable(root)
                              for b in d.findall("boot")))
    return devs, per_device, is_uefi(root)


# -- the CD-ROM (virtual media) -----------------------------------------------------------------
def _cdrom(root: ET.Element) -> ET.Element | None:
    return next((d for d in _devices(root).findall("disk") if d.get("device") == "cdrom"), None)


def cdrom_disk(xml: str, path: str | None) -> str | None:
    """The domain's first CD-ROM `<disk>` holding `path` (None: empty), for updateDeviceFlags;
    None if the domain has no CD-ROM."""
    disk = _cdrom(parse(xml))
    if disk is None:
        return None
    _set_media(disk, path)
    return serialize(disk)


def _set_media(disk: ET.Element, path: str | None) -> None:
    disk.set("type", "file")
    for source in disk.findall("source"):
        disk.remove(source)
    for driver in disk.findall("driver"):  # a raw ISO: say so, never let qemu probe the format
        driver.set("type", "raw")
    if path is not None:
        source = ET.Element("source", file=path)
        disk.insert(1 if disk.find("driver") is not None else 0, source)
    if disk.find("readonly") is None:
        ET.SubElement(disk, "readonly")


def with_cdrom(xml: str, path: str | None) -> str:
    """The domain XML with `path` in its CD-ROM, adding a CD-ROM drive if it has none (a SATA
    one on q35, which has no IDE, an IDE one otherwise)."""
    root = parse(xml)
    disk = _cdrom(root)
    if disk is None:
        os_type = root.find("os/type")
        machine = os_type.get("machine", "") if os_type is not None else ""
        bus = "sata" if "q35" in machine else "ide"
        used = {t.get("dev") for t in root.findall("devices/disk/target")}
        prefix = "sd" if bus == "sata" else "hd"
        name = next(f"{prefix}{c}" for c in "cdefghijklmnopqrstuvwxyzab" if f"{prefix}{c}"
                    not in used)
        disk = ET.SubElement(_devices(root), "disk", type="file", device="cdrom")
        ET.SubElement(disk, "driver", name="qemu", type="raw")
        ET.SubElement(disk, "target", dev=name, bus=bus)
    _set_media(disk, path)
    return serialize(root)


def cdrom_media(xml: str) -> str | None:
    """The image in the domain's CD-ROM, if any."""
    disk = _cdrom(parse(xml))
    source = disk.find("source") if disk is not None else None
    return source.get("file") if source is not None else None


# -- the graphical console ----------------------------------------------------------------------
def vnc_endpoint(xml: str) -> tuple[str, int] | None:
    """(listen address, port) of a running domain's VNC display (None: none, or not running)."""
    for graphics in parse(xml).findall("devices/graphics"):
        if graphics.get("type") != "vnc":
            continue
        port = int(graphics.get("port", "-1") or -1)
        if port <= 0:
            return None  # not running (autoport), or a socket-only display
        listen = graphics.get("listen")
        element = graphics.find("listen")
        if element is not None and element.get("address"):
            listen = element.get("address")
        return listen or "127.0.0.1", port
    return None
