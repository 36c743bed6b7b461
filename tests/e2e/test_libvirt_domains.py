"""The libvirt backend end to end: the real emulator over real libvirt, driven by ipmitool,
requests and (for the serial console) `ipmitool sol activate` under pexpect.

- libvirt's test driver, hosted by libvirtd (`test+unix:///default`) so that this process and
  the emulator see the same domains: power and boot device over IPMI, Redfish Reset, and a
  domain destroyed from outside showing up as power off and a SEL entry;
- QEMU (`qemu:///system`) running a 512-byte boot-sector guest (tests/libvirt_env.py): its
  banner through SOL, and typed bytes echoed back; a Redfish InsertMedia of an http image
  landing in the running VM's CD-ROM; the VNC endpoint in Redfish; a reset to CD-ROM;
- a private libvirtd killed and restarted under a backend: errors meanwhile, then reconnected.

Every check after an action polls with a bounded wait: actions may complete asynchronously.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest
import requests
from conftest import Emulator, Launcher

from backends import BackendError, BootDevice, PowerState, create_backend
from backends import libvirt_xml as dx
from tests.libvirt_env import (
    BANNER,
    TEST_DAEMON_URI,
    Domains,
    PrivateLibvirtd,
    ensure_libvirtd,
    fake_domain_xml,
    kvm_usable,
    qemu_xml,
    unique_name,
    write_guest_image,
)

TIMEOUT = 30.0
#: KVM is used only if asked for: nested under this machine's hypervisor it boots the guest in
#: ~5 s where TCG takes ~1 s (SeaBIOS's port I/O is what nested KVM is slow at)
USE_KVM = os.environ.get("BMC_TEST_LIBVIRT_KVM") == "1"


@pytest.fixture(scope="module", autouse=True)
def libvirtd() -> None:
    ensure_libvirtd()


def wait_for(condition: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.05)


def ipmi(bmc: Emulator, *command: str) -> str:
    done = subprocess.run(bmc.ipmitool(0, *command), capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"ipmitool {' '.join(command)}: {done.stderr}"
    return done.stdout


def power_status(bmc: Emulator) -> str:
    return ipmi(bmc, "chassis", "power", "status").strip().rsplit(" ", 1)[-1]


def libvirt_node(name: str, uri: str) -> dict[str, object]:
    return {"name": "vm", "backend": {"type": "libvirt", "uri": uri, "domain": name}}


# -- the test driver in libvirtd -----------------------------------------------------------------
@pytest.fixture
def test_domains() -> Iterator[Domains]:
    doms = Domains(TEST_DAEMON_URI)
    yield doms
    doms.cleanup()


def test_power_boot_device_and_outside_changes(emulator_factory: Launcher,
                                              test_domains: Domains) -> None:
    name = unique_name()
    test_domains.define(fake_domain_xml(name))
    bmc = emulator_factory([libvirt_node(name, TEST_DAEMON_URI)])
    dom = test_domains.get(name)
    assert power_status(bmc) == "off"

    # IPMI: a one-time PXE boot, then power on: the running domain boots the network first
    ipmi(bmc, "chassis", "bootdev", "pxe")
    ipmi(bmc, "chassis", "power", "on")
    wait_for(dom.isActive, "the domain to start")
    wait_for(lambda: power_status(bmc) == "on", "IPMI power status on")
    assert [b.get("dev") for b in dx.parse(test_domains.xml(name, inactive=False))
            .findall("os/boot")][0] == "network"
    ipmi(bmc, "chassis", "power", "off")
    wait_for(lambda: not dom.isActive(), "the domain to stop")
    wait_for(lambda: power_status(bmc) == "off", "IPMI power status off")

    # Redfish Reset
    system = f"{bmc.nodes[0].redfish_url}/redfish/v1/Systems/vm"
    auth = (bmc.username, bmc.password)
    response = requests.post(f"{system}/Actions/ComputerSystem.Reset", json={"ResetType": "On"},
                             auth=auth, timeout=TIMEOUT)
    assert response.status_code in (200, 202, 204), response.text
    wait_for(dom.isActive, "the domain to start (Redfish)")
    wait_for(lambda: requests.get(system, auth=auth, timeout=TIMEOUT).json()["PowerState"]
             == "On", "Redfish PowerState On")
    # the one-time override was used by the IPMI boot: this one is the domain's own order
    assert [b.get("dev") for b in dx.parse(test_domains.xml(name)).findall("os/boot")] == ["hd"]

    # from outside, as `virsh destroy`: the BMC sees the power go and logs it in the SEL
    sel_before = ipmi(bmc, "sel", "elist").splitlines()
    dom.destroy()
    wait_for(lambda: power_status(bmc) == "off", "IPMI power status off after destroy")
    wait_for(lambda: len(ipmi(bmc, "sel", "elist").splitlines()) > len(sel_before),
             "a SEL entry for the power off")
    new = ipmi(bmc, "sel", "elist").splitlines()[len(sel_before):]
    assert any(re.search(r"S5|soft-off|Power off", line, re.I) for line in new), new


# -- QEMU: the boot-sector guest ------------------------------------------------------------------
@pytest.fixture(scope="module")
def qemu_guest() -> Iterator[tuple[Domains, str]]:
    doms = Domains("qemu:///system")
    name = unique_name()
    image = write_guest_image(name)
    doms.files.append(image)
    try:
        doms.define(qemu_xml(name, image, kvm=USE_KVM and kvm_usable()))
        yield doms, name
    finally:
        doms.cleanup()


@pytest.fixture
def web() -> Iterator[tuple[str, Path]]:
    """An HTTP server on loopback serving (and yielding) a fresh directory."""
    root = Path("/tmp") / unique_name("bmcemu-www")
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(root, ignore_errors=True)


def test_qemu_guest_sol_media_and_vnc(emulator_factory: Launcher,
                                      qemu_guest: tuple[Domains, str],
                                      web: tuple[str, Path]) -> None:
    doms, name = qemu_guest
    image_dir = Path("/var/lib/libvirt/images") / unique_name("bmcemu-media")
    node = libvirt_node(name, "qemu:///system")
    node["backend"]["image_dir"] = str(image_dir)  # type: ignore[index]
    bmc = emulator_factory([node])
    dom = doms.get(name)
    started = time.monotonic()
    ipmi(bmc, "chassis", "power", "on")
    wait_for(dom.isActive, "the VM to start")
    child = pexpect.spawn(bmc.ipmitool(0, "sol", "activate")[0],
                          bmc.ipmitool(0, "sol", "activate")[1:], timeout=TIMEOUT)
    child.delaybeforesend = None
    try:
        child.expect(b"SOL Session operational")
        child.expect(BANNER)  # printed by the guest; replayed if it came before we attached
        print(f"power on to banner through SOL: {time.monotonic() - started:.2f} s")
        token = f"echo-{os.getpid()}"
        child.send(token.encode())
        child.expect(token.encode())  # the guest echoes each byte back on COM1
        child.send(b"\r~.")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)

    # Redfish: the VNC display of the running VM, and an http image in its CD-ROM
    auth = (bmc.username, bmc.password)
    manager = f"{bmc.nodes[0].redfish_url}/redfish/v1/Managers/BMC"
    oem = requests.get(manager, auth=auth, timeout=TIMEOUT).json()["Oem"]["BmcEmulator"]
    assert re.fullmatch(r"vnc://127\.0\.0\.1:59\d\d", oem["GraphicalConsoleURL"]), oem
    url, www = web
    (www / "install.iso").write_bytes(b"CD001" * 4096)
    try:
        response = requests.post(f"{manager}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
                                 json={"Image": f"{url}/install.iso"}, auth=auth,
                                 timeout=TIMEOUT)
        assert response.status_code in (200, 202, 204), response.text
        wait_for(lambda: (dx.cdrom_media(doms.xml(name, inactive=False)) or "").startswith(
            str(image_dir)), "the image in the running VM's CD-ROM")
        fetched = Path(dx.cdrom_media(doms.xml(name, inactive=False)) or "")
        assert fetched.read_bytes() == b"CD001" * 4096
        response = requests.post(f"{manager}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia",
                                 json={"Image": f"{url}/missing.iso"}, auth=auth,
                                 timeout=TIMEOUT)
        assert response.status_code == 400, response.text  # the server said 404: refused
        assert "404" in response.text
        response = requests.post(f"{manager}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia",
                                 json={}, auth=auth, timeout=TIMEOUT)
        assert response.status_code in (200, 202, 204), response.text
        wait_for(lambda: dx.cdrom_media(doms.xml(name)) is None, "the CD-ROM ejected")
    finally:
        shutil.rmtree(image_dir, ignore_errors=True)
    ipmi(bmc, "chassis", "power", "off")
    wait_for(lambda: not dom.isActive(), "the VM to stop")
    wait_for(lambda: power_status(bmc) == "off", "IPMI power status off")


def test_qemu_live_cdrom_and_reset_to_it(qemu_guest: tuple[Domains, str]) -> None:
    doms, name = qemu_guest
    backend = create_backend("libvirt", {"domain": name, "uri": "qemu:///system"}, "vm")
    iso = Path("/var/lib/libvirt/images") / f"{name}.iso"
    doms.files.append(iso)
    iso.write_bytes(bytes(2048 * 16))
    try:
        assert backend.attach_console(lambda data: None)  # as the node does when built
        caps = backend.capabilities
        assert caps.serial_console and caps.graphical_console
        assert BootDevice.CDROM in caps.boot_devices
        backend.power_on(BootDevice.NONE)
        assert backend.power_state() is PowerState.ON
        url = backend.graphical_console()
        assert url is not None and re.fullmatch(r"vnc://127\.0\.0\.1:59\d\d", url), url
        backend.media_changed("Cd", f"file://{iso}")  # live, into the running VM
        assert dx.cdrom_media(doms.xml(name, inactive=False)) == str(iso)
        assert dx.cdrom_media(doms.xml(name)) == str(iso)
        # ejected: in the definition for sure (QEMU may keep the tray of the running VM
        # closed, see media_changed; then the VM sees it from its next start)
        backend.media_changed("Cd", None)
        assert dx.cdrom_media(doms.xml(name)) is None
        # a boot from CD-ROM is a new boot order: the reset becomes destroy + create
        backend.reset(BootDevice.CDROM)
        live = dx.parse(doms.xml(name, inactive=False))
        assert [b.get("dev") for b in live.findall("os/boot")][0] == "cdrom"
        backend.power_off()
        assert backend.power_state() is PowerState.OFF
        assert backend.graphical_console() is None
    finally:
        backend.close()


# -- libvirtd restarts ----------------------------------------------------------------------------
def test_reconnects_after_libvirtd_restarts(tmp_path: Path) -> None:
    daemon = PrivateLibvirtd(Path("/tmp") / unique_name("bmcemu-libvirtd"))
    daemon.start()
    backend = create_backend("libvirt", {"domain": "test", "uri": daemon.uri,
                                         "connect_timeout": 1.0}, "vm")
    reports: list[tuple[PowerState, str]] = []
    backend.on_power_change = lambda state, why: reports.append((state, why))
    try:
        assert backend.power_state() is PowerState.ON  # the test driver's own domain
        daemon.stop()
        started = time.monotonic()
        with pytest.raises(BackendError, match="libvirt"):
            backend.power_state()
        wait_for(lambda: _fails(backend), "errors while libvirtd is down", timeout=5)
        assert time.monotonic() - started < 5, "a call hung while libvirtd was down"
        daemon.start()
        wait_for(lambda: not _fails(backend), "the backend to reconnect", timeout=15)
        assert backend.power_state() is PowerState.ON
        # events flow on the new connection too
        lv = Domains(daemon.uri)
        try:
            lv.get("test").destroy()
        finally:
            lv.conn.close()
        wait_for(lambda: reports and reports[-1][0] is PowerState.OFF, "the power-off report")
    finally:
        backend.close()
        daemon.stop()
        shutil.rmtree(daemon.path, ignore_errors=True)


def _fails(backend: object) -> bool:
    try:
        backend.power_state()  # type: ignore[attr-defined]
    except BackendError:
        return True
    return False
