"""The `libvirt` backend: a server is a libvirt domain (a VM under QEMU/KVM, or libvirt's test
driver), named or by UUID, on a libvirt URI (`qemu:///system`, `qemu+ssh://host/system`,
`test:///default`).

Power: on = create (start), off = destroy, soft off = shutdown (ACPI), reset = reset, power
cycle = destroy + create, NMI = injectNMI. The power state is the domain's `isActive()` (a
paused domain is on). Changes made outside the emulator (virsh, the guest powering itself off)
arrive as libvirt lifecycle events and are reported to the node (`report_power`); the
backend's own actions are not reported (their outcome is what the node just asked for).

Boot: each boot gets the node's boot device (and mode) written into the domain's persistent
definition before the start, see `libvirt_xml`; a reset that needs a different boot
configuration than the running one becomes destroy + create, since QEMU reads it only at start.

Consoles: the serial console is the domain's first console (`<serial type='pty'>`), streamed by
`libvirt_console`; the graphical console is its VNC display. Virtual media: the CD-ROM.

Connections are shared per URI and kept alive by `libvirt_conn`.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from backends import libvirt_media
from backends import libvirt_xml as dx
from backends.base import (
    ALL_POWER_OPS,
    Backend,
    BackendError,
    BackendRefused,
    BootDevice,
    BootMode,
    Capabilities,
    PowerState,
)
from backends.libvirt_conn import Connection, LibvirtCallError, acquire, release
from backends.libvirt_console import StreamConsole

log = logging.getLogger(__name__)

#: what is assumed until the domain's XML has been read (libvirtd not reachable yet)
UNKNOWN = Capabilities(power_events=True, serial_console=True, media_slots=("Cd",),
                       boot_devices=frozenset({BootDevice.NONE, BootDevice.PXE,
                                               BootDevice.DISK, BootDevice.CDROM}),
                       boot_modes=frozenset({BootMode.LEGACY}))
#: seconds between power-state polls when the connection has no lifecycle events
FALLBACK_POLL = 2.0
#: how long `attach_console` (building the node, at start) waits for the first look at the
#: domain, so that the front ends start with its real capabilities
FIRST_LOOK = 3.0
#: where fetched (http, https) virtual media images are kept
IMAGE_DIR = "/var/lib/libvirt/images/bmc-emulator"

#: lifecycle event names (virDomainEventType) and details, for the power reports' reasons
EVENTS = {0: "defined", 1: "undefined", 2: "started", 3: "suspended", 4: "resumed",
          5: "stopped", 6: "shut down", 7: "PM-suspended", 8: "crashed"}
STOP_DETAILS = {0: "shut down", 1: "destroyed", 2: "crashed", 3: "migrated", 4: "saved",
                5: "failed", 6: "restored from a snapshot"}
START_DETAILS = {0: "booted", 1: "migrated", 2: "restored", 3: "from a snapshot", 4: "woken up"}


def _positive(value: Any, setting: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise ValueError(f"{setting}: must be a number of seconds in (0, 3600]")
    return float(value)


class LibvirtBackend(Backend):
    kind = "libvirt"

    def __init__(self, *, domain: str, uri: str = "qemu:///system", timeout: float = 60.0,
                 connect_timeout: float = 5.0, manage_firmware: bool = True,
                 vnc_host: str | None = None, image_dir: str = IMAGE_DIR,
                 node_name: str = "") -> None:
        if not isinstance(domain, str) or not domain.strip():
            raise TypeError("domain: must be a libvirt domain name or UUID")
        if not isinstance(uri, str) or "://" not in uri:
            raise ValueError(f"uri: {uri!r} is not a libvirt URI such as qemu:///system")
        if not isinstance(manage_firmware, bool):
            raise TypeError("manage_firmware: must be true or false")
        if vnc_host is not None and not isinstance(vnc_host, str):
            raise TypeError("vnc_host: must be a host name or address")
        if not isinstance(image_dir, str) or not image_dir.startswith("/"):
            raise ValueError("image_dir: must be an absolute directory path")
        self.image_dir = image_dir
        self.domain_ref = domain.strip()
        self.uri = uri
        self.timeout = _positive(timeout, "timeout")
        self.connect_timeout = _positive(connect_timeout, "connect_timeout")
        self.manage_firmware = manage_firmware
        self.vnc_host = vnc_host
        self.node_name = node_name or self.domain_ref
        self._dom: Any = None
        self._dom_generation = -1
        self._facts: dx.DomainFacts | None = None
        #: the running domain's VNC URL (front ends ask for it: answered without I/O)
        self._vnc: str | None = None
        self._seen = threading.Event()  # the domain has been looked at once (or found missing)
        #: guards _known and _busy: own actions vs lifecycle events
        self._state_lock = threading.Lock()
        #: the power state the node knows of (ours or reported); None: not looked yet
        self._known: PowerState | None = None
        self._connected_before = False  # libvirt_connected has run once
        self._busy = 0
        self._closed = False
        self._conn: Connection = acquire(uri)  # connects in the background: never blocks
        self._console = StreamConsole(self._conn.lv, self.node_name, self._conn.submit)
        self._conn.add(self)

    # -- capabilities ---------------------------------------------------------------------------
    @property  # type: ignore[override]
    def capabilities(self) -> Capabilities:
        """From the domain's XML as last read (front ends ask: never waits for libvirt)."""
        facts = self._facts
        if facts is None:
            return UNKNOWN
        modes = set()
        if facts.legacy:
            modes.add(BootMode.LEGACY)
        if facts.uefi or self._uefi_available:
            modes.add(BootMode.UEFI)
        return Capabilities(
            power=ALL_POWER_OPS,
            boot_devices=facts.boot_devices,
            boot_modes=frozenset(modes or {BootMode.LEGACY}),
            serial_console=facts.serial_console, graphical_console=facts.vnc,
            virtual_media=True, power_events=self._conn.events_ok, media_slots=("Cd",),
            local_media=True)

    @property  # type: ignore[override]
    def poll_interval(self) -> float | None:
        return None if self._conn.events_ok or not self._conn.connected else FALLBACK_POLL

    _uefi_available = False


    # -- the domain ---------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], *args: Any,
              timeout: float | None = None) -> Any:
        return self._conn.call(f"{what} of domain {self.domain_ref!r}", fn, *args,
                               timeout=timeout or self.timeout)

    def _domain(self) -> Any:
        """The virDomain (looked up again after a reconnection or an undefine)."""
        if self._closed:
            raise BackendError("the backend is closed")
        conn = self._conn.get(self.connect_timeout)
        dom, generation = self._dom, self._conn.generation
        if dom is not None and self._dom_generation == generation:
            return dom
        lv = self._conn.lv
        try:
            uuidlib.UUID(self.domain_ref)
            lookup = conn.lookupByUUIDString
        except ValueError:
            lookup = conn.lookupByName
        try:
            dom = self._conn.call(f"looking up domain {self.domain_ref!r}", _lookup, lv,
                                  lookup, self.domain_ref, timeout=self.timeout)
        except BackendError:
            self._seen.set()
            raise
        if dom is None:
            self._seen.set()
            raise BackendError(f"no domain {self.domain_ref!r} on {self.uri}")
        self._dom, self._dom_generation = dom, generation
        self._conn.watch(dom.UUIDString(), self)
        if self._facts is None:
            self._refresh_facts(dom)
        return dom

    def _xml(self, dom: Any, live: bool = False) -> str:
        lv = self._conn.lv
        # SECURE: passwords (VNC) must survive our redefinitions; this XML is never logged
        flags = lv.VIR_DOMAIN_XML_SECURE | (0 if live else lv.VIR_DOMAIN_XML_INACTIVE)
        return self._call("reading the XML", dom.XMLDesc, flags)

    def _refresh_facts(self, dom: Any) -> None:
        try:
            self._facts = dx.facts(self._xml(dom))
            if not self._facts.uefi:
                self._uefi_available = self._host_has_uefi(self._facts)
        except BackendError as exc:
            log.warning("%s: cannot read the domain's configuration: %s", self.node_name, exc)
        finally:
            self._seen.set()

    def _host_has_uefi(self, facts: dx.DomainFacts) -> bool:
        """Whether libvirt knows a UEFI firmware for this kind of domain (firmware descriptors
        of an installed OVMF); UEFI is offered only then."""
        conn = self._conn.get(self.connect_timeout)
        try:
            caps = self._call("reading domain capabilities", conn.getDomainCapabilities, None,
                              facts.arch or None, facts.machine or None,
                              facts.virt_type or None)
        except BackendError:
            return False  # the driver cannot tell (test:///): the domain's own XML decides
        root = dx.parse(caps)
        return any(v.text == "efi" for v in root.findall("os/enum[@name='firmware']/value"))

    def _define(self, xml: str) -> None:
        conn = self._conn.get(self.connect_timeout)
        self._call("defining", conn.defineXML, xml)
        self._facts = dx.facts(xml)

    def _is_on(self, dom: Any) -> PowerState:
        active = self._call("reading the power state", dom.isActive)
        return PowerState.ON if active else PowerState.OFF

    # -- power ----------------------------------------------------------------------------------
    def power_state(self) -> PowerState:
        state = self._is_on(self._domain())
        if self._known is None:
            with self._state_lock:  # what the node learns first (before any event was seen)
                if self._known is None:
                    self._known = state
        return state

    def power_on(self, boot_device: BootDevice) -> None:
        dom = self._domain()
        with self._own_action():
            if self._is_on(dom) is PowerState.ON:
                return
            self._apply_boot(dom, boot_device)
            self._start(dom)

    def power_off(self) -> None:
        dom = self._domain()
        with self._own_action():
            if self._is_on(dom) is PowerState.ON:
                self._destroy(dom)

    def soft_off(self) -> None:
        # ACPI power button; the guest powers off when it likes, and the event reports it
        dom = self._domain()
        if self._is_on(dom) is PowerState.ON:
            self._call("shutting down", dom.shutdown)

    def reset(self, boot_device: BootDevice) -> None:
        dom = self._domain()
        with self._own_action():
            if self._is_on(dom) is PowerState.OFF:
                self._apply_boot(dom, boot_device)
                self._start(dom)
                return
            self._apply_boot(dom, boot_device)
            live, next_boot = self._xml(dom, live=True), self._xml(dom)
            if dx.boot_signature(live) == dx.boot_signature(next_boot):
                self._call("resetting", dom.reset, 0)
                return
            # QEMU reads the boot order and firmware only at start: a hard cycle applies them
            self._destroy(dom)
            self._start(dom)

    def power_cycle(self, boot_device: BootDevice) -> None:
        dom = self._domain()
        with self._own_action():
            if self._is_on(dom) is PowerState.ON:
                self._destroy(dom)
            self._apply_boot(dom, boot_device)
            self._start(dom)

    def nmi(self) -> None:
        dom = self._domain()
        if self._is_on(dom) is PowerState.ON:
            self._call("injecting an NMI", dom.injectNMI, 0)

    def _apply_boot(self, dom: Any, device: BootDevice) -> None:
        xml = self._xml(dom)
        uefi: bool | None = None
        if self.manage_firmware and device is not BootDevice.NONE:
            uefi = self.boot_uefi
            facts = dx.facts(xml)
            if uefi and not (facts.uefi or self._uefi_available):
                raise BackendRefused(
                    f"domain {self.domain_ref!r} cannot boot in UEFI mode: it has no UEFI "
                    "loader and libvirt knows no UEFI firmware (install ovmf)")
        new = dx.set_boot(xml, device, uefi)
        if new != xml:
            self._define(new)
            log.info("%s: next boot from %s%s", self.node_name, device.value,
                     "" if uefi is None else " (UEFI)" if uefi else " (legacy BIOS)")

    def _start(self, dom: Any) -> None:
        """Start the domain with its console open from the first byte (started paused, the
        console opened, then resumed) where the driver can."""
        lv = self._conn.lv
        facts = self._facts
        paused = self._console.output is not None and facts is not None and facts.serial_console
        if paused:
            try:
                self._call("starting", dom.createWithFlags, lv.VIR_DOMAIN_START_PAUSED)
            except BackendError as exc:
                if self._is_on(dom) is PowerState.ON:
                    raise
                log.debug("%s: cannot start paused (%s)", self.node_name, exc)
                paused = False
        if not paused:
            self._call("starting", dom.create)
        self._open_console(dom)
        if paused:
            self._call("resuming", dom.resume)
        self._read_vnc(dom)

    def _destroy(self, dom: Any) -> None:
        self._console.close()
        self._vnc = None
        self._call("destroying", dom.destroy)

    @contextmanager
    def _own_action(self) -> Iterator[None]:
        """Events during our own action are not news; afterwards the node knows the state."""
        with self._state_lock:
            self._busy += 1
        try:
            yield
        finally:
            state = None
            with suppress(BackendError):
                state = self._is_on(self._domain())
            with self._state_lock:
                self._busy -= 1
                if state is not None:
                    self._known = state

    # -- lifecycle events (the connection's dispatcher thread) -----------------------------------
    def libvirt_event(self, event: int, detail: int) -> None:
        lv = self._conn.lv
        if event == lv.VIR_DOMAIN_EVENT_UNDEFINED:
            self._dom = None
        elif event == lv.VIR_DOMAIN_EVENT_DEFINED:
            self._refresh_later()  # redefined, by us or by someone else (virsh edit)
            return
        implied = {lv.VIR_DOMAIN_EVENT_STARTED: PowerState.ON,
                   lv.VIR_DOMAIN_EVENT_RESUMED: PowerState.ON,
                   lv.VIR_DOMAIN_EVENT_SUSPENDED: PowerState.ON,
                   lv.VIR_DOMAIN_EVENT_PMSUSPENDED: PowerState.ON,
                   lv.VIR_DOMAIN_EVENT_STOPPED: PowerState.OFF,
                   lv.VIR_DOMAIN_EVENT_UNDEFINED: PowerState.OFF}.get(event)
        if implied is None:
            return  # shutdown finished, crashed: a STOPPED event follows if it stops
        with self._state_lock:
            if self._busy:
                return  # our own action: it records the outcome when it ends
            try:
                state = self._is_on(self._domain()) if event != lv.VIR_DOMAIN_EVENT_UNDEFINED \
                    else PowerState.OFF
            except BackendError as exc:
                log.debug("%s: after a lifecycle event: %s", self.node_name, exc)
                return
            # the state now must be the event's: else it is an old event (of our own action,
            # delivered late) and the event that explains the state now is still to come
            if state is self._known or state is not implied:
                return
            self._known = state
        reason = self._reason(event, detail)
        log.info("%s: power %s from outside the emulator: domain %s", self.node_name,
                 state.value, reason)
        if state is PowerState.ON:
            self._open_console_quietly()
            self._read_vnc_quietly()
        else:
            self._console.close()
            self._vnc = None
        self.report_power(state, f"libvirt: domain {reason}")

    def _reason(self, event: int, detail: int) -> str:
        name = EVENTS.get(event, f"event {event}")
        if event == self._conn.lv.VIR_DOMAIN_EVENT_STOPPED:
            return f"stopped ({STOP_DETAILS.get(detail, detail)})"
        if event == self._conn.lv.VIR_DOMAIN_EVENT_STARTED:
            return f"started ({START_DETAILS.get(detail, detail)})"
        return name

    def libvirt_connected(self) -> None:
        """After each (re)connection: find the domain, catch up on what happened meanwhile."""
        try:
            dom = self._domain()
            self._refresh_facts(dom)
            state = self._is_on(dom)
        except BackendError as exc:
            log.warning("%s: %s", self.node_name, exc)
            self._seen.set()
            return
        with self._state_lock:
            before, self._known = self._known, state
            # the first connection is no news: what the node did meanwhile (it may already
            # have acted, when this callback comes late) was its own doing
            reconnected, self._connected_before = self._connected_before, True
        if state is PowerState.ON and not self._console.is_open:
            self._open_console_quietly()
        self._vnc = None
        if state is PowerState.ON:
            self._read_vnc_quietly()
        if reconnected and before is not None and before is not state:
            self.report_power(state, "libvirt: changed while libvirt was unreachable")

    def _refresh_later(self) -> None:
        dom = self._dom
        if dom is not None:
            self._refresh_facts(dom)

    # -- the serial console ------------------------------------------------------------------------
    def attach_console(self, output: Callable[[bytes], None]) -> bool:
        self._console.output = output
        # called while the node is built: wait (bounded) for the domain's XML once, unless
        # libvirt turned out to be unreachable
        wait = min(FIRST_LOOK, self.connect_timeout)
        if self._conn.tried.wait(wait) and self._conn.connected:
            self._seen.wait(wait)
        facts = self._facts
        if facts is not None and not facts.serial_console:
            return False
        self._conn.submit(self._open_console_if_running)
        return True

    def write_console(self, data: bytes) -> None:
        self._console.write(data)

    def _open_console(self, dom: Any) -> None:
        if self._console.output is None or (self._facts and not self._facts.serial_console):
            return
        conn = self._conn.get(self.connect_timeout)
        try:
            self._call("opening the serial console", self._console.open, conn, dom)
        except BackendError as exc:
            log.warning("%s: no serial console: %s", self.node_name, exc)

    def _open_console_quietly(self) -> None:
        if self._busy:
            return  # an own action is starting the domain: it opens the console itself
        try:
            self._open_console(self._domain())
        except BackendError as exc:
            log.warning("%s: %s", self.node_name, exc)

    def _open_console_if_running(self) -> None:
        if self._busy:
            return  # as above
        try:
            dom = self._domain()
            if not self._console.is_open and self._is_on(dom) is PowerState.ON:
                self._open_console(dom)
        except BackendError as exc:
            log.debug("%s: console not opened: %s", self.node_name, exc)

    # -- the graphical console ---------------------------------------------------------------------
    def graphical_console(self) -> str | None:
        return self._vnc  # read at each start (the port is chosen then)

    def _read_vnc(self, dom: Any) -> None:
        endpoint = dx.vnc_endpoint(self._xml(dom, live=True))
        if endpoint is None:
            self._vnc = None
            return
        host, port = endpoint
        if self.vnc_host:
            host = self.vnc_host
        elif host in ("0.0.0.0", "::", ""):
            # listening everywhere: the hypervisor's own name is the address to use
            host = urlsplit(self.uri).hostname or "127.0.0.1"
        self._vnc = f"vnc://[{host}]:{port}" if ":" in host else f"vnc://{host}:{port}"

    def _read_vnc_quietly(self) -> None:
        try:
            self._read_vnc(self._domain())
        except BackendError as exc:
            log.debug("%s: VNC display not read: %s", self.node_name, exc)

    # -- virtual media --------------------------------------------------------------------------
    def media_changed(self, slot: str, image: str | None) -> None:
        if slot != "Cd":
            raise BackendRefused(f"the libvirt backend has no media slot {slot!r} (only Cd)")
        path = None
        if image is not None:
            path = self._image_file(image)
        dom = self._domain()
        lv = self._conn.lv
        running = self._is_on(dom) is PowerState.ON
        disk = dx.cdrom_disk(self._xml(dom), path)
        if disk is not None:
            flags = lv.VIR_DOMAIN_AFFECT_CONFIG
            if running:  # FORCE: eject even if the guest locked the tray
                flags |= lv.VIR_DOMAIN_AFFECT_LIVE | lv.VIR_DOMAIN_DEVICE_MODIFY_FORCE
            try:
                self._call("changing the CD-ROM", dom.updateDeviceFlags, disk, flags)
                log.info("%s: CD-ROM %s%s", self.node_name, path or "ejected",
                         " (live)" if running else "")
                return
            except LibvirtCallError as exc:
                unsupported = exc.code in (lv.VIR_ERR_NO_SUPPORT,
                                           lv.VIR_ERR_OPERATION_UNSUPPORTED)
                if not running and not unsupported:
                    raise
                # QEMU sometimes refuses to open the tray ("Tray of device ... is not open",
                # a known libvirt/QEMU issue); a driver may not change media at all: either
                # way the definition changes, and the VM sees the media from its next start
                log.warning("%s: the running VM's CD-ROM cannot be changed now (%s); the "
                            "change takes effect at its next start", self.node_name, exc)
        self._define(dx.with_cdrom(self._xml(dom), path))
        log.info("%s: CD-ROM %s in the domain's definition%s", self.node_name,
                 path or "ejected", " (from its next start)" if running else "")

    def _image_file(self, image: str) -> str:
        """The file on the hypervisor host that holds `image` (fetched if it is a URL)."""
        local = not urlsplit(self.uri).hostname
        path = libvirt_media.local_path(image)
        if path is None:
            if not local:
                raise BackendRefused(
                    f"virtual media {image.split('://', 1)[0]} URLs need a local hypervisor; "
                    f"{self.uri} is remote: give a path on that host")
            return libvirt_media.fetch(image, Path(self.image_dir),
                                       _safe_name(self.node_name), self.timeout)
        # a local hypervisor can be checked here; a remote one checks it itself
        if local and not os.path.isfile(path):
            raise BackendRefused(f"virtual media {image!r}: no such file")
        return path

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._console.close()
        self._conn.remove(self)
        release(self._conn)


def _lookup(lv: Any, lookup: Callable[[str], Any], ref: str) -> Any:
    try:
        return lookup(ref)
    except lv.libvirtError as exc:
        if exc.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "node"
