"""Cheap "does it answer yet" probes and the ipmitool client, all on loopback."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass

from bench.util import run

#: IPMI 1.5 sessionless Get Channel Authentication Capabilities (channel E, admin, v2 data):
#: the first packet ipmitool sends; every IPMI LAN BMC answers it without a session
GET_AUTH_CAPS = bytes.fromhex("0600ff07" "00" "00000000" "00000000" "09"
                              "2018c8" "810038" "8e04" "b5")

USERNAME = "admin"
PASSWORD = "password"


def ipmi_answers(host: str, port: int, timeout: float = 0.005) -> bool:
    """Whether the BMC at host:port answers Get Channel Authentication Capabilities."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(GET_AUTH_CAPS, (host, port))
            data = sock.recv(512)
        except OSError:  # timeout, or ICMP port unreachable (nothing bound yet)
            return False
    # RMCP, IPMI class; completion code 0 follows the 6-byte IPMI header of the reply
    return len(data) > 21 and data[3] == 0x07 and data[20] == 0


def http_status(host: str, port: int, path: str, auth: tuple[str, str] | None = None,
                timeout: float = 2.0, tls: ssl.SSLContext | None = None) -> int | None:
    """The HTTP status of GET path (over HTTPS with `tls`), or None if nothing answers
    (refused, reset, timeout, a failed handshake)."""
    conn = (http.client.HTTPConnection(host, port, timeout=timeout) if tls is None
            else http.client.HTTPSConnection(host, port, timeout=timeout, context=tls))
    try:
        conn.request("GET", path, headers=basic_auth(auth))
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def http_json(host: str, port: int, path: str, auth: tuple[str, str] | None = None,
              timeout: float = 5.0, tls: ssl.SSLContext | None = None) -> dict | None:
    """GET path as JSON (following one redirect; over HTTPS with `tls`), or None."""
    conn = (http.client.HTTPConnection(host, port, timeout=timeout) if tls is None
            else http.client.HTTPSConnection(host, port, timeout=timeout, context=tls))
    try:
        conn.request("GET", path, headers=basic_auth(auth))
        response = conn.getresponse()
        body = response.read()
        location = response.getheader("Location")
        if response.status in (301, 302, 307, 308) and location:
            conn.close()
            return http_json(host, port, location.split(f":{port}", 1)[-1], auth, timeout, tls)
        return json.loads(body) if response.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def basic_auth(auth: tuple[str, str] | None) -> dict[str, str]:
    if auth is None:
        return {}
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# -- ipmitool -----------------------------------------------------------------------------------
def have_ipmitool() -> bool:
    return shutil.which("ipmitool") is not None


@dataclass(frozen=True)
class ToolRun:
    ok: bool
    ms: float
    output: str


def ipmitool(host: str, port: int, *command: str, cipher: int | None = 3,
             timeout: float = 15.0) -> ToolRun:
    """One `ipmitool -I lanplus [-C cipher] ...` run and its wall time.

    `-N 1 -R 1` (1 s timeout, one try) as in the issue's reference figures: without them a
    BMC that ignores Get Channel Cipher Suites costs ipmitool ~10 s instead of ~1 s.
    """
    cmd = ["ipmitool", "-I", "lanplus", "-H", host, "-p", str(port), "-U", USERNAME,
           "-P", PASSWORD, "-N", "1", "-R", "1"]
    if cipher is not None:
        cmd += ["-C", str(cipher)]
    t0 = time.monotonic()
    try:
        result = run([*cmd, *command], timeout)
    except subprocess.TimeoutExpired:
        return ToolRun(False, (time.monotonic() - t0) * 1000, "timeout")
    ms = (time.monotonic() - t0) * 1000
    output = (result.stdout + result.stderr).strip()
    return ToolRun(result.returncode == 0, ms, output)
