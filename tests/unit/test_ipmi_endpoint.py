"""The sans-I/O IPMI engine driven with plain bytes: no sockets."""

from __future__ import annotations

import logging
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from backends.memory import MemoryBackend
from bmc.node import Node
from ipmi import wire
from ipmi.crypto import SUITE_3, SUITE_17, SessionKeys
from ipmi.endpoint import BmcEndpoint
from ipmi.session import Session, Stage

PEER = ("127.0.0.1", 40000)


def make_endpoint(**options: object) -> BmcEndpoint:
    node = Node("n1", MemoryBackend())
    node.users.add("admin", "password")
    return BmcEndpoint(node, **options)  # type: ignore[arg-type]


def v15_request(netfn: int, cmd: int, data: bytes) -> bytes:
    head = bytes((0x20, netfn << 2))
    body = bytes((0x81, 0x04, cmd)) + data
    message = head + bytes((wire.checksum(head),)) + body + bytes((wire.checksum(body),))
    return wire.build_v15(wire.AUTHTYPE_NONE, 0, 0, b"", message)


def response_data(packet: bytes) -> tuple[int, bytes]:
    """(completion code, data) of a sessionless IPMI 1.5 response."""
    message = wire.parse_v15(packet).message
    return message[6], message[7:-1]


def open_session_request(auth: int, integrity: int, conf: int, tag: int = 1,
                         console_id: int = 0xA0A1A2A3) -> bytes:
    payload = struct.pack("<BBxxI", tag, 4, console_id)
    payload += bytes((0, 0, 0, 8, auth, 0, 0, 0, 1, 0, 0, 8, integrity, 0, 0, 0,
                      2, 0, 0, 8, conf, 0, 0, 0))
    return wire.build_v20(wire.PAYLOAD_OPEN_SESSION_REQUEST, 0, 0, payload)


def test_asf_presence_ping_gets_pong() -> None:
    ping = wire.rmcp_header(wire.RMCP_CLASS_ASF) + struct.pack(">IBBBB", wire.ASF_IANA,
                                                               wire.ASF_PING, 7, 0, 0)
    pong = make_endpoint().datagram_received(ping, PEER)
    assert pong is not None and pong[8] == wire.ASF_PONG and pong[9] == 7
    assert pong[20] == 0x81  # IPMI supported


def test_channel_auth_capabilities_offer_v20_md5_password_and_no_anonymous() -> None:
    reply = make_endpoint().datagram_received(v15_request(0x06, 0x38, b"\x8e\x04"), PEER)
    assert reply is not None
    code, data = response_data(reply)
    assert code == 0
    assert data[0] == 1  # LAN channel
    assert data[1] == 0x80 | 0x04  # v2.0 extended, MD5; no NONE, no straight password
    # the password in clear only when a node is configured for it
    reply = make_endpoint(password_auth=True).datagram_received(
        v15_request(0x06, 0x38, b"\x8e\x04"), PEER)
    assert reply is not None and response_data(reply)[1][1] == 0x80 | 0x04 | 0x10
    assert data[2] & 0x03 == 0  # neither null users nor anonymous login
    assert data[3] == 0x03  # IPMI 1.5 and 2.0 connections


def test_cipher_suite_list_names_17_and_3_only() -> None:
    reply = make_endpoint().datagram_received(v15_request(0x06, 0x54, b"\x0e\x00\x80"), PEER)
    assert reply is not None
    code, data = response_data(reply)
    assert code == 0
    assert data[1:] == SUITE_17.record() + SUITE_3.record()


def test_cipher_suite_zero_is_refused() -> None:
    reply = make_endpoint().datagram_received(open_session_request(0, 0, 0), PEER)
    assert reply is not None
    packet = wire.parse_v20(reply)
    assert packet.payload_type == wire.PAYLOAD_OPEN_SESSION_RESPONSE
    assert packet.payload[1] == 0x11  # no cipher suite match


def test_open_session_negotiates_suite_17_and_half_open_sessions_take_no_slot() -> None:
    endpoint = make_endpoint(session_limit=2)
    statuses = []
    for console_id in (1, 2, 3):
        reply = endpoint.datagram_received(open_session_request(3, 4, 1, console_id=console_id),
                                           PEER)
        assert reply is not None
        payload = wire.parse_v20(reply).payload
        statuses.append(payload[1])
        if payload[1] == 0:
            assert payload[16] == 3 and payload[24] == 4 and payload[32] == 1
    # half-open sessions take no slot: only authenticated ones fill the limit
    assert statuses == [0, 0, 0]


def test_sessions_idle_too_long_are_forgotten() -> None:
    now = [1000.0]
    endpoint = make_endpoint(session_limit=1, idle_timeout=30, clock=lambda: now[0])
    endpoint.datagram_received(open_session_request(1, 1, 1, console_id=1), PEER)
    assert len(endpoint.sessions) == 1
    now[0] += 11  # past the set-up timeout of a session that never finished RAKP
    reply = endpoint.datagram_received(open_session_request(1, 1, 1, console_id=2), PEER)
    assert reply is not None and wire.parse_v20(reply).payload[1] == 0


class ErrorsLogged(logging.Handler):
    """Collects ERROR records: the engine logs (and survives) any exception a packet causes,
    so "it did not raise" alone proves nothing; "nothing was logged" does."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> ErrorsLogged:
        logging.getLogger().addHandler(self)
        return self

    def __exit__(self, *_exc: object) -> None:
        logging.getLogger().removeHandler(self)
        assert not self.records, [self.format(r) for r in self.records]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_raises(data: bytes) -> None:
    endpoint = make_endpoint()
    with ErrorsLogged():
        for prefix in (b"", b"\x06\x00\xff\x07", b"\x06\x00\xff\x07\x06",
                       b"\x06\x00\xff\x07\x00"):
            endpoint.datagram_received(prefix + data, PEER)
    # and it still answers
    reply = endpoint.datagram_received(v15_request(0x06, 0x38, b"\x0e\x04"), PEER)
    assert reply is not None and response_data(reply)[0] == 0


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([(0x06, 0x38), (0x06, 0x54), (0x06, 0x99), (0x2C, 0x7F)]),
       st.binary(max_size=40))
def test_a_well_formed_request_with_any_data_gets_an_answer(command: tuple[int, int],
                                                           data: bytes) -> None:
    # sessionless commands (and unknown ones) are answered, whatever their data: a completion
    # code, never silence or a crash
    endpoint = make_endpoint()
    netfn, cmd = command
    with ErrorsLogged():
        reply = endpoint.datagram_received(v15_request(netfn, cmd, data), PEER)
    assert reply is not None
    message = wire.parse_v15(reply).message
    assert message[1] >> 2 == netfn + 1 and message[5] == cmd  # the response to this request
    code = message[6]
    assert code == 0 or 0x80 <= code <= 0xFF


def test_aes_payload_round_trip_and_integrity() -> None:
    keys = SessionKeys.derive(SUITE_17, b"password", b"x" * 34)
    for size in (0, 1, 15, 16, 17, 100):
        plaintext = bytes(range(size))
        assert keys.decrypt(keys.encrypt(plaintext)) == plaintext
    signature = keys.sign(b"abc")
    assert len(signature) == 16 and keys.verify(b"abc", signature)
    assert not keys.verify(b"abd", signature)


def test_sequence_window() -> None:
    session = Session(1, 2, PEER, Stage.ACTIVE, 0.0)
    assert not session.accept_inbound_seq(0)
    assert session.accept_inbound_seq(100)
    assert session.accept_inbound_seq(101)
    assert session.accept_inbound_seq(95)  # late but inside the window
    assert not session.accept_inbound_seq(80)  # too old
    assert not session.accept_inbound_seq(200)  # too far ahead
