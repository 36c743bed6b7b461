"""Known-answer vectors for RMCP+ (IPMI 2.0 sections 13.28-13.32): a real ipmitool exchange.

`data/rmcp_ipmitool_capture.json` holds every datagram of `ipmitool -vvvv mc info` (cipher
suites 17 and 3) against our endpoint, made deterministic by a fixed random source, and the
SIK, K1, K2 and RAKP3 HMAC that *ipmitool* computed and printed. Replaying ipmitool's packets
to a fresh endpoint must reproduce the handshake byte for byte, derive ipmitool's keys, accept
ipmitool's HMACs and decrypt ipmitool's AES-CBC-128 payloads; our encrypted replies must open
with ipmitool's keys. Packets are taken apart here with `struct`, and HMAC/AES done with
`hmac` and `cryptography` directly, so that a bug shared by our framing and our own test
console cannot pass.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from backends.memory import MemoryBackend
from bmc.node import Node
from ipmi.crypto import SUITE_3, SUITE_17, CipherSuite, SessionKeys
from ipmi.endpoint import BmcEndpoint

CAPTURE = json.loads((Path(__file__).parent / "data" / "rmcp_ipmitool_capture.json")
                     .read_text())
PEER = ("127.0.0.1", 50123)
SUITES = {"17": SUITE_17, "3": SUITE_3}


def deterministic_random() -> Callable[[int], bytes]:
    """The random source the capture was made with."""
    calls = [0]

    def random(size: int) -> bytes:
        calls[0] += 1
        return hashlib.sha256(b"bmc-random-%d" % calls[0]).digest()[:size]

    return random


@dataclass
class Packet:
    """An RMCP+ (IPMI 2.0) packet, taken apart by the spec's layout (section 13.6)."""

    payload_type: int
    session_id: int
    sequence: int
    payload: bytes
    signed: bytes  # from the auth type byte through the next header byte
    authcode: bytes


def parse(datagram: bytes, icv_length: int) -> Packet:
    assert datagram[:4] == b"\x06\x00\xff\x07" and datagram[4] == 0x06  # RMCP, IPMI, RMCP+
    payload_type = datagram[5] & 0x3F
    session_id, sequence, length = struct.unpack_from("<IIH", datagram, 6)
    payload = datagram[16:16 + length]
    if not datagram[5] & 0x40:  # not authenticated: nothing follows the payload
        assert len(datagram) == 16 + length
        return Packet(payload_type, session_id, sequence, payload, b"", b"")
    trailer = datagram[16 + length:]
    authcode = trailer[-icv_length:]
    pad_length, next_header = trailer[-icv_length - 2], trailer[-icv_length - 1]
    assert next_header == 0x07 and trailer[:pad_length] == b"\xff" * pad_length
    assert (len(datagram) - 4 - icv_length) % 4 == 0  # the integrity pad's purpose
    return Packet(payload_type, session_id, sequence, payload,
                  datagram[4:len(datagram) - icv_length], authcode)


def aes_open(key: bytes, payload: bytes) -> bytes:
    """AES-CBC-128 payload (13.29): IV, ciphertext of data + pad 1, 2, .. + pad length."""
    decryptor = Cipher(algorithms.AES(key), modes.CBC(payload[:16])).decryptor()
    block = decryptor.update(payload[16:]) + decryptor.finalize()
    pad = block[-1]
    assert block[-1 - pad:-1] == bytes(range(1, pad + 1))
    return block[:-1 - pad]


def checksum_ok(part: bytes) -> bool:
    return sum(part) % 256 == 0


def replay(suite_name: str, count: int | None = None
           ) -> tuple[BmcEndpoint, list[tuple[bytes, bytes | None]], Any]:
    """A fresh endpoint given ipmitool's packets (the first `count`); (endpoint,
    [(request, our reply)], capture)."""
    capture = CAPTURE["suites"][suite_name]
    node = Node(CAPTURE["node"], MemoryBackend())
    node.users.add(CAPTURE["user"], CAPTURE["password"])
    endpoint = BmcEndpoint(node, random=deterministic_random())
    assert endpoint.guid.hex() == capture["guid"]
    exchange = []
    for request_hex, _ in capture["packets"][:count]:
        request = bytes.fromhex(request_hex)
        exchange.append((request, endpoint.datagram_received(request, PEER)))
    return endpoint, exchange, capture


@pytest.mark.parametrize("suite_name", SUITES)
def test_the_handshake_is_reproduced_byte_for_byte(suite_name: str) -> None:
    _, exchange, capture = replay(suite_name)
    # Open Session, RAKP 1 -> 2, RAKP 3 -> 4: nothing random is left in them (the session ID
    # and Rc come from the fixed source, drawn in the same order), so ours must be the very
    # bytes ipmitool accepted
    for (request, reply), (_, captured) in zip(exchange[1:4], capture["packets"][1:4],
                                               strict=True):
        assert reply is not None and reply.hex() == captured, request.hex()


@pytest.mark.parametrize("suite_name", SUITES)
def test_session_keys_are_ipmitools(suite_name: str) -> None:
    endpoint, _, capture = replay(suite_name, 4)  # up to RAKP 3: the session is open
    (session,) = endpoint.sessions.values()
    keys = capture["ipmitool"]
    assert session.keys is not None
    assert session.keys.sik.hex() == keys["sik"]
    assert session.keys.k1.hex() == keys["k1"]
    assert session.keys.aes_key.hex() == keys["k2"][:32]  # AES-128: the first 16 bytes of K2
    assert session.console_random.hex() == keys["console_random"]


@pytest.mark.parametrize("suite_name", SUITES)
def test_rakp_hmacs_follow_the_spec(suite_name: str) -> None:
    """RAKP2/3/4 fields at their spec offsets, checked with ipmitool's own MAC and keys."""
    suite: CipherSuite = SUITES[suite_name]
    _, exchange, capture = replay(suite_name)
    printed = capture["ipmitool"]
    rakp1 = parse(exchange[2][0], 0).payload
    rakp2 = parse(exchange[2][1] or b"", 0).payload
    rakp3 = parse(exchange[3][0], 0).payload
    rakp4 = parse(exchange[3][1] or b"", 0).payload
    console_id = struct.unpack_from("<I", rakp2, 4)[0]
    bmc_id = struct.unpack_from("<I", rakp1, 4)[0]
    console_random, role, name = rakp1[8:24], rakp1[24], rakp1[28:28 + rakp1[27]]
    bmc_random, guid = rakp2[8:24], rakp2[24:40]
    assert console_random.hex() == printed["console_random"] and name == b"admin"
    kuid = CAPTURE["password"].encode().ljust(20, b"\0")  # ipmitool pads the key to 20 bytes
    digest = suite.digest
    # RAKP 2 auth code (13.31): HMAC_Kuid(SIDm, SIDc, Rm, Rc, GUIDc, Role, ULen, UName)
    rakp2_mac = hmac.new(kuid, struct.pack("<II", console_id, bmc_id) + console_random
                         + bmc_random + guid + bytes((role, len(name))) + name, digest).digest()
    assert rakp2[40:] == rakp2_mac
    # RAKP 3 auth code: HMAC_Kuid(Rc, SIDm, Role, ULen, UName) - ipmitool's, as it printed it
    assert rakp3[8:].hex() == printed["rakp3_mac"]
    assert rakp3[8:] == hmac.new(kuid, bmc_random + struct.pack("<I", console_id)
                                 + bytes((role, len(name))) + name, digest).digest()
    # RAKP 4 ICV: HMAC_SIK(Rm, SIDc, GUIDc), truncated to the suite's integrity length
    sik = bytes.fromhex(printed["sik"])
    icv = hmac.new(sik, console_random + struct.pack("<I", bmc_id) + guid, digest).digest()
    assert rakp4[8:] == icv[:suite.icv_length]
    # SIK, K1, K2 (13.32): HMAC_Kg(Rm, Rc, Role, ULen, UName); K1/K2 = HMAC_SIK(const 1 / 2)
    assert sik == hmac.new(kuid, console_random + bmc_random + bytes((role, len(name))) + name,
                           digest).digest()
    assert hmac.new(sik, b"\x01" * 20, digest).hexdigest() == printed["k1"]
    assert hmac.new(sik, b"\x02" * 20, digest).hexdigest() == printed["k2"]


@pytest.mark.parametrize("suite_name", SUITES)
def test_ipmitools_encrypted_requests_are_accepted_and_our_replies_open(
        suite_name: str) -> None:
    suite = SUITES[suite_name]
    _, exchange, capture = replay(suite_name)
    k1 = bytes.fromhex(capture["ipmitool"]["k1"])
    aes_key = bytes.fromhex(capture["ipmitool"]["k2"])[:16]
    commands = []
    for request, reply in exchange[4:]:
        packet = parse(request, suite.icv_length)
        # ipmitool's integrity (HMAC-SHA1-96 / HMAC-SHA256-128 over the signed span)
        assert hmac.new(k1, packet.signed, suite.digest).digest()[:suite.icv_length] == \
            packet.authcode
        message = aes_open(aes_key, packet.payload)
        assert checksum_ok(message[:3]) and checksum_ok(message[3:])
        netfn, command = message[1] >> 2, message[5]
        commands.append((netfn, command))
        # our reply, opened with ipmitool's keys by hand: the answer to that request
        assert reply is not None, (netfn, command)
        answer = parse(reply, suite.icv_length)
        assert hmac.new(k1, answer.signed, suite.digest).digest()[:suite.icv_length] == \
            answer.authcode
        response = aes_open(aes_key, answer.payload)
        assert response[1] >> 2 == netfn + 1 and response[5] == command
        assert checksum_ok(response[:3]) and checksum_ok(response[3:])
        # ipmitool probes for PICMG/VITA extensions (NetFn 2Ch): "invalid command" is right
        assert response[6] == (0xC1 if netfn == 0x2C else 0x00), (netfn, command, response[6])
    # Set Session Privilege Level, Get Device ID (mc info), Close Session among them
    assert (0x06, 0x3B) in commands and (0x06, 0x01) in commands and (0x06, 0x3C) in commands


def test_our_aes_and_integrity_match_the_primitives() -> None:
    """Our SessionKeys against the same keys used by hand (fixed key, IV from the payload)."""
    capture = CAPTURE["suites"]["17"]["ipmitool"]
    keys = SessionKeys(SUITE_17, bytes.fromhex(capture["sik"]), bytes.fromhex(capture["k1"]),
                       bytes.fromhex(capture["k2"])[:16])
    for size in (0, 1, 14, 15, 16, 31, 100):
        plaintext = bytes(range(size))
        sealed = keys.encrypt(plaintext)
        assert len(sealed) == 16 + (size // 16 + 1) * 16  # IV + whole blocks, pad byte included
        assert aes_open(keys.aes_key, sealed) == plaintext
    data = b"signed span"
    assert keys.sign(data) == hmac.new(keys.k1, data, "sha256").digest()[:16]
