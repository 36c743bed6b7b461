#!/usr/bin/env python3
"""Kubernetes probe of one bmc-emulator shard: exit 0 when the shard's first node answers both
protocols, 1 (with the reason on stderr) otherwise.

A pod of the StatefulSet serves node k when k mod N = I (BMC_EMULATOR_SHARD="I/N"), so its
first node is node I: IPMI on UDP ipmi-port-base + I, Redfish on TCP redfish-port-base + I.
IPMI gets Get Channel Authentication Capabilities (no session, no password) and Redfish
GET /redfish/v1 (the service root is public), so the probe never needs the credentials.
Standard library only: it runs in the emulator's image with its python3.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import ssl
import sys

# RMCP, IPMI 1.5 session without auth, Get Channel Authentication Capabilities (App 0x38) for
# the current channel at ADMINISTRATOR with the IPMI 2.0 extension bit
GET_AUTH_CAPS = bytes.fromhex("0600ff07" "00" "00000000" "00000000" "09"
                              "2018c8" "810038" "8e04" "b5")


def shard_index(spec: str) -> int:
    index, _, count = spec.partition("/")
    if not (index.strip().isdigit() and count.strip().isdigit()):
        raise ValueError(f"BMC_EMULATOR_SHARD={spec!r} is not I/N")
    return int(index)


def ipmi_problem(host: str, port: int, timeout: float) -> str | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout / 2)
        for _ in range(2):  # UDP: one resend
            try:
                sock.sendto(GET_AUTH_CAPS, (host, port))
                reply = sock.recv(512)
            except OSError as exc:
                problem = f"IPMI {host}:{port}/udp: {exc.strerror or exc}"
                continue
            # completion code 0 right after the 7-byte IPMI response header
            if len(reply) > 21 and reply[3] == 0x07 and reply[20] == 0x00:
                return None
            problem = f"IPMI {host}:{port}/udp: unexpected answer {reply[:24].hex()}"
    return problem


def redfish_problem(host: str, port: int, timeout: float, tls_ca: str | None = None
                    ) -> str | None:
    """GET /redfish/v1; over HTTPS verified with the lab CA when `tls_ca` is given."""
    if tls_ca is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection(host, port,
                                                                       timeout=timeout)
    else:
        context = ssl.create_default_context(cafile=tls_ca) if os.path.exists(tls_ca) else None
        if context is None:  # the emulator makes it as it starts: not up yet
            return f"Redfish: no CA at {tls_ca} yet"
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    url = f"{'https' if tls_ca else 'http'}://{host}:{port}/redfish/v1"
    try:
        conn.request("GET", "/redfish/v1")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return f"Redfish {url}: {exc}"
    finally:
        conn.close()
    return None if status == 200 else f"Redfish {url}: HTTP {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipmi-port-base", type=int, required=True)
    parser.add_argument("--redfish-port-base", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds for each protocol")
    parser.add_argument("--tls-ca", metavar="FILE",
                        help="Redfish speaks HTTPS: verify it with this CA (the emulator's)")
    args = parser.parse_args(argv)
    try:
        index = shard_index(os.environ.get("BMC_EMULATOR_SHARD", "0/1"))
    except ValueError as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 1
    problems = [p for p in (
        ipmi_problem(args.host, args.ipmi_port_base + index, args.timeout),
        redfish_problem(args.host, args.redfish_port_base + index, args.timeout,
                        args.tls_ca)) if p]
    for problem in problems:
        print(f"probe: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
