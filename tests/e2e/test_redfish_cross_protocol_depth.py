"""Redfish and IPMI on one real `bmc-emulator serve`: accounts made over Redfish log in over
IPMI (ipmitool), and the Redfish sensors read what IPMI's SDR reads."""

from __future__ import annotations

import re
from typing import Any

import requests
from conftest import Emulator, EmulatorNode
from e2e_helpers import ipmitool_as, run

TIMEOUT = 10
ACCOUNTS = "/redfish/v1/AccountService/Accounts"


def test_account_made_over_redfish_logs_in_over_ipmi(emulator: Emulator) -> None:
    node = emulator.nodes[0]
    admin = (emulator.username, emulator.password)
    created = requests.post(f"{node.redfish_url}{ACCOUNTS}", auth=admin, timeout=TIMEOUT,
                            json={"UserName": "newuser", "Password": "new-pass-1",
                                  "RoleId": "Administrator"})
    assert created.status_code == 201, created.text
    uri = node.redfish_url + created.headers["Location"]
    status = run(ipmitool_as(node, "newuser", "new-pass-1", "power", "status"))
    assert status.returncode == 0, status.stderr
    assert "Chassis Power is" in status.stdout
    # the Redfish role is the IPMI privilege limit: an Operator cannot open an
    # ADMINISTRATOR session (ipmitool's default), but can power the server at OPERATOR level
    assert requests.patch(uri, auth=admin, timeout=TIMEOUT,
                          json={"RoleId": "Operator"}).status_code == 200
    assert run(ipmitool_as(node, "newuser", "new-pass-1", "power", "status")).returncode != 0
    assert run(ipmitool_as(node, "newuser", "new-pass-1", "-L", "OPERATOR",
                    "power", "on")).returncode == 0
    assert requests.patch(uri, auth=admin, timeout=TIMEOUT,
                          json={"RoleId": "Administrator"}).status_code == 200

    etag = requests.get(uri, auth=admin, timeout=TIMEOUT).headers["ETag"]
    changed = requests.patch(uri, auth=admin, timeout=TIMEOUT, headers={"If-Match": etag},
                             json={"Password": "new-pass-2"})
    assert changed.status_code == 200, changed.text
    assert run(ipmitool_as(node, "newuser", "new-pass-1", "power", "status")).returncode != 0
    assert run(ipmitool_as(node, "newuser", "new-pass-2", "power", "status")).returncode == 0

    assert requests.patch(uri, auth=admin, timeout=TIMEOUT,
                          json={"Enabled": False}).status_code == 200
    assert run(ipmitool_as(node, "newuser", "new-pass-2", "power", "status")).returncode != 0
    assert requests.delete(uri, auth=admin, timeout=TIMEOUT).status_code == 204
    assert run(ipmitool_as(node, "newuser", "new-pass-2", "power", "status")).returncode != 0
    # the other node never had the account
    other = emulator.nodes[1]
    assert run(ipmitool_as(other, "newuser", "new-pass-1", "power", "status")).returncode != 0


_SDR = re.compile(r"^(?P<name>[^|]+?)\s*\|\s*(?P<value>-?[\d.]+) (?P<unit>[A-Za-z ]+?)\s*\|")


def _sdr(emulator: Emulator, node: EmulatorNode) -> dict[str, float]:
    result = run(ipmitool_as(node, emulator.username, emulator.password, "sdr", "list"))
    assert result.returncode == 0, result.stderr
    return {m["name"]: float(m["value"]) for line in result.stdout.splitlines()
            if (m := _SDR.match(line))}


def _redfish_sensors(node: EmulatorNode, auth: tuple[str, str]) -> dict[str, Any]:
    sensors = requests.get(f"{node.redfish_url}/redfish/v1/Chassis/{node.name}/Sensors",
                           params={"$expand": "."}, auth=auth, timeout=TIMEOUT).json()
    return {s["Name"]: s for s in sensors["Members"]}


def test_redfish_sensors_are_the_sdr(emulator: Emulator) -> None:
    node = emulator.nodes[1]
    auth = (emulator.username, emulator.password)
    # off, only the standby sensors have a reading, in both protocols
    assert run(ipmitool_as(node, emulator.username, emulator.password,
                           "power", "off")).returncode == 0
    readable = {n for n, s in _redfish_sensors(node, auth).items() if s["Reading"] is not None}
    assert readable == set(_sdr(emulator, node)) == {"Inlet Temp", "Total Power"}
    assert run(ipmitool_as(node, emulator.username, emulator.password,
                           "power", "on")).returncode == 0
    for _ in range(3):  # readings carry noise that changes every few seconds: same window
        ipmi = _sdr(emulator, node)
        redfish = _redfish_sensors(node, auth)
        assert set(ipmi) == set(redfish), (ipmi, list(redfish))
        # ipmitool rounds what it prints (integers for most units)
        if all(abs(ipmi[name] - redfish[name]["Reading"]) <= 0.51 for name in ipmi):
            break
    else:
        raise AssertionError(f"IPMI {ipmi} vs Redfish "
                             f"{ {n: s['Reading'] for n, s in redfish.items()} }")
    thermal = requests.get(f"{node.redfish_url}/redfish/v1/Chassis/{node.name}/Thermal",
                           auth=auth, timeout=TIMEOUT).json()
    fans = {f["Name"]: f["Reading"] for f in thermal["Fans"]}
    assert set(fans) == {n for n in ipmi if n.startswith("FAN")}
