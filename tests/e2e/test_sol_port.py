"""SOL through a relay on another port (a lab's old host names, Kubernetes' 623 -> 10623): the
BMC announces the port clients dial (`ipmi.sol_port`), which ipmitool insists on."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pexpect

from bench.util import free_ports

RELAY_SECONDS = 60.0  # the relay's whole life, at most


@contextmanager
def udp_relay(front: int, back: int) -> Iterator[None]:
    """Datagrams to 127.0.0.1:front go to 127.0.0.1:back, answers back to their sender."""
    outside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    outside.bind(("127.0.0.1", front))
    inside = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    inside.connect(("127.0.0.1", back))
    stop = threading.Event()
    client: list[tuple[str, int]] = []

    def run() -> None:
        deadline = time.monotonic() + RELAY_SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select([outside, inside], [], [], 0.1)
            for sock in ready:
                if sock is outside:
                    data, peer = outside.recvfrom(4096)
                    client[:] = [peer]
                    inside.send(data)
                elif client:
                    outside.sendto(inside.recv(4096), client[0])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        outside.close()
        inside.close()


def _sol(port: int, bmc) -> pexpect.spawn:  # type: ignore[no-untyped-def]
    command = ["-I", "lanplus", "-H", "127.0.0.1", "-p", str(port), "-U", bmc.username,
               "-P", bmc.password, "sol", "activate"]
    child = pexpect.spawn("ipmitool", command, timeout=20)
    child.delaybeforesend = None
    return child


def test_sol_through_a_relay_with_the_announced_port(emulator_factory) -> None:
    back, front, unset_back, unset_front = (free_ports("udp") for _ in range(4))
    bmc = emulator_factory(nodes=[
        {"name": "relayed", "ipmi": {"port": back, "sol_port": front},
         "backend": {"type": "process", "power_on": True, "env": {"BMC_SIM_SPEED": "0"}}},
        {"name": "plain", "ipmi": {"port": unset_back},
         "backend": {"type": "process", "power_on": True, "env": {"BMC_SIM_SPEED": "0"}}},
    ])
    with udp_relay(front, back):
        child = _sol(front, bmc)
        child.expect_exact("SOL Session operational")
        child.send(b"\r")
        child.expect(b"login:|~# ")  # the server's console, through the relay
        child.send(b"\r~.")
        child.expect(pexpect.EOF)
    # without sol_port, the BMC names its own port and ipmitool refuses a relay
    with udp_relay(unset_front, unset_back):
        child = _sol(unset_front, bmc)
        child.expect(pexpect.EOF)
        assert b"different port" in child.before
