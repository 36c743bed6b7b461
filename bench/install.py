"""Installing the peers and tools at run time (never in `--quick` mode).

Python peers (VirtualBMC, sushy-tools, libvirt-python) go into their own virtualenv, so their
pins never touch the project's environment: $BMC_BENCH_VENV, default
~/.cache/bmc-emulator-bench/venv. Debian packages (ipmitool, wrk, openipmi, and libvirt-dev +
pkg-config + gcc to build libvirt-python) come from apt-get when we are root.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

from bench.util import run

PY_PEERS = ("virtualbmc", "sushy-tools", "libvirt-python")
#: what each Python distribution imports as, to check that it is there
_IMPORTS = {"virtualbmc": "virtualbmc", "sushy-tools": "sushy_tools",
            "libvirt-python": "libvirt", "pyghmi": "pyghmi"}
APT_TIMEOUT = 600.0
PIP_TIMEOUT = 600.0

Log = Callable[[str], None]


def venv_dir() -> Path:
    default = Path.home() / ".cache" / "bmc-emulator-bench" / "venv"
    return Path(os.environ.get("BMC_BENCH_VENV", default))


def venv_bin(name: str) -> Path:
    return venv_dir() / "bin" / name


def venv_python() -> Path:
    return venv_bin("python")


def _venv_has(module: str) -> bool:
    python = venv_python()
    if not python.exists():
        return False
    try:
        result = run([str(python), "-c", f"import {module}"], timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def missing_python_peer(dist: str) -> str | None:
    """Why `dist` (and libvirt-python, which every Python peer here uses) cannot run, or None."""
    for name in (dist, "libvirt-python"):
        if not _venv_has(_IMPORTS[name]):
            return f"{name} not installed in {venv_dir()}"
    return None


def pyghmi_python() -> str | None:
    """An interpreter with pyghmi, for the kept-session client: the peers' venv, else ours."""
    if _venv_has("pyghmi"):
        return str(venv_python())
    if importlib.util.find_spec("pyghmi") is not None:
        return sys.executable
    return None


# -- installing ---------------------------------------------------------------------------------
class Installer:
    """Installs what is missing, once; every failure becomes a message, never an exception."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self._apt_updated = False

    def apt(self, *packages: str) -> str | None:
        """apt-get install `packages`; None on success, else why not."""
        if os.geteuid() != 0:
            return f"not root: install {' '.join(packages)} with apt-get yourself"
        if shutil.which("apt-get") is None:
            return "no apt-get on this machine"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        steps = [] if self._apt_updated else [["apt-get", "update", "-q"]]
        steps.append(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages])
        for cmd in steps:
            self.log(f"install: {' '.join(cmd)}")
            try:
                result = run(cmd, timeout=APT_TIMEOUT, env=env)
            except subprocess.TimeoutExpired:
                return f"{' '.join(cmd[:2])} timed out"
            if result.returncode != 0:
                return f"{' '.join(cmd[:2])} failed: {_last_line(result.stderr)}"
            self._apt_updated = self._apt_updated or cmd[1] == "update"
        return None

    def tool(self, command: str, package: str) -> str | None:
        if shutil.which(command) or Path("/usr/sbin", command).exists():
            return None
        return self.apt(package)

    def python_peers(self) -> str | None:
        """The peers' venv with VirtualBMC, sushy-tools and libvirt-python."""
        if all(_venv_has(_IMPORTS[d]) for d in PY_PEERS):
            return None
        build_deps = [p for p, present in (("libvirt-dev", _has_libvirt_dev()),
                                           ("pkg-config", shutil.which("pkg-config")),
                                           ("gcc", shutil.which("gcc"))) if not present]
        if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
            build_deps.append("python3-dev")
        if build_deps and (problem := self.apt(*build_deps)):
            return problem
        if not venv_python().exists():
            self.log(f"install: python -m venv {venv_dir()}")
            result = run([sys.executable, "-m", "venv", str(venv_dir())], timeout=120)
            if result.returncode != 0:
                return f"cannot create a venv: {_last_line(result.stderr)}"
        cmd = [str(venv_python()), "-m", "pip", "install", "-q", *PY_PEERS]
        self.log(f"install: pip install {' '.join(PY_PEERS)} (into {venv_dir()})")
        try:
            result = run(cmd, timeout=PIP_TIMEOUT,
                         env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        except subprocess.TimeoutExpired:
            return "pip install timed out"
        if result.returncode != 0:
            return f"pip install failed: {_last_line(result.stderr)}"
        return None


def _has_libvirt_dev() -> bool:
    try:
        return run(["pkg-config", "--exists", "libvirt"], timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"
