#!/opt/bmc-emulator/bin/python3
"""Health check of the lab's emulator (or of an address relay): every node answers an IPMI
probe (Get Channel Authentication Capabilities, which needs no session and no password) and
`GET /redfish/v1` (the service root, public by the Redfish spec).

    bmc-lab-healthcheck                          # every node of $BMC_EMULATOR_CONFIG
    bmc-lab-healthcheck 127.0.0.1:623 http://127.0.0.1:8000     # one IPMI and one Redfish

Exit status 0 when all answer, 1 (with the first failure on stderr) otherwise.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request

TIMEOUT = 1.5
# RMCP (ASF class IPMI) + IPMI 1.5 session header without auth + Get Channel Authentication
# Capabilities (NetFn App, cmd 0x38) for the current channel, IPMI v2.0 extended, ADMINISTRATOR
PROBE = bytes.fromhex("0600ff07" "00" "00000000" "00000000" "09" "2018c8" "8100388e04b5")
WILDCARDS = {"0.0.0.0", "::", ""}


def ipmi_ok(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        for _ in range(2):  # UDP: one retry
            try:
                sock.sendto(PROBE, (host, port))
                reply = sock.recv(512)
            except OSError:
                continue
            # completion code 0x00 right after the 7-byte IPMI response header
            return len(reply) > 21 and reply[20] == 0x00
    return False


def redfish_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/redfish/v1", timeout=TIMEOUT) as response:
            return response.status == 200
    except OSError:
        return False


def targets_from_config(path: str) -> list[tuple[str, str, int, str]]:
    from bmc.config import Overrides, load_config

    # the entrypoint moves the IPMI ports the same way (BMC_IPMI_PORTS, see there)
    ports = os.environ.get("BMC_IPMI_PORTS", "")
    overrides = Overrides(ipmi_port_base=int(ports.split("-")[0]) if ports else None)
    targets = []
    for node in load_config(path, overrides).nodes:
        def local(address: str) -> str:
            if address in WILDCARDS:
                return "::1" if address == "::" else "127.0.0.1"
            return address
        ipmi_host = local(node.ipmi.address)
        redfish_host = local(node.redfish.address)
        redfish_host = f"[{redfish_host}]" if ":" in redfish_host else redfish_host
        targets.append((node.name, ipmi_host, node.ipmi.port,
                        f"http://{redfish_host}:{node.redfish.port}"))
    return targets


def main(argv: list[str]) -> int:
    if len(argv) == 2:
        host, _, port = argv[0].rpartition(":")
        targets = [("relay", host, int(port), argv[1])]
    elif not argv:
        targets = targets_from_config(os.environ.get("BMC_EMULATOR_CONFIG",
                                                     "/etc/bmc-emulator/config.yaml"))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for name, host, port, url in targets:
        if not ipmi_ok(host, port):
            print(f"{name}: no IPMI answer on {host}:{port}/udp", file=sys.stderr)
            return 1
        if not redfish_ok(url):
            print(f"{name}: no answer from {url}/redfish/v1", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
