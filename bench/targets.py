"""What the benchmark starts: us and each peer, on 127.0.0.1 with free ports.

A `Target` says what it serves (IPMI, Redfish or both), whether it can run here, and how to
start one instance; `start()` returns a `Running` with the process and its endpoints.
"""

from __future__ import annotations

import compileall
import functools
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench import install, peers
from bench.probes import PASSWORD, USERNAME
from bench.util import HOST, REPO, Proc, free_ports, start


@dataclass
class Running:
    proc: Proc
    ipmi: tuple[str, int] | None = None
    redfish: tuple[str, int] | None = None
    redfish_auth: tuple[str, str] | None = None


@dataclass
class Target:
    key: str
    label: str
    protocols: frozenset[str]
    #: pyghmi must be told to use suite 3 (SHA1): the server has no suite 17
    pyghmi_sha1: bool = False
    notes: list[str] = field(default_factory=list)

    def unavailable(self) -> str | None:
        """Why this target cannot run here (not installed, ...), or None."""
        raise NotImplementedError

    def start(self, workdir: Path) -> Running:
        raise NotImplementedError


class Us(Target):
    """`bmc-emulator serve --nodes N` from this checkout (IPMI and Redfish in one process)."""

    def __init__(self, nodes: int = 3) -> None:
        super().__init__("us", "bmc-emulator", frozenset({"ipmi", "redfish"}), notes=[
            f"bmc-emulator: `serve --nodes {nodes}` (default backend), Redfish with Basic auth"])
        self.nodes = nodes

    def unavailable(self) -> str | None:
        return None

    def start(self, workdir: Path) -> Running:
        compile_checkout()
        taken: set[int] = set()
        ipmi_port = free_ports("udp", self.nodes, taken)
        redfish_port = free_ports("tcp", self.nodes, taken)
        cmd = [sys.executable, "-m", "bmc.cli", "serve", "--nodes", str(self.nodes),
               "--bind", HOST, "--ipmi-port-base", str(ipmi_port),
               "--redfish-port-base", str(redfish_port), "--log-level", "warning"]
        proc = start(cmd, workdir / "us.log", env=our_env(), cwd=REPO)
        return Running(proc, (HOST, ipmi_port), (HOST, redfish_port), (USERNAME, PASSWORD))


@functools.cache
def compile_checkout() -> None:
    """Byte-compile our packages once, as `pip install` does, so that a start measures what an
    installed emulator does rather than compiling every module (PYTHONDONTWRITEBYTECODE may
    be set, and the peers run from installed, compiled packages)."""
    for package in ("bmc", "ipmi", "redfish", "backends"):
        compileall.compile_dir(REPO / package, quiet=1)


def our_env() -> dict[str, str]:
    """The environment for our server: this checkout first on the path.

    (A `redfish` distribution in site-packages, DMTF's python-redfish-library, would
    otherwise shadow our `redfish` package when the checkout is not the working directory.)
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("BMC_EMULATOR_PASSWORD", None)
    env.pop("BMC_EMULATOR_USERNAME", None)
    return env


class VirtualBmc(Target):
    """OpenStack VirtualBMC's `VirtualBMC` class on libvirt's mock (test) driver."""

    def __init__(self) -> None:
        super().__init__("vbmc", "VirtualBMC", frozenset({"ipmi"}), pyghmi_sha1=True, notes=[
            "VirtualBMC: its VirtualBMC class (what each vbmcd child runs) in one process, "
            "libvirt test:///<file> domain"])

    def unavailable(self) -> str | None:
        return install.missing_python_peer("virtualbmc")

    def start(self, workdir: Path) -> Running:
        port = free_ports("udp")
        uri = peers.libvirt_test_uri(workdir)
        script = peers.write_vbmc_script(workdir)
        cmd = [str(install.venv_python()), str(script), HOST, str(port), uri]
        return Running(start(cmd, workdir / "vbmc.log"), ipmi=(HOST, port))


class IpmiSim(Target):
    """OpenIPMI's `ipmi_sim` with a generated lan.conf, .emu and chassis-control script."""

    def __init__(self) -> None:
        super().__init__("ipmi_sim", "ipmi_sim", frozenset({"ipmi"}), pyghmi_sha1=True, notes=[
            "ipmi_sim: minimal lan.conf + .emu, power through a chassis_control shell script "
            "(run per power query); no Get Channel Cipher Suites, no suite 17"])

    def unavailable(self) -> str | None:
        return None if shutil.which("ipmi_sim") else "ipmi_sim not installed (apt openipmi)"

    def start(self, workdir: Path) -> Running:
        port = free_ports("udp")
        conf, emu, state = peers.write_ipmi_sim_files(workdir, HOST, port)
        cmd = ["ipmi_sim", "-c", str(conf), "-f", str(emu), "-n", "-p", "-s", str(state)]
        return Running(start(cmd, workdir / "ipmi_sim.log", cwd=workdir), ipmi=(HOST, port))


class Sushy(Target):
    """sushy-tools' `sushy-emulator` (Flask's development server) with one backend driver."""

    def __init__(self, driver: str) -> None:
        super().__init__(f"sushy-{driver}", f"sushy-{driver}", frozenset({"redfish"}), notes=[
            f"sushy-{driver}: sushy-emulator --{'fake' if driver == 'fake' else 'libvirt-uri'}"
            + (" test:///<file>" if driver == "libvirt" else "")
            + ", no auth (its Basic auth checks bcrypt per request)"])
        self.driver = driver

    def unavailable(self) -> str | None:
        return install.missing_python_peer("sushy-tools")

    def start(self, workdir: Path) -> Running:
        port = free_ports("tcp")
        config = peers.write_sushy_config(workdir)
        backend = (["--fake"] if self.driver == "fake"
                   else ["--libvirt-uri", peers.libvirt_test_uri(workdir)])
        cmd = [str(install.venv_bin("sushy-emulator")), "--config", str(config), "-i", HOST,
               "-p", str(port), *backend]
        return Running(start(cmd, workdir / f"sushy-{self.driver}.log"), redfish=(HOST, port))


def all_targets(nodes: int = 3) -> list[Target]:
    return [Us(nodes), VirtualBmc(), IpmiSim(), Sushy("fake"), Sushy("libvirt")]
