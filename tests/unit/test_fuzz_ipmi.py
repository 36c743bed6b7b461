"""The IPMI engine under fuzzing (bench/fuzzing/ipmi.py), bounded for CI, and the bugs the
fuzzer found, each kept as a plain regression test."""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzzing import BytesSource, FuzzFailure, Source
from bench.fuzzing.ipmi import ACTIVATE_SOL, HARNESS, IpmiTarget, message
from ipmi import wire
from ipmi.crypto import SUITE_3, SUITE_17
from ipmi.sol import SOL_DATA_MAX, SolPacket


@pytest.fixture
def target() -> Iterator[IpmiTarget]:
    made = IpmiTarget()
    made.errors.install()
    yield made
    made.errors.remove()
    made.close()


# -- found by the fuzzer ---------------------------------------------------------------------------


@pytest.mark.parametrize("suite", [SUITE_17, SUITE_3], ids=["suite17", "suite3"])
@pytest.mark.parametrize("ciphertext", [bytes(20), b"\x01" * 33, bytes(15)],
                         ids=["20 bytes", "33 bytes", "shorter than an IV"])
def test_a_signed_packet_that_does_not_decrypt_is_dropped_quietly(
        target: IpmiTarget, suite: object, ciphertext: bytes) -> None:
    # found: a session's client (only it can sign) sending a payload whose length is not
    # AES-CBC's made the engine log a traceback at ERROR for every such packet
    client = target.session(suite)  # type: ignore[arg-type]
    assert target.send(client.seal(wire.PAYLOAD_IPMI, b"", ciphertext=ciphertext),
                       ("127.0.0.1", 40000)) is None
    target.errors.check("undecryptable packet")
    assert target.command(client, 0x06, 0x01) is not None  # the session goes on


def test_a_signed_packet_with_a_bad_pad_is_dropped_quietly(target: IpmiTarget) -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    client = target.session(SUITE_17)
    block = message(0x06, 0x01, b"").ljust(15, b"\0") + b"\x20"  # pad length 32: impossible
    encryptor = Cipher(algorithms.AES(client.keys.aes_key), modes.CBC(bytes(16))).encryptor()
    ciphertext = bytes(16) + encryptor.update(block) + encryptor.finalize()
    assert target.send(client.seal(wire.PAYLOAD_IPMI, b"", ciphertext=ciphertext),
                       ("127.0.0.1", 40000)) is None
    target.errors.check("bad pad")


def test_a_sol_packet_longer_than_announced_is_acknowledged_in_part(target: IpmiTarget) -> None:
    # found: a SOL packet of more than 255 characters made the acknowledgement's one-byte
    # count overflow (ValueError, a traceback at ERROR, the characters typed but never acked)
    typed = bytearray()
    target.node.backend.write_console = typed.extend  # type: ignore[method-assign]
    client = target.session(SUITE_17)
    assert target.command(client, 0x06, 0x48, ACTIVATE_SOL) is not None
    text = bytes(range(32, 127)) * 4  # 380 characters
    reply = target.send(client.seal(wire.PAYLOAD_SOL, bytes((1, 0, 0, 0)) + text), HARNESS)
    assert reply is not None
    assert SolPacket.parse(client.open(reply)[1]) == SolPacket(0, 1, SOL_DATA_MAX, 0)
    assert typed == text[:SOL_DATA_MAX]
    # the console sends the rest in its next packet, as after any partial ACK
    reply = target.send(client.seal(wire.PAYLOAD_SOL, bytes((2, 0, 0, 0))
                                    + text[SOL_DATA_MAX:]), HARNESS)
    assert reply is not None and typed == text
    target.errors.check("long SOL packet")


def test_rakp1_naming_an_ipmi15_challenge_is_refused(target: IpmiTarget) -> None:
    # found: anyone could take the session ID a Get Session Challenge (IPMI 1.5) hands out and
    # name it in an RMCP+ RAKP1; the engine then failed an assertion (no cipher suite) and
    # logged a traceback at ERROR for every such datagram
    peer = ("192.0.2.10", 50000)
    challenge = message(0x06, 0x39, bytes((wire.AUTHTYPE_MD5,)) + b"admin".ljust(16, b"\0"))
    reply = target.send(wire.build_v15(wire.AUTHTYPE_NONE, 0, 0, b"", challenge), peer)
    assert reply is not None
    session_id = struct.unpack_from("<I", wire.parse_v15(reply).message, 7)[0]
    rakp1 = struct.pack("<BxxxI", 7, session_id) + bytes(16) + bytes((4, 0, 0, 5)) + b"admin"
    reply = target.send(wire.build_v20(wire.PAYLOAD_RAKP1, 0, 0, rakp1), peer)
    assert reply is not None
    assert wire.parse_v20(reply).payload[1] == 0x02  # invalid session ID
    target.errors.check("RAKP1 naming a 1.5 session")


# -- the fuzzer, bounded ---------------------------------------------------------------------------
# deterministic (derandomize, no example database): the same examples on every CI run; state
# carries over from one example to the next, as on a real BMC
FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def fuzz(target: IpmiTarget, ops: list[Callable[[Source], None]] | None,
         examples: int) -> None:
    @settings(FUZZ, max_examples=examples)
    @given(st.binary(min_size=16, max_size=1024))
    def one(data: bytes) -> None:
        if ops is None:
            target.run_input(data)  # raw datagrams too
        else:
            target.run(BytesSource(data), ops=ops)

    one()
    target.still_works()


def test_before_authentication(target: IpmiTarget) -> None:
    """Raw and mutated datagrams, ASF, IPMI 1.5 (none/MD5/password), Open Session, RAKP."""
    fuzz(target, target.pre_auth, 3000)
    assert target.stats["replies"] > 100  # the datagrams were answered, not all dropped


def test_inside_authenticated_sessions(target: IpmiTarget) -> None:
    """Fuzzed requests in RMCP+ sessions (suites 17 and 3) and IPMI 1.5 sessions."""
    fuzz(target, target.post_auth, 2500)
    assert target.stats["logins"] >= 4


def test_serial_over_lan(target: IpmiTarget) -> None:
    """Fuzzed SOL packets in an activated SOL payload, and the clock moving on."""
    fuzz(target, target.sol_ops, 2000)
    assert target.stats["sol_packets"] > 100


def test_everything_at_once(target: IpmiTarget) -> None:
    fuzz(target, None, 3000)


# -- the checks themselves catch what they are for ---------------------------------------------


def test_a_malformed_reply_is_a_failure(target: IpmiTarget) -> None:
    for bad in (b"\x06\x00\xff\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x09",  # short message
                b"\x07\x00\xff\x07\x06", b"\x06\x00\xff\x06" + bytes(24)):
        with pytest.raises(FuzzFailure):
            target.check_reply(bad, b"")


def test_an_error_record_is_a_failure(target: IpmiTarget) -> None:
    logging.getLogger("ipmi.endpoint").error("boom")
    with pytest.raises(FuzzFailure, match="boom"):
        target.errors.check("IPMI")
