"""Users, channel, LAN configuration, chassis and MC extras through the real ipmitool and freeipmi.

The module's emulator has two nodes: node 0 is where users are created and changed, node 1
serves the read-only and chassis tests. Tests that change the admin password start their own.
"""

from __future__ import annotations

import re

import pytest
import requests
from conftest import Emulator, Launcher
from e2e_helpers import freeipmi, ipmitool, run
from e2e_helpers import ipmitool_as as tool

from backends.memory import MemoryBackend
from bmc.node import Node


def field(output: str, name: str) -> str:
    """The value of `name : value` in ipmitool/freeipmi output."""
    match = re.search(rf"^\s*{re.escape(name)}\s*:\s*(.*?)\s*$", output, re.MULTILINE)
    assert match, f"{name!r} not in:\n{output}"
    return match.group(1)


def user_row(listing: str, user_id: int) -> list[str]:
    row = next(line for line in listing.splitlines() if line.split()[:1] == [str(user_id)])
    return row.split()


# -- users ------------------------------------------------------------------------------------
def test_user_list_and_summary_show_admin_and_the_null_user(emulator: Emulator) -> None:
    listing = ipmitool(emulator, "user", "list", "1", node=1)
    assert user_row(listing, 1) == ["1", "true", "false", "false", "NO", "ACCESS"]
    assert user_row(listing, 2) == ["2", "admin", "true", "false", "true", "ADMINISTRATOR"]
    summary = ipmitool(emulator, "user", "summary", "1", node=1)
    assert field(summary, "Maximum IDs") == "16"
    assert field(summary, "Enabled User Count") == "1"


def test_create_enable_and_log_in_as_a_new_user(emulator: Emulator) -> None:
    node = emulator.nodes[0]
    for command in (["user", "set", "name", "3", "bob"], ["user", "set", "password", "3", "secret"],
                    ["user", "enable", "3"], ["user", "priv", "3", "4", "1"]):
        ipmitool(emulator, *command)
    assert user_row(ipmitool(emulator, "user", "list", "1"), 3) == \
        ["3", "bob", "true", "false", "true", "ADMINISTRATOR"]
    assert ipmitool(emulator, "user", "test", "3", "16", "secret") == "Success\n"
    wrong = run(emulator.ipmitool(0, "user", "test", "3", "16", "wrong"))
    assert wrong.returncode != 0 and "password incorrect" in wrong.stdout
    # bob logs in with the privilege he was given: an ADMINISTRATOR-only command works
    bob = run(tool(node, "bob", "secret", "user", "list", "1", level="ADMINISTRATOR"))
    assert bob.returncode == 0 and "bob" in bob.stdout, bob.stderr
    assert run(tool(node, "bob", "secret", "power", "status", interface="lan")).returncode == 0
    ipmitool(emulator, "user", "disable", "3")
    for interface in ("lanplus", "lan"):
        refused = run(tool(node, "bob", "secret", "power", "status", interface=interface))
        assert refused.returncode != 0 and "Chassis Power" not in refused.stdout
    ipmitool(emulator, "user", "enable", "3")
    assert run(tool(node, "bob", "secret", "power", "status")).returncode == 0


def test_privilege_limit_set_with_user_priv_is_enforced(emulator: Emulator) -> None:
    node = emulator.nodes[0]
    for command in (["user", "set", "name", "4", "olga"], ["user", "set", "password", "4", "pw4"],
                    ["user", "enable", "4"], ["user", "priv", "4", "3", "1"]):
        ipmitool(emulator, *command)
    assert run(tool(node, "olga", "pw4", "power", "on", level="OPERATOR")).returncode == 0
    refused = run(tool(node, "olga", "pw4", "power", "status", level="ADMINISTRATOR"))
    assert refused.returncode != 0
    # OPERATOR may not manage users
    denied = run(tool(node, "olga", "pw4", "user", "set", "password", "2", "x",
                      level="OPERATOR"))
    assert denied.returncode != 0 and "Insufficient privilege" in denied.stderr


def test_a_user_level_session_cannot_set_a_password(emulator_factory: Launcher) -> None:
    users = [{"name": "admin", "password": "password"},
             {"name": "viewer", "password": "viewpass", "privilege": "USER"}]
    bmc = emulator_factory([{"name": "n0", "users": users}])
    node = bmc.nodes[0]
    denied = run(tool(node, "viewer", "viewpass", "user", "set", "password", "2", "owned",
                      level="USER"))
    assert denied.returncode != 0 and "Insufficient privilege" in denied.stderr
    assert run(tool(node, "admin", "password", "power", "status")).returncode == 0
    assert run(tool(node, "admin", "owned", "power", "status")).returncode != 0


def test_null_user_and_taken_names_are_refused(emulator: Emulator) -> None:
    for command in (["user", "set", "name", "1", "ghost"], ["user", "enable", "1"],
                    ["user", "set", "name", "5", "admin"], ["user", "enable", "9"]):
        result = run(emulator.ipmitool(1, *command))
        assert result.returncode != 0, command
    listing = ipmitool(emulator, "user", "list", "1", node=1)
    assert user_row(listing, 1)[1] == "true"  # still nameless
    assert user_row(listing, 9)[-2:] == ["NO", "ACCESS"]


def test_password_set_over_ipmi_is_the_redfish_password_at_once(
        emulator_factory: Launcher) -> None:
    bmc = emulator_factory(nodes=1)
    node = bmc.nodes[0]
    systems = f"{node.redfish_url}/redfish/v1/Systems"
    assert requests.get(systems, auth=("admin", "password"), timeout=10).status_code == 200
    ipmitool(bmc, "user", "set", "password", "2", "newpass")
    assert requests.get(systems, auth=("admin", "newpass"), timeout=10).status_code == 200
    assert requests.get(systems, auth=("admin", "password"), timeout=10).status_code == 401
    assert run(tool(node, "admin", "newpass", "power", "status")).returncode == 0
    assert run(tool(node, "admin", "password", "power", "status")).returncode != 0
    # and disabling the user over IPMI locks Redfish out too
    run(tool(node, "admin", "newpass", "user", "set", "name", "3", "ops"))
    for command in (["user", "set", "password", "3", "opspass"], ["user", "enable", "3"],
                    ["user", "priv", "3", "4", "1"], ["user", "disable", "2"]):
        assert run(tool(node, "admin", "newpass", *command)).returncode == 0, command
    assert requests.get(systems, auth=("admin", "newpass"), timeout=10).status_code == 401
    assert requests.get(systems, auth=("ops", "opspass"), timeout=10).status_code == 200


def test_wrong_password_over_ipmi_15_is_refused(emulator: Emulator) -> None:
    node = emulator.nodes[1]
    for authtype in ("MD5", "PASSWORD"):  # PASSWORD: not even enabled here
        result = run(tool(node, "admin", "wrong", "-A", authtype, "power", "status",
                          interface="lan"))
        assert result.returncode != 0 and "Chassis Power" not in result.stdout


# -- channel ----------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["channel", "info"], ["channel", "info", "1"]])
def test_channel_info(emulator: Emulator, args: list[str]) -> None:
    out = ipmitool(emulator, *args, node=1)
    assert "Channel 0x1 info:" in out
    assert field(out, "Channel Medium Type") == "802.3 LAN"
    assert field(out, "Channel Protocol Type") == "IPMB-1.0"
    assert field(out, "Session Support") == "multi-session"
    assert int(field(out, "Active Session Count")) >= 1  # ours
    assert field(out, "Access Mode") == "always available"


def test_channel_getaccess(emulator: Emulator) -> None:
    one = ipmitool(emulator, "channel", "getaccess", "1", "2", node=1)
    assert field(one, "User Name") == "admin"
    assert field(one, "IPMI Messaging") == "enabled"
    assert field(one, "Privilege Level") == "ADMINISTRATOR"
    every = ipmitool(emulator, "channel", "getaccess", "1", node=1)
    assert field(every, "Maximum User IDs") == "16"
    assert every.count("User ID              :") == 16
    null_user = every.split("User ID              : 2")[0]
    assert field(null_user, "Privilege Level") == "NO ACCESS"


def test_channel_authcap(emulator: Emulator) -> None:
    out = ipmitool(emulator, "channel", "authcap", "1", "4", node=1)
    assert field(out, "Channel number") == "1"
    assert field(out, "IPMI v1.5  auth types") == "MD5"  # straight password: off by default
    assert field(out, "Null user names exist") == "no"
    assert field(out, "Anonymous login enabled") == "no"
    assert field(out, "Channel supports IPMI v2.0") == "yes"


# -- LAN configuration ------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["lan", "print"], ["lan", "print", "1"]])
def test_lan_print_shows_where_the_node_listens(emulator: Emulator, args: list[str]) -> None:
    node = emulator.nodes[1]
    out = ipmitool(emulator, *args, node=1)
    assert field(out, "IP Address Source") == "Static Address"
    assert field(out, "IP Address") == node.ipmi_address
    assert field(out, "MAC Address") == Node(node.name, MemoryBackend()).bmc_mac
    assert field(out, "Auth Type Support") == "MD5 PASSWORD"
    assert field(out, "802.1q VLAN ID") == "Disabled"
    assert field(out, "RMCP+ Cipher Suites") == "17,3"
    assert field(out, "Cipher Suite Priv Max") == "XXXaXXXXXXXXXXX"  # suite 3: ADMIN


def test_lan_settings_are_read_only(emulator: Emulator) -> None:
    result = run(emulator.ipmitool(1, "lan", "set", "1", "ipaddr", "10.9.8.7"))
    assert result.returncode != 0
    assert field(ipmitool(emulator, "lan", "print", "1", node=1), "IP Address") != "10.9.8.7"


# -- chassis ----------------------------------------------------------------------------------
def identify_bits(bmc: Emulator) -> int:
    status = ipmitool(bmc, "raw", "0x00", "0x01", node=1).split()
    return int(status[2], 16) & 0x70


def test_chassis_identify(emulator: Emulator) -> None:
    assert "default (15 seconds)" in ipmitool(emulator, "chassis", "identify", node=1)
    assert identify_bits(emulator) == 0x50  # supported, timed on
    assert "10 seconds" in ipmitool(emulator, "chassis", "identify", "10", node=1)
    assert "indefinite" in ipmitool(emulator, "chassis", "identify", "force", node=1)
    assert identify_bits(emulator) == 0x60
    node = emulator.nodes[1]
    freeipmi = run(["ipmi-chassis", "-h", f"{node.ipmi_address}:{node.ipmi_port}",
                    "-u", emulator.username, "-p", emulator.password, "--get-chassis-status"])
    assert field(freeipmi.stdout, "Chassis Identify state") == "Indefinite on"
    ipmitool(emulator, "chassis", "identify", "0", node=1)
    assert identify_bits(emulator) == 0x40


def test_chassis_power_restore_policy(emulator: Emulator) -> None:
    listing = ipmitool(emulator, "chassis", "policy", "list", node=1)
    assert set(listing.split(":")[1].split()) == {"always-off", "always-on", "previous"}
    for policy in ("always-on", "previous", "always-off"):
        assert f"to {policy}" in ipmitool(emulator, "chassis", "policy", policy, node=1)
        status = ipmitool(emulator, "chassis", "status", node=1)
        assert field(status, "Power Restore Policy") == policy


def test_chassis_restart_cause_and_selftest(emulator: Emulator) -> None:
    ipmitool(emulator, "power", "off", node=1)
    ipmitool(emulator, "power", "on", node=1)
    assert ipmitool(emulator, "chassis", "restart_cause", node=1) == \
        "System restart cause: chassis power control command\n"
    assert field(ipmitool(emulator, "chassis", "selftest", node=1),
                 "Self Test Results") == "passed"


# -- management controller --------------------------------------------------------------------
def test_mc_selftest_watchdog_and_enables(emulator: Emulator) -> None:
    assert ipmitool(emulator, "mc", "selftest", node=1) == "Selftest: passed\n"
    watchdog = ipmitool(emulator, "mc", "watchdog", "get", node=1)
    assert field(watchdog, "Watchdog Timer Is") == "Stopped"
    enables = ipmitool(emulator, "mc", "getenables", node=1)
    assert field(enables, "System Event Logging") == "enabled"


@pytest.mark.parametrize("kind", ["warm", "cold"])
def test_mc_reset_keeps_the_node_running_and_the_next_command_works(
        emulator: Emulator, kind: str) -> None:
    ipmitool(emulator, "power", "on", node=1)
    result = run(emulator.ipmitool(1, "mc", "reset", kind))
    assert result.returncode == 0 and f"Sent {kind} reset command to MC" in result.stdout
    # the reset session still had its Close Session answered: no retries, no error
    assert "Close Session command failed" not in result.stderr
    assert ipmitool(emulator, "power", "status", node=1) == "Chassis Power is on\n"


# -- freeipmi ---------------------------------------------------------------------------------
def test_freeipmi_bmc_info_channel_information(emulator: Emulator) -> None:
    out = freeipmi(emulator, "bmc-info", "--get-channel-info", node=1)
    assert field(out, "Channel Number") == "1"
    assert field(out, "Medium Type") == "802.3 LAN"
    assert field(out, "Protocol Type") == "IPMB-1.0"
    assert field(out, "Session Support") == "multi-session"
    assert out.count("Channel Number") == 1


def test_freeipmi_config_checkout_of_users_and_lan(emulator: Emulator) -> None:
    user = freeipmi(emulator, "bmc-config", "--checkout", "-S", "User2", node=1)
    assert re.search(r"^\s*Username\s+admin$", user, re.MULTILINE)
    assert re.search(r"^\s*Lan_Privilege_Limit\s+Administrator$", user, re.MULTILINE)
    lan = freeipmi(emulator, "ipmi-config", "--checkout", "--section=Lan_Conf", node=1)
    node = emulator.nodes[1]
    assert re.search(rf"^\s*IP_Address\s+{re.escape(node.ipmi_address)}$", lan, re.MULTILINE)
    mac = Node(node.name, MemoryBackend()).bmc_mac.upper()
    assert re.search(rf"^\s*MAC_Address\s+{mac}$", lan, re.MULTILINE)
