"""OpenIPMI's `ipmi_sim` as a real BMC for tests: `with IpmiSim(workdir) as sim: ...`.

What ipmi_sim needs is written into `workdir` (Debian's package ships no example config): a
lan.conf (one LAN channel on 127.0.0.1 and a free port, one admin user, suites up to 3: it has
no suite 17 and no Get Channel Cipher Suites), a one-line .emu (a BMC at 0x20 with no SDRs)
and the chassis-control script it runs for power and boot: the script keeps the state in
files, so a test reads what the BMC was told (`sim.power`, `sim.boot`, `sim.calls`).

Same knowledge as bench/peers.py (which the benchmark keeps to itself), plus what a proxy test
needs to observe: the boot device, soft-off and reset, and a log of every call.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from pathlib import Path

from bench.util import free_ports

HOST = "127.0.0.1"
USERNAME = "admin"
PASSWORD = "sim-secret-1"

#: ipmi_sim runs `SCRIPT MC get PARM...` (print `PARM:VALUE` lines) and `SCRIPT MC set PARM
#: VALUE...`; power 0/1, boot none|pxe|default|disk|safe|diag|cdrom|bios, shutdown 1 (soft
#: off), reset 1 (hard reset, the power stays on)
_CHASSIS_CONTROL = """\
#!/bin/sh
dir={state}
echo "$*" >> "$dir/calls"
shift
op=$1
shift
if [ "$op" = get ]; then
    for parm in "$@"; do
        case $parm in
            power) echo "power:$(cat "$dir/power")" ;;
            boot) echo "boot:$(cat "$dir/boot")" ;;
        esac
    done
    exit 0
fi
while [ $# -ge 2 ]; do
    case $1 in
        power) echo "$2" > "$dir/power" ;;
        boot) echo "$2" > "$dir/boot" ;;
        shutdown) echo 0 > "$dir/power" ;;
    esac
    shift 2
done
"""


def available() -> str | None:
    """Why ipmi_sim cannot run here, or None."""
    return None if shutil.which("ipmi_sim") else "ipmi_sim not installed (Debian: openipmi)"


class IpmiSim:
    """One ipmi_sim process on 127.0.0.1 and a free UDP port, stopped by `stop()`/`with`."""

    def __init__(self, workdir: Path, *, username: str = USERNAME, password: str = PASSWORD,
                 power_on: bool = False) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.password = password
        self.state = workdir / "chassis"
        self.state.mkdir(exist_ok=True)
        (self.state / "power").write_text("1\n" if power_on else "0\n")
        (self.state / "boot").write_text("none\n")
        (self.state / "calls").write_text("")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    # -- what the BMC was told ----------------------------------------------------------------
    @property
    def power(self) -> bool:
        return (self.state / "power").read_text().strip() == "1"

    @power.setter
    def power(self, on: bool) -> None:
        """Switch the server 'by hand', behind the proxy's back."""
        (self.state / "power").write_text("1\n" if on else "0\n")

    @property
    def boot(self) -> str:
        return (self.state / "boot").read_text().strip()

    @property
    def calls(self) -> list[str]:
        """Every chassis-control call so far, e.g. '0x20 set boot pxe'."""
        return (self.state / "calls").read_text().splitlines()

    # -- the process ----------------------------------------------------------------------------
    def start(self) -> IpmiSim:
        script = self.workdir / "chassis_control.sh"
        script.write_text(_CHASSIS_CONTROL.format(state=self.state))
        script.chmod(0o755)
        for attempt in range(3):
            self.port = free_ports("udp")
            conf = self._write_conf(script)
            emu = self.workdir / "sim.emu"
            emu.write_text("mc_setbmc 0x20\n"
                           "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 "
                           "persist_sdr\n"
                           "mc_enable 0x20\n")
            persist = self.workdir / "persist"
            persist.mkdir(exist_ok=True)
            log = open(self.workdir / "ipmi_sim.log", "ab")  # noqa: SIM115 - child's output
            with log:
                self.proc = subprocess.Popen(
                    ["ipmi_sim", "-c", str(conf), "-f", str(emu), "-n", "-s", str(persist)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    cwd=self.workdir, start_new_session=True)
            if self._wait_ready(10.0):
                return self
            self.stop()
            if attempt == 2:
                raise RuntimeError(f"ipmi_sim did not answer on {HOST}:{self.port}:\n"
                                   + (self.workdir / "ipmi_sim.log").read_text()[-2000:])
        raise AssertionError("unreachable")

    def _write_conf(self, script: Path) -> Path:
        conf = self.workdir / "lan.conf"
        auths = "none md2 md5 straight"
        conf.write_text(textwrap.dedent(f"""\
            name "proxytest"
            set_working_mc 0x20
              startlan 1
                addr {HOST} {self.port}
                priv_limit admin
                allowed_auths_callback {auths}
                allowed_auths_user {auths}
                allowed_auths_operator {auths}
                allowed_auths_admin {auths}
                guid a123456789abcdefa123456789abcdef
              endlan
              chassis_control "{script} 0x20"
              user 2 true "{self.username}" "{self.password}" admin 10 {auths}
            """))
        return conf

    def _wait_ready(self, seconds: float) -> bool:
        """Until ipmi_sim answers a Get Channel Authentication Capabilities (RMCP, no auth)."""
        # RMCP header, IPMI 1.5 session header (no auth), then the request to the BMC (0x20)
        request = bytes([0x06, 0x00, 0xFF, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x09,
                         0x20, 0x18, 0xC8, 0x81, 0x00, 0x38, 0x8E, 0x04, 0xB5])
        deadline = time.monotonic() + seconds
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    return False
                sock.sendto(request, (HOST, self.port))
                with contextlib.suppress(OSError):
                    if sock.recv(512):
                        return True
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def __enter__(self) -> IpmiSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
