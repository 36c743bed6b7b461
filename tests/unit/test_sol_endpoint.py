"""SOL through the sans-I/O endpoint: payload commands and encrypted SOL packets as bytes."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from test_ipmi_endpoint import ErrorsLogged
from test_sol_engine import SerialBackend

from backends.memory import MemoryBackend
from bmc.node import Node
from bmc.users import Privilege
from ipmi import wire
from ipmi.crypto import SUITE_17, SessionKeys
from ipmi.endpoint import BmcEndpoint
from ipmi.session import Session, Stage
from ipmi.sol import ST_DEACTIVATING, SolPacket

PEERS = [("127.0.0.1", 40001), ("127.0.0.1", 40002)]
ACTIVATE = bytes((0x01, 0x01, 0xC0, 0, 0, 0))  # SOL, instance 1, encrypted + authenticated


class Console:
    """One RMCP+ session with keys, made directly (the RAKP handshake is tested elsewhere)."""

    def __init__(self, endpoint: BmcEndpoint, index: int) -> None:
        self.endpoint = endpoint
        self.peer = PEERS[index]
        self.keys = SessionKeys.derive(SUITE_17, b"password", bytes((index,)) * 34)
        user = endpoint.node.users.by_name("admin")
        self.session = Session(0x100 + index, 0x200 + index, self.peer, Stage.ACTIVE,
                               endpoint.clock(), suite=SUITE_17, user=user, keys=self.keys,
                               max_privilege=Privilege.ADMINISTRATOR,
                               privilege=Privilege.ADMINISTRATOR)
        endpoint.sessions[self.session.bmc_id] = self.session
        self.seq = 0
        self.rq_seq = 0

    def send(self, payload_type: int, plaintext: bytes) -> bytes | None:
        self.seq += 1
        packet = wire.build_v20(payload_type, self.session.bmc_id, self.seq,
                                self.keys.encrypt(plaintext), encrypted=True, sign=self.keys.sign)
        return self.endpoint.datagram_received(packet, self.peer)

    def open(self, packet: bytes) -> tuple[int, bytes]:
        parsed = wire.parse_v20(packet, SUITE_17.icv_length)
        assert parsed.session_id == self.session.console_id
        assert self.keys.verify(parsed.signed, parsed.authcode)
        return parsed.payload_type, self.keys.decrypt(parsed.payload)

    def command(self, netfn: int, cmd: int, data: bytes = b"") -> tuple[int, bytes]:
        self.rq_seq = (self.rq_seq + 1) % 64
        head = bytes((0x20, netfn << 2))
        body = bytes((0x81, self.rq_seq << 2, cmd)) + data
        message = head + bytes((wire.checksum(head),)) + body + bytes((wire.checksum(body),))
        reply = self.send(wire.PAYLOAD_IPMI, message)
        assert reply is not None
        payload_type, response = self.open(reply)
        assert payload_type == wire.PAYLOAD_IPMI
        return response[6], response[7:-1]

    def sol(self, packet: SolPacket) -> SolPacket | None:
        reply = self.send(wire.PAYLOAD_SOL, packet.build())
        if reply is None:
            return None
        payload_type, raw = self.open(reply)
        assert payload_type == wire.PAYLOAD_SOL
        return SolPacket.parse(raw)


def endpoint_with(backend: MemoryBackend) -> BmcEndpoint:
    node = Node("n1", backend)
    node.users.add("admin", "password")
    return BmcEndpoint(node, local_address=("127.0.0.1", 16230))


def test_activate_talk_and_get_deactivated_by_another_session() -> None:
    backend = SerialBackend()
    endpoint = endpoint_with(backend)
    wakeups: list[int] = []
    endpoint.wakeup = lambda: wakeups.append(1)
    first, second = Console(endpoint, 0), Console(endpoint, 1)
    code, data = first.command(0x06, 0x48, ACTIVATE)
    assert code == 0 and len(data) == 12
    inbound, outbound, port, vlan = struct.unpack("<HHHH", data[4:])
    assert (inbound, outbound, port, vlan) == (255, 255, 16230, 0xFFFF)
    assert second.command(0x06, 0x48, ACTIVATE)[0] == 0x80  # already active
    assert second.command(0x06, 0x4A, b"\x01") == (0, b"\x01\x01\x00")
    # typing: acknowledged at once, reaches the serial port
    ack = first.sol(SolPacket(1, 0, 0, 0, b"root\r"))
    assert ack == SolPacket(0, 1, 5, 0)
    assert backend.typed == b"root\r"
    # output: the hub wakes the I/O loop; poll() has the packet once it is due
    backend.prints(b"Password: ")
    assert wakeups
    now = endpoint.clock()
    assert endpoint.poll(now) == []
    deadline = endpoint.next_deadline()
    assert deadline is not None and deadline <= now + 0.011
    [(peer, packet)] = endpoint.poll(now + 0.011)
    assert peer == first.peer
    payload_type, raw = first.open(packet)
    assert payload_type == wire.PAYLOAD_SOL and SolPacket.parse(raw) == SolPacket(
        1, 0, 0, 0, b"Password: ")
    # another session takes the console away: the first one is told, twice over
    assert second.command(0x06, 0x49, ACTIVATE) == (0, b"")
    notice, empty = endpoint.poll(now + 0.02)
    assert notice[0] == empty[0] == first.peer
    status = SolPacket.parse(first.open(notice[1])[1])
    assert status is not None and status.op & ST_DEACTIVATING
    assert empty[1] == b""
    assert second.command(0x06, 0x49, ACTIVATE)[0] == 0x80  # nothing left to deactivate


def test_sol_configuration_parameters() -> None:
    endpoint = endpoint_with(SerialBackend())
    console = Console(endpoint, 0)
    assert console.command(0x0C, 0x22, b"\x0e\x08\x00\x00") == (0, b"\x11" + struct.pack(
        "<H", 16230))
    assert console.command(0x0C, 0x22, b"\x8e\x01\x00\x00") == (0, b"\x11")  # revision only
    assert console.command(0x0C, 0x21, b"\x0e\x00\x01") == (0, b"")  # set in progress
    assert console.command(0x0C, 0x21, b"\x0e\x00\x01")[0] == 0x81  # already in progress
    assert console.command(0x0C, 0x21, b"\x0e\x03\x05\x20") == (0, b"")
    assert console.command(0x0C, 0x21, b"\x0e\x00\x00") == (0, b"")  # set complete
    assert console.command(0x0C, 0x22, b"\x0e\x03\x00\x00") == (0, b"\x11\x05\x20")
    assert console.command(0x0C, 0x21, b"\x0e\x08\x6f\x02")[0] == 0x82  # the port: read-only
    assert console.command(0x0C, 0x21, b"\x0e\x05\x03")[0] == 0xCC  # no such bit rate
    assert console.command(0x0C, 0x21, b"\x0e\x03\x00\x20")[0] == 0xCC  # interval 0
    assert console.command(0x0C, 0x22, b"\x0e\x63\x00\x00")[0] == 0x80  # no parameter 99
    # SOL turned off: activation is refused
    assert console.command(0x0C, 0x21, b"\x0e\x01\x00") == (0, b"")
    assert console.command(0x06, 0x48, ACTIVATE)[0] == 0x81


def test_a_server_without_serial_port_refuses_sol() -> None:
    console = Console(endpoint_with(MemoryBackend()), 0)
    assert console.command(0x06, 0x48, ACTIVATE)[0] == 0x81  # payload type disabled
    assert console.command(0x0C, 0x22, b"\x0e\x01\x00\x00") == (0, b"\x11\x00")


def test_a_user_session_below_the_sol_privilege_is_refused() -> None:
    endpoint = endpoint_with(SerialBackend())
    endpoint.node.console.sol.privilege = Privilege.OPERATOR
    console = Console(endpoint, 0)
    console.session.privilege = Privilege.USER
    assert console.command(0x06, 0x48, ACTIVATE)[0] == 0xD4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_any_sol_bytes_are_harmless(payloads: list[bytes]) -> None:
    endpoint = endpoint_with(SerialBackend())
    console = Console(endpoint, 0)
    assert console.command(0x06, 0x48, ACTIVATE)[0] == 0
    with ErrorsLogged():  # the engine survives any exception: it must not have had one
        for payload in payloads:
            console.send(wire.PAYLOAD_SOL, payload)
            endpoint.poll(endpoint.clock() + 1)
    assert endpoint.sol.payload is not None
    # the session still works: a command is answered, and SOL is still the one activated
    code, _ = console.command(0x06, 0x01)  # Get Device ID
    assert code == 0
    assert console.command(0x06, 0x48, ACTIVATE)[0] == 0x80  # already active
