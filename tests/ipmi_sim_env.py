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
import shutil
import socket
import subprocess
import textwrap
import time
from pathlib import Path

from bench.util import free_ports, stop_group

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
                 power_on: bool = False, emu: str = "") -> None:
        self.workdir = workdir
        #: more .emu commands after the BMC is added (sensors, SEL, FRU data)
        self.emu = emu
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
                           + self.emu
                           + "mc_enable 0x20\n")
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
        if proc is not None:
            stop_group(proc)

    def __enter__(self) -> IpmiSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- a BMC with data: sensors (SDR + reading + thresholds), SEL entries, FRU data ----------------
def full_sensor_sdr(number: int, name: str, sensor_type: int, unit: int, m: int,
                    thresholds: tuple[int, int, int, int, int, int], entity: int = 0x07) -> str:
    """`main_sdr_add` for a threshold sensor (full SDR, type 01h): value = m * raw, `unit` an
    IPMI unit code (1 degrees C, 4 volts, 6 watts, 18 RPM); `thresholds` raw LNR, LC, LNC,
    UNC, UC, UNR."""
    lnr, lc, lnc, unc, uc, unr = thresholds
    body = [0x20, 0x00, number, entity, 0x01, 0x7F, 0x68, sensor_type, 0x01,
            0xFF, 0x7F, 0xFF, 0x7F, 0x3F, 0x3F,  # event masks; all 6 thresholds readable
            0x00, unit, 0x00, 0x00, m & 0xFF, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0xFF, 0x00, 0xFF, 0x00,
            unr, uc, unc, lnr, lc, lnc, 0x02, 0x02, 0x00, 0x00, 0x00]
    text = name.encode()
    body += [0xC0 | len(text), *text]
    record = [0x00, 0x00, 0x51, 0x01, len(body), *body]
    return "main_sdr_add 0x20 " + " ".join(f"0x{b:02x}" for b in record) + "\n"


def threshold_sensor(number: int, name: str, sensor_type: int, unit: int, m: int,
                     raw: int, thresholds: tuple[int, int, int, int, int, int],
                     value_file: Path | None = None) -> str:
    """The .emu lines of one threshold sensor reading `raw` (value m * raw); with
    `value_file`, ipmi_sim reads the raw value from that file every second (a test changes
    the reading by writing it)."""
    lnr, lc, lnc, unc, uc, unr = thresholds
    poll = f' poll 1000 file "{value_file}"' if value_file is not None else ""
    return (full_sensor_sdr(number, name, sensor_type, unit, m, thresholds)
            + f"sensor_add 0x20 0 {number} 0x{sensor_type:02x} 0x01{poll}\n"
            + f"sensor_set_threshold 0x20 0 {number} settable 111111 "
            + f"{unr} {uc} {unc} {lnr} {lc} {lnc}\n"
            + f"sensor_set_value 0x20 0 {number} {raw} 0\n")


def sel_event(timestamp: int, sensor_type: int, number: int, event_type: int,
              data: tuple[int, int, int], asserted: bool = True) -> str:
    """`sel_add` of a system event record logged by the BMC (generator 20h)."""
    direction = event_type | (0 if asserted else 0x80)
    body = [*timestamp.to_bytes(4, "little"), 0x20, 0x00, 0x04, sensor_type, number,
            direction, *data]
    return "sel_add 0x20 0x02 " + " ".join(f"0x{b:02x}" for b in body) + "\n"


def fru_data(image: bytes) -> str:
    """`mc_add_fru_data` of FRU device 0."""
    return (f"mc_add_fru_data 0x20 0 {len(image)} data "
            + " ".join(f"0x{b:02x}" for b in image) + "\n")


#: what `sample_emu` gives the BMC: names and values a test expects to see forwarded
SAMPLE_FRU = {"manufacturer": "Acme Corp", "product": "Acme R100", "serial": "ACME-SN-0042",
              "part_number": "PN-42"}


def sample_emu(value_file: Path) -> str:
    """A BMC with three threshold sensors ("CPU Temp" reads the raw value in `value_file`,
    45 to start with), two SEL entries (CPU Temp upper critical, Fan 1 lower critical) and
    FRU data (`SAMPLE_FRU`)."""
    from bmc.fru import FruInventory

    value_file.write_text("45\n")
    fru = FruInventory(board_manufacturer="Acme Corp", board_product="X11 Board",
                       board_serial="MB-778", product_manufacturer=SAMPLE_FRU["manufacturer"],
                       product_name=SAMPLE_FRU["product"],
                       product_part_number=SAMPLE_FRU["part_number"],
                       product_serial=SAMPLE_FRU["serial"], product_version="B2").encode()
    return (threshold_sensor(1, "CPU Temp", 0x01, 1, 1, 45, (1, 3, 5, 85, 95, 105),
                             value_file)
            + threshold_sensor(2, "Fan 1", 0x04, 18, 60, 140, (0, 10, 12, 250, 252, 254))
            + threshold_sensor(3, "12V Rail", 0x02, 4, 1, 12, (0, 10, 11, 13, 14, 15))
            + "sel_enable 0x20 1000 0x0a\n"
            # ipmi_sim stamps entries with its own clock ("Pre-Init": it was never set)
            + sel_event(0, 0x01, 1, 0x01, (0x59, 96, 95))
            + sel_event(0, 0x04, 2, 0x01, (0x52, 5, 10))
            + fru_data(fru))
