"""Firmware of a BMC and its server (BMC and BIOS), and simulated updates of it.

An update is recorded, never downloaded: the image URL is checked like a virtual media URL,
the new version is read from the file name (`bios-2.4.1.bin` -> 2.4.1; otherwise the old
version with its last number raised), and the task that "flashes" it ends after
`update_seconds`. The BMC's version is `node.identity.firmware_version`, which IPMI Get Device
ID reports too.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bmc.tasks import Task, TaskMessage, TaskStore
from bmc.virtual_media import check_image_url, image_name

if TYPE_CHECKING:
    from bmc.node import Node

#: Redfish UpdateService TransferProtocol values accepted (what check_image_url understands)
TRANSFER_PROTOCOLS = ("HTTP", "HTTPS", "NFS", "CIFS")
_VERSION = re.compile(r"(\d+(?:\.\d+)+)")


@dataclass(frozen=True)
class Component:
    id: str  # FirmwareInventory member Id
    name: str
    version: str
    updateable: bool = True


def next_version(old: str, image_url: str) -> str:
    found = _VERSION.search(image_name(image_url))
    if found:
        return found.group(1)
    head, _, last = old.rpartition(".")
    if last.isdigit():
        return f"{head}.{int(last) + 1}" if head else str(int(last) + 1)
    return f"{old}.1"


class Firmware:
    """Firmware inventory of one node. Thread-safe."""

    def __init__(self, node: Node, tasks: TaskStore) -> None:
        self._node = node
        self._tasks = tasks
        self._lock = threading.Lock()
        self._bios_version = "1.4.2"
        #: simulated flashing time; tests set it lower
        self.update_seconds = 2.0

    @property
    def bios_version(self) -> str:
        with self._lock:
            return self._bios_version

    def components(self) -> list[Component]:
        return [Component("BMC", "BMC firmware", self._node.identity.firmware_version),
                Component("BIOS", "System BIOS", self.bios_version)]

    def get(self, component_id: str) -> Component | None:
        return next((c for c in self.components() if c.id == component_id), None)

    def simple_update(self, image_uri: str, targets: list[str], transfer_protocol: str | None,
                      *, target_uri: str = "", body: dict[str, object] | None = None) -> Task:
        """Start updating `targets` (component Ids; empty = BIOS) from `image_uri`.

        ValueError if the URL, protocol or a target is not acceptable; nothing started then.
        """
        protocol = check_image_url(image_uri)
        if transfer_protocol is not None and transfer_protocol != protocol:
            raise ValueError(f"TransferProtocol {transfer_protocol} does not match the URL's "
                             f"scheme ({protocol})")
        ids = targets or ["BIOS"]
        for component_id in ids:
            if self.get(component_id) is None:
                raise LookupError(component_id)

        def flash() -> list[TaskMessage]:
            updated = []
            for component_id in ids:
                old = self.get(component_id)
                assert old is not None
                new = next_version(old.version, image_uri)
                if component_id == "BMC":
                    # IPMI Get Device ID shows major.minor: keep the version in that form
                    major, _, rest = new.partition(".")
                    new = f"{major}.{rest.split('.')[0] or '0'}"
                    self._node.identity.firmware_version = new
                else:
                    with self._lock:
                        self._bios_version = new
                updated.append(TaskMessage(
                    "Update.1.0.UpdateSuccessful",
                    f"Successfully updated '{component_id}' to version {new}.", "OK",
                    (component_id, new)))
            return updated

        return self._tasks.start(f"Update from {image_name(image_uri)}", self.update_seconds,
                                 flash, target_uri=target_uri, body=dict(body or {}))
