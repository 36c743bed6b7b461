"""Test helpers for the libvirt backend: the daemons, unique domains, a tiny bootable guest.

`ensure_libvirtd()` makes sure libvirtd and virtlogd answer (starting them as root when no
socket answers) and that /dev/kvm is usable by QEMU's user (else every domain start probes
for KVM and times out). Domains get unique names and are removed by `Domains.cleanup()`.

The guest of the QEMU tests is one 512-byte boot sector, assembled here from its x86 real-mode
machine code: it sets up COM1 (0x3F8), prints `BANNER` and then echoes every byte received on
COM1 back to it, forever. SeaBIOS boots it in about a second, under KVM or TCG.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

LIBVIRT_SOCK = "/var/run/libvirt/libvirt-sock"
VIRTLOGD_SOCK = "/var/run/libvirt/virtlogd-sock"
#: where QEMU (user libvirt-qemu) can read the guest's disk
IMAGE_DIR = Path("/var/lib/libvirt/images")
BANNER = b"BMC-EMU GUEST READY"
#: the test driver hosted by libvirtd: one state for the emulator process and the test
TEST_DAEMON_URI = "test+unix:///default"


# -- the daemons --------------------------------------------------------------------------------
def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def _start(daemon: str, sock: str) -> None:
    if _answers(sock):
        return
    if os.geteuid() != 0:
        pytest.skip(f"{daemon} is not running and only root can start it")
    program = shutil.which(daemon) or f"/usr/sbin/{daemon}"
    if not Path(program).exists():
        pytest.fail(f"{daemon} is not installed (apt-get install libvirt-daemon-system)")
    subprocess.run([program, "-d"], check=True, timeout=30)
    deadline = time.monotonic() + 20
    while not _answers(sock):
        if time.monotonic() > deadline:
            pytest.fail(f"{daemon} -d started but {sock} does not answer")
        time.sleep(0.1)


def ensure_libvirtd() -> None:
    """libvirtd and virtlogd answer, and QEMU can use /dev/kvm if there is one."""
    kvm = Path("/dev/kvm")
    if kvm.exists() and os.geteuid() == 0:
        # QEMU runs as libvirt-qemu (group kvm): without this every start waits for KVM probing
        with contextlib.suppress(OSError):
            shutil.chown(kvm, "root", "kvm")
            kvm.chmod(0o660)
    _start("virtlogd", VIRTLOGD_SOCK)
    _start("libvirtd", LIBVIRT_SOCK)


def kvm_usable() -> bool:
    return Path("/dev/kvm").exists() and os.access("/dev/kvm", os.R_OK | os.W_OK)


def libvirt() -> Any:
    """The libvirt module with the backend's event loop (registered before any connection)."""
    from backends.libvirt_conn import libvirt_module

    return libvirt_module()


# -- domains ------------------------------------------------------------------------------------
def unique_name(prefix: str = "bmcemu-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Domains:
    """Domains defined by one test on one URI; `cleanup()` destroys and undefines them."""

    def __init__(self, uri: str) -> None:
        self.lv = libvirt()
        self.uri = uri
        self.conn = self.lv.open(uri)
        self.names: list[str] = []
        self.files: list[Path] = []

    def define(self, xml: str) -> Any:
        dom = self.conn.defineXML(xml)
        self.names.append(dom.name())
        return dom

    def get(self, name: str) -> Any:
        return self.conn.lookupByName(name)

    def xml(self, name: str, inactive: bool = True) -> str:
        flags = self.lv.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        return self.get(name).XMLDesc(flags)

    def cleanup(self) -> None:
        for name in self.names:
            try:
                dom = self.conn.lookupByName(name)
            except self.lv.libvirtError:
                continue
            with contextlib.suppress(self.lv.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(self.lv.libvirtError):
                dom.undefineFlags(self.lv.VIR_DOMAIN_UNDEFINE_NVRAM)
        for path in self.files:
            path.unlink(missing_ok=True)
        with contextlib.suppress(self.lv.libvirtError):
            self.conn.close()


def fake_domain_xml(name: str) -> str:
    """A test-driver domain with a disk, a NIC and a CD-ROM."""
    return f"""<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/guest/{name}.img'/><target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>
    <interface type='network'><mac address='52:54:00:12:34:56'/>
      <source network='default'/></interface>
  </devices>
</domain>"""


def qemu_xml(name: str, image: Path, kvm: bool) -> str:
    """A tiny QEMU domain booting `image`: serial console on a pty, VNC on loopback."""
    emulator = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
    return f"""<domain type='{"kvm" if kvm else "qemu"}'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{image}'/><target dev='hda' bus='ide'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><target dev='hdc' bus='ide'/><readonly/>
    </disk>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <video><model type='vga'/></video>
    <memballoon model='none'/>
  </devices>
</domain>"""


def write_guest_image(name: str) -> Path:
    IMAGE_DIR.mkdir(parents=True, exist_ok=True)
    path = IMAGE_DIR / f"{name}.img"
    path.write_bytes(boot_sector() + bytes(512 * 7))  # a few sectors: a plausible disk
    return path


# -- the guest: a boot sector in x86 real-mode machine code --------------------------------------
COM1 = 0x3F8


def _mov_dx(port: int) -> bytes:
    return b"\xba" + port.to_bytes(2, "little")  # mov dx, imm16


def _out(port: int, value: int) -> bytes:
    return _mov_dx(port) + bytes([0xB0, value, 0xEE])  # mov al, imm8; out dx, al


def boot_sector() -> bytes:
    """512 bytes loaded at 0000:7C00 by the BIOS; see the module docstring.

    Assembled by hand with label fixups; the listing is in the comments (NASM syntax).
    """
    code: list[bytes | tuple[str, str]] = [
        b"\xfa",                      # cli
        b"\x31\xc0",                  # xor ax, ax
        b"\x8e\xd8",                  # mov ds, ax
        b"\x8e\xd0",                  # mov ss, ax
        b"\xbc\x00\x7c",              # mov sp, 0x7c00
        b"\xfc",                      # cld
        _out(COM1 + 1, 0x00),         # IER: no interrupts (we poll)
        _out(COM1 + 3, 0x80),         # LCR: DLAB, to set the divisor
        _out(COM1 + 0, 0x01),         # divisor 1: 115200 baud
        _out(COM1 + 1, 0x00),
        _out(COM1 + 3, 0x03),         # LCR: 8N1
        _out(COM1 + 2, 0xC7),         # FCR: FIFOs on, cleared
        _out(COM1 + 4, 0x03),         # MCR: DTR, RTS
        ("mov_si", "banner"),         # mov si, banner
        ("label", "print"),
        b"\xac",                      # lodsb
        b"\x84\xc0",                  # test al, al
        ("jz", "echo"),
        ("call", "putc"),
        ("jmp", "print"),
        ("label", "echo"),
        _mov_dx(COM1 + 5),            # LSR
        b"\xec",                      # in al, dx
        b"\xa8\x01",                  # test al, 1      ; data ready?
        ("jz", "echo"),
        _mov_dx(COM1),
        b"\xec",                      # in al, dx       ; the received byte
        ("call", "putc"),
        ("jmp", "echo"),
        ("label", "putc"),            # putc: send al
        b"\x88\xc3",                  # mov bl, al
        _mov_dx(COM1 + 5),
        ("label", "wait"),
        b"\xec",                      # in al, dx
        b"\xa8\x20",                  # test al, 0x20   ; transmitter empty?
        ("jz", "wait"),
        b"\x88\xd8",                  # mov al, bl
        _mov_dx(COM1),
        b"\xee",                      # out dx, al
        b"\xc3",                      # ret
        ("label", "banner"),
        b"\r\n" + BANNER + b"\r\n\x00",
    ]
    sizes = {"mov_si": 3, "jz": 2, "jmp": 2, "call": 3, "label": 0}
    labels, offset = {}, 0
    for item in code:  # pass 1: where each label is
        if isinstance(item, tuple):
            if item[0] == "label":
                labels[item[1]] = offset
            offset += sizes[item[0]]
        else:
            offset += len(item)
    out = bytearray()
    for item in code:  # pass 2: emit, with relative jumps from the next instruction
        if isinstance(item, bytes):
            out += item
            continue
        op, label = item
        end = len(out) + sizes[op]
        target = labels.get(label, 0)
        if op == "mov_si":
            out += b"\xbe" + (0x7C00 + target).to_bytes(2, "little")
        elif op in ("jz", "jmp"):
            out += bytes([0x74 if op == "jz" else 0xEB]) + (target - end).to_bytes(
                1, "little", signed=True)
        elif op == "call":
            out += b"\xe8" + (target - end).to_bytes(2, "little", signed=True)
    assert len(out) <= 510, len(out)
    return bytes(out) + bytes(510 - len(out)) + b"\x55\xaa"


# -- a private libvirtd (for restarts: the machine's own daemon is never touched) ---------------
class PrivateLibvirtd:
    """A libvirtd of our own with only the built-in drivers (test:///), on sockets in `path`.

    Connect with `uri`. `stop()` kills it (by its pid: it is our child), `start()` starts it
    again on the same sockets, as a restart of libvirtd would look to its clients.
    """

    def __init__(self, path: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("a private libvirtd needs root (it shares /run/libvirt's lock files)")
        self.path = path
        (path / "no-drivers").mkdir(parents=True, exist_ok=True)
        self.config = path / "libvirtd.conf"
        self.config.write_text(f'unix_sock_dir = "{path}"\nlisten_tcp = 0\nlisten_tls = 0\n')
        self.sock = str(path / "libvirt-sock")
        self.uri = f"test+unix:///default?socket={self.sock}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        program = shutil.which("libvirtd") or "/usr/sbin/libvirtd"
        # no loadable drivers (qemu, network, ...): they would share the system daemon's state
        env = {**os.environ, "LIBVIRT_DRIVER_DIR": str(self.path / "no-drivers")}
        with open(self.path / "libvirtd.log", "ab") as log:
            self.process = subprocess.Popen(
                [program, "--config", str(self.config), "--pid-file",
                 str(self.path / "libvirtd.pid")], env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while not _answers(self.sock):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the private libvirtd did not start: "
                            + (self.path / "libvirtd.log").read_text(errors="replace")[-2000:])
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
