"""Virtual media of a BMC: a virtual CD and a virtual USB stick that images are "inserted" into.

Images are never fetched (the emulator has no network to speak of): an insert records the URL,
and a boot from the matching device records which image it used in `last_boot_media`, which a
console or test can show ("booting from http://.../ipa.iso").
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from backends.base import BackendError, BootDevice

if TYPE_CHECKING:
    from bmc.node import Node, NodeEvent

log = logging.getLogger(__name__)

#: URL scheme -> Redfish TransferProtocolType
PROTOCOLS = {"http": "HTTP", "https": "HTTPS", "nfs": "NFS", "cifs": "CIFS", "smb": "CIFS"}
TRANSFER_METHODS = ("Stream", "Upload")
MAX_URL_LENGTH = 2048
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)$")


class ImageUrlError(ValueError):
    """The image URL is not one a BMC could fetch (scheme, host or form)."""


def check_image_url(url: str, *, local: bool = False) -> str:
    """The TransferProtocolType of a fetchable image URL, or ImageUrlError saying why not.

    With `local` (the node's backend reads files on its own host: `Capabilities.local_media`),
    a `file:///path` URL is accepted too, as an OEM transfer."""
    if local and url.lower().startswith("file:///") and len(url) <= MAX_URL_LENGTH \
            and not any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url) \
            and len(url) > len("file:///"):
        return "OEM"
    if not url or len(url) > MAX_URL_LENGTH:
        raise ImageUrlError(f"the URL must have 1 to {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ImageUrlError("the URL contains white space or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise ImageUrlError(f"malformed URL: {exc}") from None
    protocol = PROTOCOLS.get(parts.scheme.lower())
    if protocol is None:
        raise ImageUrlError(f"unsupported scheme {parts.scheme or '(none)'!r}; use one of "
                            + ", ".join(sorted(PROTOCOLS)))
    host = parts.hostname or ""
    if not host or not _HOST.match(host if ":" not in host else f"[{host}]"):
        raise ImageUrlError("the URL names no valid host")
    if port == 0:
        raise ImageUrlError("port 0 is not a port")
    if not parts.path or parts.path == "/":
        raise ImageUrlError("the URL names no image file")
    return protocol


def redact(url: str) -> str:
    """`url` without any user:password part, for logs and task payloads."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(malformed URL)"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"***@{host}").geturl()


def image_name(url: str) -> str:
    """The file name part of an image URL (Redfish `ImageName`)."""
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


@dataclass(frozen=True)
class MediaSlot:
    """One virtual drive and what is in it."""

    id: str
    name: str
    media_types: tuple[str, ...]
    boot_device: BootDevice  # the boot override that boots from this slot
    image: str | None = None
    inserted: bool = False
    write_protected: bool = True
    transfer_method: str | None = None
    transfer_protocol: str | None = None
    user_name: str | None = None
    #: kept for a real fetcher later; never shown or logged
    password: str | None = None

    @property
    def image_name(self) -> str | None:
        return image_name(self.image) if self.image else None


#: the drives a BMC can have; the backend's capabilities say which this one has
SLOTS = {
    "Cd": MediaSlot("Cd", "Virtual CD", ("CD", "DVD"), BootDevice.CDROM),
    "USBStick": MediaSlot("USBStick", "Virtual USB stick", ("USBStick", "Floppy"),
                          BootDevice.FLOPPY),
}
#: how long an insert or eject waits for the backend to take the image
MEDIA_WAIT_SECONDS = 2.0
#: the state store's kind for the slots (bmc/state.py), one row per slot id
MEDIA_KIND = "virtual_media"
#: the saved fields of a slot, and their types (None allowed for the optional ones)
_SAVED = {"image": str, "inserted": bool, "write_protected": bool, "transfer_method": str,
          "transfer_protocol": str, "user_name": str, "password": str}


class VirtualMedia:
    """The virtual drives of one BMC. Thread-safe.

    The slots are recorded here; the backend is told of every change (`media_changed`) on
    the node's worker, and a change it refuses is undone, so nothing is shown that the
    server does not have."""

    def __init__(self, node: Node) -> None:
        self._lock = threading.Lock()
        self._node = node
        capabilities = node.backend.capabilities
        offered = capabilities.media_slots if capabilities.virtual_media else ()
        self._slots = {slot_id: slot for slot_id, slot in SLOTS.items() if slot_id in offered}
        #: some BMCs refuse InsertMedia without TransferProtocolType, others without
        #: TransferMethod (sushy retries with them); a test or config can turn these on
        self.require_transfer_protocol = False
        self.require_transfer_method = False
        self._last_boot_media: str | None = None
        if node.state is not None:
            self._restore()
        node.subscribe(self._on_event)

    def _restore(self) -> None:
        """Take back the saved slots (StateError for a row that does not make sense), and
        present their media to the backend again: one that keeps none across our restart
        (docker) would boot without it. Queued on the worker, not waited for."""
        state = self._node.state
        assert state is not None
        for slot_id, saved in state.load(MEDIA_KIND).items():
            slot = self._slots.get(slot_id)
            if slot is None:  # the backend no longer offers it: nothing to show it in
                log.warning("%s: saved virtual media of slot %s dropped: the backend has no "
                            "such slot", self._node.name, slot_id)
                continue
            try:
                if not isinstance(saved, dict) or set(saved) != set(_SAVED) or not all(
                        saved[name] is None or isinstance(saved[name], kind)
                        for name, kind in _SAVED.items()):
                    raise ValueError(f"expected the fields {sorted(_SAVED)}")
                if saved["image"] is not None:
                    check_image_url(saved["image"],
                                    local=self._node.backend.capabilities.local_media)
                elif saved["inserted"]:
                    raise ValueError("inserted without an image")
            except ValueError as exc:
                raise state.error(MEDIA_KIND, slot_id, str(exc)) from exc
            self._slots[slot_id] = replace(slot, **saved)
            if saved["inserted"] and saved["image"]:
                self._present(slot_id, saved["image"])

    def _present(self, slot_id: str, image: str) -> None:
        backend, name = self._node.backend, self._node.name

        def present() -> None:
            try:
                backend.media_changed(slot_id, image)
            except BackendError as exc:  # shown as inserted: what the BMC was told to hold
                log.warning("%s: presenting the saved media of %s (%s) again failed: %s",
                            name, slot_id, redact(image), exc)

        self._node.worker.submit(present, force=True)

    def _save(self, slot: MediaSlot) -> None:
        """Save one slot (with the lock held: saves land in the order of changes)."""
        state = self._node.state
        if state is not None:
            state.save(MEDIA_KIND, slot.id, {name: getattr(slot, name) for name in _SAVED})

    @property
    def last_boot_media(self) -> str | None:
        """The image URL the last boot booted from; None if it did not boot virtual media."""
        with self._lock:
            return self._last_boot_media

    def slots(self) -> list[MediaSlot]:
        with self._lock:
            return list(self._slots.values())

    def get(self, slot_id: str) -> MediaSlot | None:
        with self._lock:
            return self._slots.get(slot_id)

    def insert(self, slot_id: str, image: str, *, inserted: bool = True,
               write_protected: bool = True, transfer_method: str | None = None,
               transfer_protocol: str | None = None, user_name: str | None = None,
               password: str | None = None) -> MediaSlot:
        """Record `image` in the slot (KeyError: no such slot; ImageUrlError: bad URL)."""
        protocol = check_image_url(image,
                                   local=self._node.backend.capabilities.local_media)
        if transfer_protocol is not None and transfer_protocol != protocol:
            raise ImageUrlError(f"TransferProtocolType {transfer_protocol} does not match the "
                                f"URL's scheme ({protocol})")
        return self._change(slot_id, image=image, inserted=inserted,
                            write_protected=write_protected,
                            transfer_method=transfer_method or "Stream",
                            transfer_protocol=protocol, user_name=user_name, password=password)

    def eject(self, slot_id: str) -> MediaSlot:
        return self._change(slot_id, image=None, inserted=False, write_protected=True,
                            transfer_method=None, transfer_protocol=None, user_name=None,
                            password=None)

    def set_flags(self, slot_id: str, *, inserted: bool | None = None,
                  write_protected: bool | None = None) -> MediaSlot:
        changes = {name: value for name, value in (("inserted", inserted),
                                                    ("write_protected", write_protected))
                   if value is not None}
        return self._change(slot_id, **changes)

    def _change(self, slot_id: str, **changes: Any) -> MediaSlot:
        """Record the change, then have the backend present it; undo it if the backend
        refuses or fails (BackendError), keep it if the backend is only slow. Saved once the
        backend took it (or is still taking it), before the caller answers its client."""
        with self._lock:
            before = self._slots[slot_id]
            slot = replace(before, **changes)
            self._slots[slot_id] = slot
        presented = before.image if before.inserted else None
        image = slot.image if slot.inserted else None
        if image != presented:
            backend = self._node.backend
            future = self._node.worker.submit(lambda: backend.media_changed(slot_id, image))
            try:
                future.result(MEDIA_WAIT_SECONDS)
            except TimeoutError:
                log.info("%s: the backend is still taking the media change of %s",
                         self._node.name, slot_id)
            except BackendError:
                with self._lock:
                    if self._slots[slot_id] is slot:
                        self._slots[slot_id] = before
                raise
        with self._lock:  # what the slot holds now: a later change may have saved already
            self._save(self._slots[slot_id])
        return slot

    def _on_event(self, node: Node, event: NodeEvent) -> None:
        device = event.detail.get("boot_device")
        if event.kind != "power" or device is None:
            return  # not a boot
        with self._lock:
            media = None
            for slot in self._slots.values():
                if slot.boot_device.value == device and slot.inserted and slot.image:
                    media = slot.image
            self._last_boot_media = media
