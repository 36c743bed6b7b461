"""The files the peers need to run here: libvirt mock domains, ipmi_sim's config, scripts.

Nothing of this ships with the peers (ipmi_sim's Debian package has no example config), so it
is written into each run's work directory.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from bench.probes import PASSWORD, USERNAME

DOMAIN = "bench-0"
DOMAIN_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"

#: libvirt's test driver reads its whole state from this file; `test:///default` would reset
#: the state for every connection (VirtualBMC and sushy open one per request)
DOMAINS_XML = f"""\
<node>
  <domain type='test'>
    <name>{DOMAIN}</name>
    <uuid>{DOMAIN_UUID}</uuid>
    <memory>1048576</memory>
    <currentMemory>1048576</currentMemory>
    <vcpu>1</vcpu>
    <os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>
    <on_poweroff>destroy</on_poweroff>
    <devices></devices>
  </domain>
</node>
"""


def libvirt_test_uri(workdir: Path) -> str:
    path = workdir / "domains.xml"
    if not path.exists():
        path.write_text(DOMAINS_XML)
    return f"test://{path.resolve()}"


#: VirtualBMC's class run directly (what a vbmcd child process runs), without vbmcd's ZMQ
#: control plane and config directory; session_timeout 1 s is VirtualBMC's own default
VBMC_SCRIPT = f"""\
import sys
from virtualbmc.vbmc import VirtualBMC

host, port, uri = sys.argv[1], int(sys.argv[2]), sys.argv[3]
bmc = VirtualBMC({USERNAME!r}, {PASSWORD!r}, port, host, {DOMAIN!r}, uri)
bmc.listen(timeout=1)
"""


def write_vbmc_script(workdir: Path) -> Path:
    path = workdir / "vbmc_run.py"
    path.write_text(VBMC_SCRIPT)
    return path


def write_ipmi_sim_files(workdir: Path, host: str, port: int) -> tuple[Path, Path, Path]:
    """lan.conf, the .emu command file and a state dir for one ipmi_sim on host:port."""
    state = workdir / "ipmi_sim-state"
    state.mkdir(exist_ok=True)
    power = workdir / "power"
    power.write_text("0\n")
    script = workdir / "chassis_control.sh"
    script.write_text(_CHASSIS_CONTROL.format(power=power))
    script.chmod(0o755)
    conf = workdir / "lan.conf"
    conf.write_text(textwrap.dedent(f"""\
        name "bench"
        set_working_mc 0x20
          startlan 1
            addr {host} {port}
            priv_limit admin
            allowed_auths_callback none md2 md5 straight
            allowed_auths_user none md2 md5 straight
            allowed_auths_operator none md2 md5 straight
            allowed_auths_admin none md2 md5 straight
            guid a123456789abcdefa123456789abcdef
          endlan
          chassis_control "{script} 0x20"
          user 2 true "{USERNAME}" "{PASSWORD}" admin 10 none md2 md5 straight
        """))
    emu = workdir / "bench.emu"
    # a BMC at 0x20 with no device SDRs: power control needs none
    emu.write_text("mc_setbmc 0x20\n"
                   "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
                   "mc_enable 0x20\n")
    return conf, emu, state


#: ipmi_sim calls `script MC get PARM...` and `script MC set PARM VALUE...` for chassis control
_CHASSIS_CONTROL = """\
#!/bin/sh
state={power}
shift
op=$1
shift
if [ "$op" = get ]; then
    for parm in "$@"; do
        case $parm in
            power) echo "power:$(cat "$state")" ;;
            boot) echo "boot:none" ;;
        esac
    done
else
    while [ $# -ge 2 ]; do
        [ "$1" = power ] && echo "$2" > "$state"
        shift 2
    done
fi
"""


def write_sushy_config(workdir: Path) -> Path:
    """sushy-emulator's config: its state (the fake driver's systems) inside the work dir."""
    state = workdir / "sushy-state"
    state.mkdir(exist_ok=True)
    path = workdir / "sushy.conf"
    path.write_text(f"SUSHY_EMULATOR_STATE_DIR = {str(state)!r}\n")
    return path
