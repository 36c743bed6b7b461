"""A Docker daemon and a local base image for tests, with no image pulls.

    from tests.docker_env import ensure_dockerd, ensure_base_image
    host = ensure_dockerd()          # a DOCKER_HOST URL, e.g. "unix:///var/run/docker.sock"
    image = ensure_base_image()      # "local/bmc-test-base" (Debian bookworm minbase)

`ensure_dockerd` reuses a reachable daemon ($DOCKER_HOST, then /var/run/docker.sock, then one
this module started earlier); otherwise, as root, it starts `dockerd` in the background with a
data root of its own and waits for it. BMC_TEST_OWN_DOCKERD=1 skips the first two (tests then
never touch a developer's daemon). The daemon is left running so later test processes
reuse it. `ensure_base_image` imports a rootfs made offline-from-Docker-Hub by `debootstrap`
(from Debian's mirror); the rootfs tarball is cached under /var/cache/bmc-emulator-test/ so
only the first run on a machine pays for debootstrap. Both hold a file lock, so parallel test
processes neither start two daemons nor bootstrap twice.

Both raise `DockerUnavailable` when they cannot (not root and no daemon, dockerd fails to
start, debootstrap fails); a fixture may skip on it only where the machine truly cannot.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["DockerUnavailable", "ensure_dockerd", "ensure_base_image", "docker_client",
           "BASE_IMAGE", "CACHE_DIR"]

CACHE_DIR = Path(os.environ.get("BMC_TEST_CACHE", "/var/cache/bmc-emulator-test"))
BASE_IMAGE = "local/bmc-test-base"
SYSTEM_SOCKET = "unix:///var/run/docker.sock"
#: the daemon this module starts when no other is reachable (own socket, data and exec roots,
#: so it never touches a system daemon's state)
OWN_SOCKET_PATH = Path("/run/bmc-emulator-test-docker.sock")
OWN_SOCKET = f"unix://{OWN_SOCKET_PATH}"
OWN_DATA_ROOT = Path("/var/lib/bmc-emulator-test-docker")
OWN_EXEC_ROOT = Path("/run/bmc-emulator-test-docker")
OWN_PIDFILE = Path("/run/bmc-emulator-test-docker.pid")
DOCKERD_START_TIMEOUT = 60.0
SUITE = "bookworm"
ROOTFS_TAR = CACHE_DIR / f"{SUITE}-minbase-rootfs.tar"


class DockerUnavailable(RuntimeError):
    """No Docker daemon (or base image) can be had on this machine."""


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive lock shared by every process on this machine (blocks until free)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def docker_client(host: str | None = None, timeout: float = 30.0):  # -> docker.DockerClient
    """A Docker SDK client for `host` (default: `ensure_dockerd()`)."""
    import docker

    return docker.DockerClient(base_url=host or ensure_dockerd(), timeout=timeout)


def _reachable(url: str) -> bool:
    """Does a Docker daemon answer /_ping at `url` within a few seconds?"""
    if url.startswith("unix://") and not Path(url[len("unix://"):]).exists():
        return False
    try:
        client = docker_client(url, timeout=5)
    except Exception:  # noqa: BLE001 - any failure means "not this one"
        return False
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001
        return False
    finally:
        client.close()


def ensure_dockerd() -> str:
    """A DOCKER_HOST URL of a running Docker daemon, starting one (as root) if needed."""
    candidates = [os.environ.get("DOCKER_HOST", ""), SYSTEM_SOCKET, OWN_SOCKET]
    if os.environ.get("BMC_TEST_OWN_DOCKERD") == "1":  # keep tests off a developer's daemon
        candidates = [OWN_SOCKET]
    for url in filter(None, candidates):
        if _reachable(url):
            return url
    with _locked("dockerd"):
        if _reachable(OWN_SOCKET):  # another test process started it while we waited
            return OWN_SOCKET
        _start_dockerd()
    return OWN_SOCKET


def dockerd_or_skip() -> str:
    """`ensure_dockerd()` for a test: it skips, saying why, only where no daemon can be
    started (not root); as root a failure to start one is the test's failure."""
    import pytest

    try:
        return ensure_dockerd()
    except DockerUnavailable as exc:
        if os.geteuid() != 0:
            pytest.skip(f"needs root to start a Docker daemon: {exc}")
        raise


def _start_dockerd() -> None:
    if os.geteuid() != 0:
        raise DockerUnavailable("no Docker daemon is reachable and starting one needs root")
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not Path(dockerd).exists():
        raise DockerUnavailable("no Docker daemon is reachable and dockerd is not installed "
                                "(apt-get install docker.io)")
    for path in (OWN_DATA_ROOT, OWN_EXEC_ROOT, CACHE_DIR):
        path.mkdir(parents=True, exist_ok=True)
    log_path = CACHE_DIR / "dockerd.log"
    with open(log_path, "ab") as log:
        # its own session: the daemon outlives this test process on purpose (reused later)
        process = subprocess.Popen(
            [dockerd, "--host", OWN_SOCKET, "--data-root", str(OWN_DATA_ROOT),
             "--exec-root", str(OWN_EXEC_ROOT), "--pidfile", str(OWN_PIDFILE),
             # a containerd shared with another daemon keeps ours apart by namespace
             "--containerd-namespace", "bmc-emulator-test",
             "--containerd-plugins-namespace", "bmc-emulator-test-plugins"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    deadline = time.monotonic() + DOCKERD_START_TIMEOUT
    while time.monotonic() < deadline:
        if _reachable(OWN_SOCKET):
            return
        if process.poll() is not None:
            break
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    if process.poll() is None:
        process.kill()
    raise DockerUnavailable(f"dockerd did not come up on {OWN_SOCKET} within "
                            f"{DOCKERD_START_TIMEOUT:.0f}s; its log ends:\n{tail}")


def ensure_base_image() -> str:
    """The tag of a local Debian base image (built once by debootstrap, never pulled)."""
    client = docker_client()
    try:
        if _has_image(client):
            return BASE_IMAGE
        with _locked("base-image"):
            if _has_image(client):  # imported by another process while we waited
                return BASE_IMAGE
            if not ROOTFS_TAR.exists():
                _debootstrap(ROOTFS_TAR)
            client.api.import_image_from_file(
                str(ROOTFS_TAR), repository=BASE_IMAGE, tag="latest",
                changes=['CMD ["/bin/bash"]'])
            if not _has_image(client):
                raise DockerUnavailable(f"importing {ROOTFS_TAR} did not create {BASE_IMAGE}")
    finally:
        client.close()
    return BASE_IMAGE


def _has_image(client) -> bool:
    import docker.errors

    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        return False
    return True


def _debootstrap(target: Path) -> None:
    """Bootstrap a minimal bookworm into a tarball at `target` (atomically: tmp + rename)."""
    if os.geteuid() != 0:
        raise DockerUnavailable("building the base image needs root (debootstrap)")
    if shutil.which("debootstrap") is None:
        raise DockerUnavailable("debootstrap is not installed (apt-get install debootstrap)")
    mirror = os.environ.get("BMC_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise DockerUnavailable(f"debootstrap failed ({result.returncode}):\n"
                                    f"{(result.stdout + result.stderr)[-2000:]}")
        # apt caches are dead weight in a test image
        for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        partial = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
                       check=True, timeout=300)
        os.replace(partial, target)
