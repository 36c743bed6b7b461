"""A simulated server for the `process` backend: firmware POST, a boot loader, a kernel, a login.

Run on the node's serial pty (`python simfirmware.py`); everything it prints is the server's
serial console. It reads its boot from the environment the backend sets:

    BMC_BOOT_DEVICE   Pxe, Hdd, Cd, BiosSetup, Floppy or None (the BMC's boot override)
    BMC_BOOT_MODE     uefi or legacy
    BMC_NODE_NAME     the host name shown at the login prompt
    BMC_SIM_SPEED     delay multiplier for the boot (default 1: about a second; 0: no delays)

Signals are how the BMC reaches it, as on real hardware: SIGTERM (ACPI power button) shuts the
"OS" down and exits, SIGUSR1 is the NMI (the kernel logs it and carries on), SIGHUP (the BMC
went away) exits at once. A hard power-off is no signal to the machine: the `process` backend
stops it and drops whatever it prints while stopping (a cut power prints nothing). The login
prompt wants a user name (any; no password), as a getty does. Stdlib only, no imports from
this project: it runs as a plain script.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sys
import time
from types import FrameType

DEVICE_NAMES = {
    "Pxe": "Network (PXE)",
    "Hdd": "Hard Disk",
    "Cd": "CD/DVD",
    "BiosSetup": "BIOS Setup",
    "Floppy": "Floppy",
}
DEFAULT_ORDER = ("Hdd", "Pxe")
KERNEL = "6.1.0-21-amd64"


def say(line: str = "", delay: float = 0.0) -> None:
    write(line + "\n")
    pause(delay)


def write(text: str) -> None:
    # os.write, not sys.stdout: a signal handler that prints while the main code is printing
    # would otherwise hit "reentrant call" in the buffered writer
    data = text.encode()
    while data:
        data = data[os.write(1, data):]


def pause(seconds: float) -> None:
    speed = float(os.environ.get("BMC_SIM_SPEED", "1") or 0)
    if seconds and speed > 0:
        time.sleep(seconds * speed)


class Machine:
    def __init__(self) -> None:
        self.device = os.environ.get("BMC_BOOT_DEVICE", "None") or "None"
        self.uefi = os.environ.get("BMC_BOOT_MODE", "legacy").lower() == "uefi"
        self.hostname = os.environ.get("BMC_NODE_NAME") or "localhost"
        digest = hashlib.sha256(self.hostname.encode()).digest()
        self.mac = "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])
        self.started = time.monotonic()
        self.os_up = False

    # -- power-on self test and the firmware's boot selection ----------------------------------
    def post(self) -> None:
        firmware = "UEFI firmware" if self.uefi else "BIOS"
        say(f"bmc-emulator Virtual Server {firmware} v2.4.1 ({self.hostname})", 0.05)
        say("Copyright (C) bmc-emulator. All rights reserved.", 0.05)
        say("CPU: Virtual CPU @ 2.40GHz, 4 cores", 0.05)
        say("Memory Test: 16384 MB OK", 0.15)
        say(f"NIC0: Virtio Ethernet, MAC {self.mac}", 0.05)
        say("Press <DEL> to enter setup, <F11> for boot menu, <F12> for network boot", 0.2)
        mode = "UEFI" if self.uefi else "Legacy"
        if self.device in DEVICE_NAMES:
            say(f"Boot mode: {mode}; boot override: {DEVICE_NAMES[self.device]}", 0.05)
            order = (self.device,)
        else:
            say(f"Boot mode: {mode}; boot order: "
                + ", ".join(DEVICE_NAMES[d] for d in DEFAULT_ORDER), 0.05)
            order = DEFAULT_ORDER
        for device in order:
            if self.try_boot(device):
                return
        say("No bootable device -- insert boot disk and press any key")
        self.halt()

    def try_boot(self, device: str) -> bool:
        if device == "Hdd":
            say("Booting from Hard Disk...", 0.1)
            say("GRUB loading.", 0.1)
            say(f"Loading Linux {KERNEL} ...", 0.05)
            say("Loading initial ramdisk ...", 0.1)
            self.kernel("root=/dev/sda1 ro console=ttyS0,115200n8")
            self.login(f"Debian GNU/Linux 12 {self.hostname} ttyS0")
        elif device == "Pxe":
            self.pxe()
        elif device == "Cd":
            say("Booting from CD/DVD...", 0.1)
            say("ISOLINUX 6.04  Copyright (C) 1994-2015 H. Peter Anvin et al", 0.1)
            say("Loading /live/vmlinuz... ok", 0.05)
            self.kernel("boot=live console=ttyS0,115200n8")
            self.login(f"Debian GNU/Linux 12 (live) {self.hostname} ttyS0")
        elif device == "BiosSetup":
            say("Entering Setup...", 0.1)
            say("+-------------------- Setup Utility --------------------+")
            say("| Main  Advanced  Boot  Security  Save & Exit           |")
            say("+--------------------------------------------------------+")
            self.halt()
        elif device == "Floppy":
            say("Booting from Floppy...", 0.2)
            say("Non-system disk or disk error")
            return False
        return True

    def pxe(self) -> None:
        say("Booting from Network (PXE)...", 0.05)
        say("iPXE 1.21.1 -- Open Source Network Boot Firmware", 0.05)
        say(f"net0: {self.mac} using virtio-net", 0.05)
        say("DHCP (net0 " + self.mac + ")... ok", 0.2)
        last = int(self.mac.replace(":", "")[-2:], 16) % 200 + 20
        say(f"net0: 192.0.2.{last}/24 gw 192.0.2.1", 0.05)
        say("Next server: 192.0.2.1  Filename: pxelinux.0", 0.05)
        say("tftp://192.0.2.1/pxelinux.0... ok", 0.1)
        say("PXELINUX 6.04 PXE  Copyright (C) 1994-2015 H. Peter Anvin et al", 0.05)
        say("Loading debian-installer/amd64/linux... ok", 0.1)
        say("Loading debian-installer/amd64/initrd.gz... ok", 0.1)
        self.kernel("auto=true priority=critical console=ttyS0,115200n8")
        self.login(f"Debian GNU/Linux 12 installer (PXE) {self.hostname} ttyS0")

    def kernel(self, cmdline: str) -> None:
        lines = [
            f"Linux version {KERNEL} (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14)"
            " 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1.90-1 (2024-05-03)",
            f"Command line: BOOT_IMAGE=/vmlinuz-{KERNEL} {cmdline}",
            "x86/fpu: Supporting XSAVE feature 0x001: 'x87 floating point registers'",
            "BIOS-provided physical RAM map:" if not self.uefi else "efi: EFI v2.7 by EDK II",
            "smpboot: CPU0: Virtual CPU @ 2.40GHz (family: 0x6, model: 0x55, stepping: 0x4)",
            "smp: Brought up 1 node, 4 CPUs",
            "Memory: 16268404K/16776760K available",
            "Serial: 8250/16550 driver, 4 ports, IRQ sharing enabled",
            "serial8250: ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a 16550A",
            "Freeing unused kernel image (initmem) memory: 2852K",
            "Run /init as init process",
            "systemd[1]: systemd 252.22-1~deb12u1 running in system mode",
            f"systemd[1]: Hostname set to <{self.hostname}>.",
            "[  OK  ] Reached target local-fs.target - Local File Systems.",
            "[  OK  ] Started systemd-journald.service - Journal Service.",
            "[  OK  ] Reached target network.target - Network.",
            "[  OK  ] Started ssh.service - OpenBSD Secure Shell server.",
            "[  OK  ] Started serial-getty@ttyS0.service - Serial Getty on ttyS0.",
            "[  OK  ] Reached target multi-user.target - Multi-User System.",
        ]
        for line in lines:
            if line.startswith("["):
                say(line, 0.03)
            else:
                say(f"[{self.uptime():12.6f}] {line}", 0.03)
        self.os_up = True

    def uptime(self) -> float:
        return time.monotonic() - self.started

    # -- the OS: a getty and a tiny shell ------------------------------------------------------
    def login(self, banner: str) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C at the prompt
        say()
        say(banner)
        say()
        while True:
            name = self.prompt(f"{self.hostname} login: ")
            if name is None or not name.strip():
                continue  # as getty: an empty line asks again
            name = name.strip()
            say(f"Linux {self.hostname} {KERNEL} #1 SMP PREEMPT_DYNAMIC x86_64")
            say()
            self.shell(name)

    def shell(self, user: str) -> None:
        sign = "#" if user == "root" else "$"
        while True:
            line = self.prompt(f"{user}@{self.hostname}:~{sign} ")
            if line is None or line.strip() in ("exit", "logout"):
                say("logout")
                return
            self.run(line.strip())

    def run(self, line: str) -> None:
        command, _, rest = line.partition(" ")
        if not command:
            return
        if command == "echo":
            say(rest)
        elif command == "hostname":
            say(self.hostname)
        elif command == "uname":
            say(f"Linux {self.hostname} {KERNEL} #1 SMP PREEMPT_DYNAMIC x86_64 GNU/Linux"
                if "-a" in rest else "Linux")
        elif command == "uptime":
            say(f"up {self.uptime():.0f} seconds")
        elif command in ("poweroff", "shutdown", "halt"):
            self.shutdown()
        elif command == "help":
            say("commands: echo hostname uname uptime poweroff exit help")
        else:
            say(f"-bash: {command}: command not found")

    @staticmethod
    def prompt(text: str) -> str | None:
        """One line from the console; None at end of input (Ctrl-D) or on Ctrl-C."""
        write(text)
        try:
            line = sys.stdin.readline()
        except KeyboardInterrupt:
            say()
            return None
        return line.rstrip("\r\n") if line else None

    def shutdown(self) -> None:
        for line in ("[  OK  ] Stopped target multi-user.target - Multi-User System.",
                     "[  OK  ] Stopped ssh.service - OpenBSD Secure Shell server.",
                     "[  OK  ] Reached target shutdown.target - System Shutdown.",
                     "reboot: Power down"):
            say(line, 0.02)
        sys.exit(0)

    @staticmethod
    def halt() -> None:
        while True:
            signal.pause()

    # -- signals from the BMC ------------------------------------------------------------------
    def on_power_button(self, _signum: int, _frame: FrameType | None) -> None:
        say()
        if self.os_up:
            say(f"[{self.uptime():12.6f}] ACPI: Power Button [PWRF] pressed, powering off")
            self.shutdown()
        say("Power button pressed: powering off")
        sys.exit(0)

    def on_nmi(self, _signum: int, _frame: FrameType | None) -> None:
        reason = random.choice((0x2D, 0x3D, 0x30))
        say()
        say(f"[{self.uptime():12.6f}] Uhhuh. NMI received for unknown reason {reason:02x} "
            "on CPU 0.")
        say(f"[{self.uptime():12.6f}] Dazed and confused, but trying to continue")


def main() -> None:
    machine = Machine()
    signal.signal(signal.SIGTERM, machine.on_power_button)
    signal.signal(signal.SIGUSR1, machine.on_nmi)
    signal.signal(signal.SIGHUP, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # no Ctrl-C during POST
    try:
        machine.post()
    except OSError:  # the console went away (EIO, EPIPE)
        os._exit(0)


if __name__ == "__main__":
    main()
