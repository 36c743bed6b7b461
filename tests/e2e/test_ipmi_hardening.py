"""Unauthenticated clients cannot lock others out of IPMI (issue: hardening, finding 1)."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time

from ipmi import wire

FLOOD_SECONDS = 4.0
FLOOD_LIMIT = 200_000  # datagrams, whichever comes first


def _open_session_request(console_id: int) -> bytes:
    payload = struct.pack("<BBxxI", 1, 4, console_id) + bytes(
        (0, 0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0))
    return wire.build_v20(wire.PAYLOAD_OPEN_SESSION_REQUEST, 0, 0, payload)


def _flood(port: int, stop: threading.Event, sent: list[int]) -> None:
    """Open Session Requests that never authenticate, from another loopback address."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.2", 0))
        sock.setblocking(False)
        deadline = time.monotonic() + FLOOD_SECONDS
        count = 0
        while not stop.is_set() and count < FLOOD_LIMIT and time.monotonic() < deadline:
            try:
                sock.sendto(_open_session_request(count), ("127.0.0.1", port))
                count += 1
            except BlockingIOError:
                time.sleep(0.0005)
            if count % 64 == 0:  # drain answers so the socket never fills
                try:
                    while sock.recv(512):
                        pass
                except BlockingIOError:
                    pass
        sent.append(count)


def test_logins_succeed_during_a_storm_of_half_open_sessions(emulator_factory) -> None:
    bmc = emulator_factory(nodes=[{"name": "n", "backend": {"type": "memory"}}])
    node = bmc.nodes[0]
    stop, sent = threading.Event(), []
    flood = threading.Thread(target=_flood, args=(node.ipmi_port, stop, sent))
    flood.start()
    try:
        time.sleep(0.3)  # the storm is under way
        for _ in range(3):
            done = subprocess.run(bmc.ipmitool(node, "chassis", "power", "status"),
                                  capture_output=True, text=True, timeout=30)
            assert done.returncode == 0 and "Chassis Power is" in done.stdout, done.stderr
    finally:
        stop.set()
        flood.join(10)
    assert sent and sent[0] > 1000, f"the storm was too small to mean anything: {sent}"
