"""Session robustness of the sans-I/O engine: limits, idle timeout, sequence numbers, resets.

A small RMCP+ console (RAKP with suite 17) drives `BmcEndpoint` with plain bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from backends.base import PowerState
from backends.memory import MemoryBackend
from bmc.node import Node, PowerAction
from bmc.users import Privilege
from ipmi import endpoint as ipmi_endpoint
from ipmi import wire
from ipmi.crypto import SUITE_17, SessionKeys
from ipmi.endpoint import BmcEndpoint
from ipmi.session import Session, Stage

PEER = ("127.0.0.1", 40000)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**options: object) -> tuple[BmcEndpoint, Clock]:
    clock = Clock()
    node = Node("n1", MemoryBackend())
    node.users.add("admin", "password")
    node.users.add("viewer", "viewpass", Privilege.USER)
    return BmcEndpoint(node, clock=clock, **options), clock  # type: ignore[arg-type]


def request(netfn: int, cmd: int, data: bytes = b"", rq_seq: int = 1) -> bytes:
    head = bytes((0x20, netfn << 2))
    body = bytes((0x81, rq_seq << 2, cmd)) + data
    return head + bytes((wire.checksum(head),)) + body + bytes((wire.checksum(body),))


@dataclass
class Console:
    """One RMCP+ session from the console side."""

    endpoint: BmcEndpoint
    bmc_id: int
    keys: SessionKeys
    seq: int = 0

    def packet(self, netfn: int, cmd: int, data: bytes = b"", seq: int | None = None) -> bytes:
        if seq is None:
            self.seq += 1
            seq = self.seq
        return wire.build_v20(wire.PAYLOAD_IPMI, self.bmc_id, seq,
                              self.keys.encrypt(request(netfn, cmd, data)), encrypted=True,
                              sign=self.keys.sign)

    def send(self, packet: bytes) -> tuple[int, bytes] | None:
        """(completion code, data) of the reply, or None if the BMC stayed silent."""
        reply = self.endpoint.datagram_received(packet, PEER)
        if reply is None:
            return None
        parsed = wire.parse_v20(reply, SUITE_17.icv_length)
        assert self.keys.verify(parsed.signed, parsed.authcode)
        message = self.keys.decrypt(parsed.payload)
        return message[6], message[7:-1]

    def call(self, netfn: int, cmd: int, data: bytes = b"") -> tuple[int, bytes] | None:
        return self.send(self.packet(netfn, cmd, data))


def open_session(endpoint: BmcEndpoint, console_id: int = 0x11, user: str = "admin",
                 password: str = "password", role: int = 4) -> Console | int:
    """A console with an active session, or the RMCP+ status code that refused it."""
    payload = struct.pack("<BBxxI", 1, role, console_id) + bytes(
        (0, 0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0))
    reply = endpoint.datagram_received(
        wire.build_v20(wire.PAYLOAD_OPEN_SESSION_REQUEST, 0, 0, payload), PEER)
    assert reply is not None
    body = wire.parse_v20(reply).payload
    if body[1] != 0:
        return body[1]
    bmc_id = struct.unpack_from("<I", body, 8)[0]
    console_random, name = bytes(range(16)), user.encode()
    rakp1 = struct.pack("<BxxxI", 2, bmc_id) + console_random + bytes((role, 0, 0, len(name)))
    reply = endpoint.datagram_received(
        wire.build_v20(wire.PAYLOAD_RAKP1, 0, 0, rakp1 + name), PEER)
    assert reply is not None
    rakp2 = wire.parse_v20(reply).payload
    if rakp2[1] != 0:
        return rakp2[1]
    bmc_random = rakp2[8:24]
    key = password.encode()
    authcode = hmac.new(key, bmc_random + struct.pack("<I", console_id)
                        + bytes((role, len(name))) + name, hashlib.sha256).digest()
    reply = endpoint.datagram_received(
        wire.build_v20(wire.PAYLOAD_RAKP3, 0, 0, struct.pack("<BBxxI", 3, 0, bmc_id) + authcode),
        PEER)
    assert reply is not None
    if wire.parse_v20(reply).payload[1] != 0:
        return wire.parse_v20(reply).payload[1]
    keys = SessionKeys.derive(SUITE_17, key, console_random + bmc_random
                              + bytes((role, len(name))) + name)
    console = Console(endpoint, bmc_id, keys)
    assert console.call(0x06, 0x3B, bytes((role,))) == (0, bytes((role,)))  # raise privilege
    return console


def test_the_fifth_session_gets_insufficient_resources_until_one_closes() -> None:
    endpoint, _ = make()
    consoles = [open_session(endpoint, console_id=i) for i in range(1, 5)]
    assert all(isinstance(c, Console) for c in consoles)
    assert open_session(endpoint, console_id=5) == 0x01
    first = consoles[0]
    assert isinstance(first, Console)
    assert first.call(0x06, 0x3C, struct.pack("<I", first.bmc_id)) == (0, b"")
    assert isinstance(open_session(endpoint, console_id=6), Console)


def test_a_session_limit_of_one_is_honoured() -> None:
    endpoint, _ = make(session_limit=1)
    assert isinstance(open_session(endpoint, console_id=1), Console)
    assert open_session(endpoint, console_id=2) == 0x01


def test_an_idle_session_is_dropped_and_frees_its_slot() -> None:
    endpoint, clock = make(session_limit=1, idle_timeout=5)
    console = open_session(endpoint)
    assert isinstance(console, Console)
    clock.now += 4
    assert console.call(0x00, 0x01) is not None  # activity keeps it
    clock.now += 4
    assert console.call(0x00, 0x01) is not None
    clock.now += 5.5
    endpoint.expire_sessions()
    assert endpoint.sessions == {}
    assert console.call(0x00, 0x01) is None
    assert isinstance(open_session(endpoint, console_id=2), Console)


def test_replayed_and_old_sequence_numbers() -> None:
    endpoint, _ = make()
    console = open_session(endpoint)
    assert isinstance(console, Console)
    first = console.packet(0x00, 0x01)
    answer = console.send(first)
    assert answer is not None
    assert console.send(first) == answer  # a retransmission: the same answer, done once
    late = [console.packet(0x00, 0x01) for _ in range(3)]
    assert console.send(late[2]) is not None
    assert console.send(late[0]) is not None  # out of order, inside the window: once
    assert console.send(console.packet(0x00, 0x01, seq=console.seq - 2)) is None  # replay
    for _ in range(20):
        assert console.call(0x00, 0x01) is not None
    assert console.send(console.packet(0x00, 0x01, seq=console.seq - 20)) is None  # too old
    assert console.send(console.packet(0x00, 0x01, seq=console.seq + 40)) is None  # too new
    assert console.call(0x00, 0x01) is not None  # the session still works


def test_sequence_window_bookkeeping() -> None:
    session = Session(1, 2, PEER, Stage.ACTIVE, 0.0)
    assert not session.accept_inbound_seq(0)
    assert [session.accept_inbound_seq(n) for n in (5, 7, 6, 6, 5, 7, 8)] == \
        [True, True, True, False, False, False, True]
    assert not session.accept_inbound_seq(8 - 16) and session.accept_inbound_seq(8 - 15)
    wrap = Session(1, 2, PEER, Stage.ACTIVE, 0.0)
    assert wrap.accept_inbound_seq(0xFFFFFFFE) and wrap.accept_inbound_seq(1)
    assert wrap.accept_inbound_seq(0xFFFFFFFF) and not wrap.accept_inbound_seq(1)
    # SOL keeps its own sequence numbers: a byte-for-byte retransmission gets through
    assert wrap.accept_inbound_seq(1, duplicates_ok=True)
    assert not wrap.accept_inbound_seq(40, duplicates_ok=True)


def test_a_user_level_session_may_not_change_passwords() -> None:
    endpoint, _ = make()
    viewer = open_session(endpoint, user="viewer", password="viewpass", role=2)
    assert isinstance(viewer, Console)
    data = b"\x02\x02" + b"hacked".ljust(16, b"\x00")
    assert viewer.call(0x06, 0x47, data) == (0xD4, b"")
    assert endpoint.node.users.authenticate("admin", "password") is not None
    assert open_session(endpoint, user="viewer", password="viewpass", role=4) == 0x09


def test_disabled_and_no_access_users_cannot_open_sessions() -> None:
    endpoint, _ = make()
    users = endpoint.node.users
    users.set_enabled(3, False)
    assert open_session(endpoint, user="viewer", password="viewpass", role=2) == 0x0D
    users.set_enabled(3, True)
    users.set_access(3, privilege=Privilege.NO_ACCESS)
    assert open_session(endpoint, user="viewer", password="viewpass", role=2) == 0x0D
    users.set_access(3, privilege=Privilege.USER, ipmi_messaging=False)
    assert open_session(endpoint, user="viewer", password="viewpass", role=2) == 0x0D
    users.set_access(3, ipmi_messaging=True)
    assert isinstance(open_session(endpoint, user="viewer", password="viewpass", role=2),
                      Console)


def test_bmc_reset_drops_sessions_after_the_reply() -> None:
    endpoint, _ = make(session_limit=2)
    console = open_session(endpoint, console_id=1)
    other = open_session(endpoint, console_id=2)
    assert isinstance(console, Console) and isinstance(other, Console)
    endpoint.node.power(PowerAction.ON)
    assert console.call(0x06, 0x03) == (0, b"")  # warm reset: answered in the session
    assert console.call(0x00, 0x01) is None  # then the session is gone
    assert other.call(0x00, 0x01) is None
    # the slots are free at once; a client's Close Session is still answered
    assert isinstance(open_session(endpoint, console_id=3), Console)
    assert other.call(0x06, 0x3C, struct.pack("<I", other.bmc_id)) == (0, b"")
    assert endpoint.session_count() == 1
    assert endpoint.node.power_state is PowerState.ON  # the server was not touched


# -- half-open sessions never starve authenticated logins -------------------------------------
def _open_only(endpoint: BmcEndpoint, peer: tuple[str, int], console_id: int) -> int:
    payload = struct.pack("<BBxxI", 1, 4, console_id) + bytes(
        (0, 0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0))
    reply = endpoint.datagram_received(
        wire.build_v20(wire.PAYLOAD_OPEN_SESSION_REQUEST, 0, 0, payload), peer)
    assert reply is not None
    return wire.parse_v20(reply).payload[1]


def test_a_storm_of_half_open_sessions_never_keeps_a_login_out() -> None:
    endpoint, _ = make()
    # thousands of Open Session Requests that never authenticate, from one source and many
    for i in range(2000):
        assert _open_only(endpoint, ("192.0.2.66", 1000 + i), console_id=i) == 0
        assert _open_only(endpoint, (f"198.51.100.{i % 200}", 2000), console_id=i) == 0
    # the table stays bounded, and every slot is still free for authenticated sessions
    assert len(endpoint.sessions) <= ipmi_endpoint.HALF_OPEN_LIMIT
    consoles = [open_session(endpoint, console_id=0x100 + i) for i in range(4)]
    assert all(isinstance(c, Console) for c in consoles)
    # full now: a fifth is refused by the limit, not by the storm
    assert open_session(endpoint, console_id=0x200) == 0x01


def test_a_login_interleaved_with_a_storm_completes() -> None:
    endpoint, _ = make()
    payload = struct.pack("<BBxxI", 1, 4, 0x77) + bytes(
        (0, 0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 8, 4, 0, 0, 0, 2, 0, 0, 8, 1, 0, 0, 0))
    reply = endpoint.datagram_received(
        wire.build_v20(wire.PAYLOAD_OPEN_SESSION_REQUEST, 0, 0, payload), PEER)
    assert reply is not None
    bmc_id = struct.unpack_from("<I", wire.parse_v20(reply).payload, 8)[0]
    for i in range(500):  # a flood from one other source between Open Session and RAKP1
        _open_only(endpoint, ("192.0.2.66", 3000 + i), console_id=i)
    assert bmc_id in endpoint.sessions  # the per-source bound evicted the flood's own


def test_half_open_sessions_expire_in_seconds_and_wrong_passwords_hold_no_slot() -> None:
    endpoint, clock = make(session_limit=1)
    for _ in range(20):  # an ordinary wrong-password loop
        assert open_session(endpoint, password="wrong") == 0x0F
    assert isinstance(open_session(endpoint, console_id=0x55), Console)
    _open_only(endpoint, ("192.0.2.66", 1), console_id=9)
    clock.now += ipmi_endpoint.HALF_OPEN_TIMEOUT + 0.1
    endpoint.expire_sessions()
    assert all(s.stage.value == "active" for s in endpoint.sessions.values())
