"""The hardware a simulated server reports: CPUs, memory, NICs, disks and RAID volumes.

A small static profile per node (what out-of-band inspection, e.g. Ironic's, reads over
Redfish). Values are derived from the node name so that every node looks the same each run but
MAC addresses and serial numbers differ between nodes. A later config option can replace the
profile; nothing else in the emulator writes it.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class Processor:
    id: str
    socket: str
    manufacturer: str = "Intel(R) Corporation"
    model: str = "Intel(R) Xeon(R) Silver 4314 CPU @ 2.40GHz"
    architecture: str = "x86"
    instruction_set: str = "x86-64"
    cores: int = 16
    threads: int = 32
    max_speed_mhz: int = 3400


@dataclass(frozen=True)
class Dimm:
    id: str
    locator: str
    capacity_mib: int = 32 * 1024
    speed_mhz: int = 3200
    manufacturer: str = "Samsung"
    part_number: str = "M393A4K40EB3-CWE"
    serial: str = ""


@dataclass(frozen=True)
class Nic:
    id: str
    mac: str
    speed_mbps: int = 25000
    link_up: bool = True


@dataclass(frozen=True)
class Drive:
    id: str
    model: str
    capacity_bytes: int
    media_type: str  # Redfish Drive.MediaType: HDD or SSD
    protocol: str  # Redfish Protocol: SATA, SAS, NVMe
    serial: str = ""
    manufacturer: str = "Seagate"
    revision: str = "CS01"


@dataclass(frozen=True)
class Volume:
    id: str
    name: str
    raid_type: str  # Redfish RAIDType: RAID0, RAID1, ...
    drive_ids: tuple[str, ...]
    capacity_bytes: int


#: RAID level -> (fewest drives, whether the count must be even, usable share of the drives)
RAID_LEVELS = {"RAID0": (1, False, 1.0), "RAID1": (2, False, None), "RAID10": (4, True, 0.5)}


class VolumeError(ValueError):
    """A volume the controller cannot build (drives, RAID level, size)."""


class VolumeStore:
    """The RAID volumes of the controller: the profile's, plus those clients create. Thread-safe.
    """

    def __init__(self, drives: tuple[Drive, ...], volumes: tuple[Volume, ...] = ()) -> None:
        self._drives = {d.id: d for d in drives}
        self._lock = threading.Lock()
        self._volumes = {v.id: v for v in volumes}
        self._ids = itertools.count(len(volumes))

    def all(self) -> list[Volume]:
        with self._lock:
            return list(self._volumes.values())

    def create(self, name: str, raid_type: str, drive_ids: list[str],
               capacity_bytes: int | None = None) -> Volume:
        if raid_type not in RAID_LEVELS:
            raise VolumeError(f"unsupported RAID type {raid_type}")
        fewest, even, share = RAID_LEVELS[raid_type]
        if len(set(drive_ids)) != len(drive_ids) or len(drive_ids) < fewest or (
                even and len(drive_ids) % 2):
            raise VolumeError(f"{raid_type} needs {fewest}{'+ (even)' if even else '+'} "
                              "distinct drives")
        unknown = [d for d in drive_ids if d not in self._drives]
        if unknown:
            raise VolumeError(f"no drive {unknown[0]}")
        sizes = [self._drives[d].capacity_bytes for d in drive_ids]
        usable = min(sizes) if share is None else int(min(sizes) * len(sizes) * share)
        if capacity_bytes is not None and not 0 < capacity_bytes <= usable:
            raise VolumeError(f"at most {usable} bytes fit on these drives")
        with self._lock:
            used = {d for v in self._volumes.values() for d in v.drive_ids}
            if used & set(drive_ids):
                raise VolumeError(f"drive {sorted(used & set(drive_ids))[0]} is in use")
            volume = Volume(f"Volume{next(self._ids)}", name, raid_type, tuple(drive_ids),
                            capacity_bytes or usable)
            self._volumes[volume.id] = volume
            return volume

    def delete(self, volume_id: str) -> bool:
        with self._lock:
            return self._volumes.pop(volume_id, None) is not None


@dataclass(frozen=True)
class Inventory:
    processors: tuple[Processor, ...]
    memory: tuple[Dimm, ...]
    nics: tuple[Nic, ...]
    drives: tuple[Drive, ...]
    volumes: VolumeStore
    controller_model: str = "Emulated RAID Controller"
    supported_raid_types: tuple[str, ...] = tuple(RAID_LEVELS)

    @property
    def total_memory_gib(self) -> float:
        return sum(d.capacity_mib for d in self.memory) / 1024

    @property
    def total_cores(self) -> int:
        return sum(p.cores for p in self.processors)

    @property
    def total_threads(self) -> int:
        return sum(p.threads for p in self.processors)


def _seed(name: str, what: str) -> bytes:
    return hashlib.sha256(f"{name}/{what}".encode()).digest()


def mac_address(name: str, index: int) -> str:
    """A stable, locally administered unicast MAC (52:54:00 is the common QEMU/KVM prefix)."""
    tail = _seed(name, f"nic{index}")[:3]
    return "52:54:00:" + ":".join(f"{b:02x}" for b in tail)


def default_inventory(name: str) -> Inventory:
    """Two sockets, 256 GiB, two 25G ports, two SSDs in a RAID1 and one NVMe data disk."""
    serial = _seed(name, "serial").hex().upper()
    processors = tuple(Processor(id=f"CPU{i}", socket=f"CPU {i}") for i in range(2))
    memory = tuple(Dimm(id=f"DIMM{i}", locator=f"CPU{i // 4}_DIMM_{chr(65 + i % 4)}1",
                        serial=f"{serial[i * 2:i * 2 + 8]}") for i in range(8))
    nics = tuple(Nic(id=f"NIC{i}", mac=mac_address(name, i)) for i in range(2))
    ssd = 480 * 10**9
    drives = (
        Drive("Disk0", "MZ7LH480HAHQ", ssd, "SSD", "SATA", f"S{serial[:9]}", "Samsung"),
        Drive("Disk1", "MZ7LH480HAHQ", ssd, "SSD", "SATA", f"S{serial[9:18]}", "Samsung"),
        Drive("Disk2", "Micron 7450 1.92TB", 1920 * 10**9, "SSD", "NVMe", f"M{serial[18:27]}",
              "Micron", "E2MU200"),
    )
    volumes = VolumeStore(drives, (Volume("Volume0", "OS (RAID1)", "RAID1", ("Disk0", "Disk1"),
                                          ssd),))
    return Inventory(processors, memory, nics, drives, volumes)
