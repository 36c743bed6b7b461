"""Client helpers shared by the end-to-end tests: run a tool, ipmitool and freeipmi against a
running emulator (the fixtures that start one are in conftest.py).

    from e2e_helpers import ipmitool, ipmitool_as, run

    ipmitool(emulator, "power", "on")                   # node 0, admin; asserts exit 0
    ipmitool(emulator, "mc", "info", node=1)            # or: ipmitool(emulator, 1, "mc", "info")
    run(ipmitool_as(node, "viewer", "pw", "-L", "USER", "power", "status")).returncode

(The module's name is not `helpers`: tests/unit and tests/e2e share one import namespace.)
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
from conftest import Emulator, EmulatorNode

#: whole-command limit: one ipmitool run is ~0.1 s, but a loaded 2-core CI machine can stall
TIMEOUT = 30.0
#: stable output: freeipmi prints dates in the local zone and ipmitool follows LC_ALL
ENV = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}


def run(command: list[str], timeout: float = TIMEOUT,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a client to completion (stdin closed, output captured as text, ENV by default)."""
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=ENV if env is None else env)


def ipmitool(bmc: Emulator, *command: str | int | EmulatorNode, node: int | EmulatorNode = 0,
             interface: str = "lanplus", cipher: str | None = None,
             extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> str:
    """ipmitool's stdout for `command` on `node` as the default user; fails on a non-zero exit.

    The node may also come first in `command` (`ipmitool(bmc, 1, "mc", "info")`).
    """
    if command and not isinstance(command[0], str):
        node, command = command[0], command[1:]
    args = bmc.ipmitool(node, interface=interface)
    if cipher is not None:
        args += ["-C", cipher]
    result = run([*args, *extra, *map(str, command)], env=env)
    assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    return result.stdout


def ipmi_timed(bmc: Emulator, *command: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """ipmitool `command` on node 0, whatever its exit status, and the seconds it took."""
    began = time.monotonic()
    done = subprocess.run(bmc.ipmitool(bmc.nodes[0], *command), capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    return done, time.monotonic() - began


def wait_power(bmc: Emulator, state: str, timeout: float = 15) -> None:
    """Until node 0's `ipmitool power status` says `state` ("on", "off")."""
    deadline = time.monotonic() + timeout
    while f"Chassis Power is {state}" not in (done := ipmi_timed(bmc, "power", "status")[0]
                                              ).stdout:
        assert time.monotonic() < deadline, done.stdout + done.stderr
        time.sleep(0.2)


def system_request(bmc: Emulator, path: str = "", **body: Any) -> requests.Response:
    """GET node 0's Redfish System (+ `path`), or POST `body` there, as the default user."""
    node = bmc.nodes[0]
    url = f"{node.redfish_url}/redfish/v1/Systems/{node.name}{path}"
    auth = (bmc.username, bmc.password)
    if body:
        return requests.post(url, json=body, auth=auth, timeout=TIMEOUT)
    return requests.get(url, auth=auth, timeout=TIMEOUT)


def ipmitool_as(node: EmulatorNode, user: str, password: str, *command: str,
                interface: str = "lanplus", level: str | None = None) -> list[str]:
    """An ipmitool command line for another user (`level`: the -L privilege to ask for; a
    USER-level account needs `-L USER`, as on real BMCs: ipmitool asks for ADMINISTRATOR)."""
    args = ["ipmitool", "-I", interface, "-H", node.ipmi_address, "-p", str(node.ipmi_port),
            "-U", user, "-P", password, "-N", "1", "-R", "2"]
    return [*args, *(["-L", level] if level else []), *command]


def raw_error(bmc: Emulator, node: int, *data: str) -> str:
    """The stderr of a raw command that must fail."""
    result = run([*bmc.ipmitool(node), "raw", *data])
    assert result.returncode != 0, result.stdout
    return result.stderr


def freeipmi(bmc: Emulator, *command: str | int, node: int = 0, cache: Path | None = None,
             env: dict[str, str] | None = None) -> str:
    """A freeipmi tool's stdout (`freeipmi(bmc, "bmc-info", "--get-channel-info")`) on `node`
    (which may also come first, like ipmitool's); fails on a non-zero exit."""
    if command and isinstance(command[0], int):
        node, command = command[0], command[1:]
    program, *args = map(str, command)
    target = bmc.nodes[node]
    argv = [program, "-h", f"{target.ipmi_address}:{target.ipmi_port}", "-u", bmc.username,
            "-p", bmc.password, *args]
    if cache is not None:
        argv += ["--sdr-cache-directory", str(cache), "--quiet-cache"]
    result = run(argv, env=env)
    assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
    return result.stdout
