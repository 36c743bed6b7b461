"""The IPMI LAN endpoint driven by the real clients: ipmitool, freeipmi and pyghmi."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests
from conftest import Emulator, Launcher
from e2e_helpers import ipmitool, run

CIPHERS = [None, "3", "17"]  # None: ipmitool asks which suites we offer and picks the best


@pytest.mark.parametrize("cipher", CIPHERS)
def test_power_control_and_status(emulator: Emulator, cipher: str | None) -> None:
    assert ipmitool(emulator, "power", "on", cipher=cipher) == "Chassis Power Control: Up/On\n"
    assert ipmitool(emulator, "power", "status", cipher=cipher) == "Chassis Power is on\n"
    assert "System Power         : on" in ipmitool(emulator, "chassis", "status", cipher=cipher)
    ipmitool(emulator, "power", "off", cipher=cipher)
    assert ipmitool(emulator, "power", "status", cipher=cipher) == "Chassis Power is off\n"
    ipmitool(emulator, "power", "cycle", cipher=cipher)  # from off: comes on
    assert ipmitool(emulator, "power", "status", cipher=cipher) == "Chassis Power is on\n"
    # a reset and an NMI leave the power on, as a no-op would: check what they did
    ipmitool(emulator, "power", "reset", cipher=cipher)
    assert "Initiated by hard reset" in ipmitool(emulator, "sel", "elist", "last", "1")
    assert ipmitool(emulator, "chassis", "restart_cause").strip() == \
        "System restart cause: chassis power control command"
    ipmitool(emulator, "power", "diag", cipher=cipher)  # NMI
    assert "NMI" in ipmitool(emulator, "sel", "elist", "last", "1")
    ipmitool(emulator, "power", "soft", cipher=cipher)
    assert ipmitool(emulator, "power", "status", cipher=cipher) == "Chassis Power is off\n"


def test_default_cipher_is_fast_because_the_cipher_suite_probe_is_answered(
        emulator: Emulator) -> None:
    # without an answer to Get Channel Cipher Suites ipmitool waits ~1 s per retry, then falls
    # back; it says which suite it picked only when the probe was answered. (Checked by what
    # ipmitool saw, not by a stopwatch that a loaded CI machine would trip.)
    result = run([*emulator.ipmitool(0), "-vv", "power", "status"])
    assert result.returncode == 0, result.stderr
    assert "Using best available cipher suite 17" in result.stdout + result.stderr


def test_ironic_command_line_with_password_file(emulator: Emulator, tmp_path: Path) -> None:
    node = emulator.nodes[1]
    password_file = tmp_path / "pw"
    password_file.write_text(emulator.password)
    result = run(["ipmitool", "-I", "lanplus", "-H", node.ipmi_address, "-L", "ADMINISTRATOR",
                  "-p", str(node.ipmi_port), "-U", emulator.username, "-R", "1", "-N", "5",
                  "-f", str(password_file), "power", "status"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Chassis Power is ")


@pytest.mark.parametrize("cipher", CIPHERS)
def test_bootdev_persistent_efiboot(emulator: Emulator, cipher: str | None) -> None:
    out = ipmitool(emulator, "chassis", "bootdev", "pxe", "options=persistent,efiboot",
                   cipher=cipher)
    assert "Set Boot Device to pxe" in out
    params = ipmitool(emulator, "chassis", "bootparam", "get", "5", cipher=cipher)
    assert "Boot Flag Valid" in params
    assert "Options apply to all future boots" in params
    assert "BIOS EFI boot" in params
    assert "Force PXE" in params
    ipmitool(emulator, "chassis", "bootdev", "disk", cipher=cipher)
    params = ipmitool(emulator, "chassis", "bootparam", "get", "5", cipher=cipher)
    assert "Options apply to only next boot" in params
    assert "BIOS PC Compatible (legacy) boot" in params
    assert "Force Boot from default Hard-Drive" in params


@pytest.mark.parametrize(("flags", "device", "expect"), [
    ("0xe0", "0x04", ["Options apply to all future boots", "BIOS EFI boot", "Force PXE"]),
    ("0xa0", "0x08", ["Options apply to only next boot", "BIOS EFI boot",
                      "Force Boot from default Hard-Drive"]),
    ("0xe0", "0x14", ["Options apply to all future boots", "Force Boot from CD/DVD"]),
    ("0xa0", "0x18", ["Options apply to only next boot", "Force Boot into BIOS Setup"]),
])
def test_ironic_uefi_raw_boot_options(emulator: Emulator, flags: str, device: str,
                                      expect: list[str]) -> None:
    ipmitool(emulator, "raw", "0x00", "0x08", "0x03", "0x08")  # clear the boot-flag timer
    ipmitool(emulator, "raw", "0x00", "0x08", "0x05", flags, device, "0x00", "0x00", "0x00")
    params = ipmitool(emulator, "chassis", "bootparam", "get", "5")
    for text in expect:
        assert text in params
    assert ipmitool(emulator, "raw", "0x00", "0x09", "0x03", "0x00", "0x00").split() == \
        ["01", "03", "08"]


def test_one_time_boot_override_is_consumed_by_the_next_boot(emulator: Emulator) -> None:
    ipmitool(emulator, "power", "off", node=1)
    ipmitool(emulator, "chassis", "bootdev", "pxe", node=1)
    assert "Force PXE" in ipmitool(emulator, "chassis", "bootparam", "get", "5", node=1)
    ipmitool(emulator, "power", "on", node=1)
    assert "No override" in ipmitool(emulator, "chassis", "bootparam", "get", "5", node=1)


def test_mc_info_and_guid_match_redfish(emulator: Emulator) -> None:
    info = ipmitool(emulator, "mc", "info")
    assert "IPMI Version              : 2.0" in info
    assert "Chassis Device" in info
    guid = ipmitool(emulator, "mc", "guid")
    assert "GUID Encoding : IPMI" in guid
    node = emulator.nodes[0]
    system = requests.get(f"{node.redfish_url}/redfish/v1/Systems/{node.name}",
                          auth=(emulator.username, emulator.password), timeout=10).json()
    assert f"System GUID   : {system['UUID']}" in guid


def test_ipmi_15_straight_password_only_when_configured(emulator_factory) -> None:
    """The password crosses the wire in clear: refused unless the node says otherwise."""
    bmc = emulator_factory(nodes=[{"name": "n0", "backend": {"type": "memory"}},
                                  {"name": "n1", "backend": {"type": "memory"},
                                   "ipmi": {"password_auth": True}}])
    refused = run([*bmc.ipmitool(0, interface="lan"), "-A", "PASSWORD", "power", "status"])
    assert refused.returncode != 0
    allowed = ipmitool(bmc, 1, "power", "status", interface="lan", extra=("-A", "PASSWORD"))
    assert allowed.startswith("Chassis Power is")


@pytest.mark.parametrize("authtype", ["MD5"])
def test_ipmi_15_sessions(emulator: Emulator, authtype: str) -> None:
    extra = ("-A", authtype)
    ipmitool(emulator, "power", "on", interface="lan", extra=extra)
    assert ipmitool(emulator, "power", "status", interface="lan", extra=extra) == \
        "Chassis Power is on\n"
    ipmitool(emulator, "chassis", "bootdev", "cdrom", interface="lan", extra=extra)
    assert "Force Boot from CD/DVD" in ipmitool(emulator, "chassis", "bootparam", "get", "5",
                                                interface="lan", extra=extra)


def test_ipmi_15_with_ipmitools_default_authtype(emulator: Emulator) -> None:
    assert ipmitool(emulator, "power", "status", interface="lan").startswith("Chassis Power is")


def test_unknown_command_gets_invalid_command(emulator: Emulator) -> None:
    result = run([*emulator.ipmitool(0), "raw", "0x06", "0x99"])
    assert result.returncode != 0
    assert "Invalid command" in result.stderr


@pytest.mark.parametrize(("user", "password"), [("admin", "wrong"), ("nobody", "password"),
                                                ("", "")])
def test_bad_credentials_are_refused_quickly(emulator: Emulator, user: str,
                                             password: str) -> None:
    node = emulator.nodes[0]
    result = run(["ipmitool", "-I", "lanplus", "-H", node.ipmi_address, "-p",
                  str(node.ipmi_port), "-U", user, "-P", password, "-N", "1", "-R", "2",
                  "-vv", "power", "status"])
    assert result.returncode != 0
    assert "Chassis Power" not in result.stdout
    # the BMC answers RAKP 1 at once (an error status for an unknown name; for a wrong password
    # an HMAC that ipmitool rejects) instead of leaving the client to time out and retry
    output = result.stdout + result.stderr
    assert output.count("<<RAKP 2 MESSAGE") == 1, output
    expected = "RAKP 2 HMAC is invalid" if user == "admin" else \
        "RAKP 2 message indicates an error : unauthorized name"
    assert expected in output, output


def test_cipher_suite_zero_is_refused(emulator: Emulator) -> None:
    result = run([*emulator.ipmitool(0), "-C", "0", "power", "status"])
    assert result.returncode != 0
    assert "Chassis Power" not in result.stdout


def test_garbage_on_the_port_does_not_stop_the_server(emulator: Emulator) -> None:
    node = emulator.nodes[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for junk in (b"", b"\x00", b"\x06\x00\xff\x07\x06" + b"\xff" * 40,
                     b"\x06\x00\xff\x07\x00" + b"\x01" * 9, bytes(range(256)) * 4):
            sock.sendto(junk, (node.ipmi_address, node.ipmi_port))
    assert ipmitool(emulator, "power", "status").startswith("Chassis Power is")


def test_privilege_levels_are_enforced(emulator_factory: Launcher) -> None:
    users = [{"name": "admin", "password": "password", "privilege": "ADMINISTRATOR"},
             {"name": "viewer", "password": "viewpass", "privilege": "USER"}]
    bmc = emulator_factory([{"name": "n0", "users": users}])
    node = bmc.nodes[0]
    base = ["ipmitool", "-I", "lanplus", "-H", node.ipmi_address, "-p", str(node.ipmi_port),
            "-N", "1", "-R", "2"]
    viewer = [*base, "-U", "viewer", "-P", "viewpass", "-L", "USER"]
    assert run([*viewer, "power", "status"]).stdout == "Chassis Power is off\n"
    denied = run([*viewer, "power", "on"])
    assert denied.returncode != 0 and "Insufficient privilege level" in denied.stderr
    # a USER may not open an ADMINISTRATOR session at all
    assert run([*base, "-U", "viewer", "-P", "viewpass", "-L", "ADMINISTRATOR",
                "power", "status"]).returncode != 0
    admin = [*base, "-U", "admin", "-P", "password", "-L", "OPERATOR"]
    assert run([*admin, "power", "on"]).returncode == 0


def test_freeipmi_tools(emulator: Emulator) -> None:
    node = emulator.nodes[1]
    host = f"{node.ipmi_address}:{node.ipmi_port}"
    creds = ["-h", host, "-u", emulator.username, "-p", emulator.password]
    on = run(["ipmipower", *creds, "--on"])
    assert on.stdout.strip() == f"{node.ipmi_address}: ok", on.stderr
    for driver in (["-D", "LAN_2_0"], ["-D", "LAN_2_0", "-I", "3"], ["-D", "LAN"]):
        status = run(["ipmipower", *creds, *driver, "--stat"])
        assert status.stdout.strip() == f"{node.ipmi_address}: on", (driver, status.stderr)
    for driver in ([], ["-D", "LAN_2_0"]):  # freeipmi's defaults: no workaround flags
        info = run(["bmc-info", *creds, *driver])
        assert info.returncode == 0, info.stderr
        assert "IPMI Version          : 2.0" in info.stdout


def test_pyghmi_client_as_shipped(emulator: Emulator) -> None:
    from pyghmi.ipmi import command

    node = emulator.nodes[1]
    client = command.Command(bmc=node.ipmi_address, port=node.ipmi_port,
                             userid=emulator.username, password=emulator.password)
    try:
        client.set_power("off", wait=False)
        assert client.get_power() == {"powerstate": "off"}
        client.set_bootdev("network", persist=True, uefiboot=True)
        assert client.get_bootdev() == {"bootdev": "network", "persistent": True,
                                        "uefimode": True}
    finally:
        client.ipmi_session.logout()
