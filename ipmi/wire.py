"""Framing of RMCP, IPMI 1.5 and IPMI 2.0 (RMCP+) packets and IPMI LAN messages. No I/O.

References: IPMI 2.0 rev 1.1, section 13 (LAN), tables 13-4 (session header 1.5),
13-8 (RMCP+ session header), 13-9 (payload types) and section 13.8 (LAN message format).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from uuid import UUID

RMCP_VERSION = 0x06
RMCP_NO_ACK = 0xFF
RMCP_CLASS_ASF = 0x06
RMCP_CLASS_IPMI = 0x07
ASF_IANA = 0x000011BE
ASF_PING = 0x80
ASF_PONG = 0x40

AUTHTYPE_NONE = 0x00
AUTHTYPE_MD2 = 0x01
AUTHTYPE_MD5 = 0x02
AUTHTYPE_PASSWORD = 0x04
AUTHTYPE_RMCPPLUS = 0x06

PAYLOAD_IPMI = 0x00
PAYLOAD_SOL = 0x01
PAYLOAD_OPEN_SESSION_REQUEST = 0x10
PAYLOAD_OPEN_SESSION_RESPONSE = 0x11
PAYLOAD_RAKP1 = 0x12
PAYLOAD_RAKP2 = 0x13
PAYLOAD_RAKP3 = 0x14
PAYLOAD_RAKP4 = 0x15

BMC_SLAVE_ADDRESS = 0x20


class MalformedPacket(ValueError):
    """A datagram that cannot be parsed; the endpoint drops it."""


def guid_bytes(uuid: str) -> bytes:
    """A UUID as IPMI sends a GUID: all 16 bytes least significant first (section 20.8)."""
    return UUID(uuid).bytes[::-1]


def checksum(data: bytes) -> int:
    """IPMI 2's-complement checksum: the byte that makes `data` sum to 0 mod 256."""
    return -sum(data) & 0xFF


def rmcp_header(msg_class: int) -> bytes:
    return bytes((RMCP_VERSION, 0, RMCP_NO_ACK, msg_class))


def asf_pong(tag: int) -> bytes:
    """Answer to an ASF presence ping: 'IPMI supported' (section 13.2.3)."""
    body = struct.pack(">IIBB6x", ASF_IANA, 0, 0x81, 0x00)
    return rmcp_header(RMCP_CLASS_ASF) + struct.pack(">IBBBB", ASF_IANA, ASF_PONG, tag, 0,
                                                     len(body)) + body


def parse_asf_ping(data: bytes) -> int | None:
    """The message tag of an ASF presence ping, or None if `data` is some other ASF message."""
    if len(data) < 12:
        raise MalformedPacket("short ASF message")
    iana, msg_type, tag = struct.unpack_from(">IBB", data, 4)
    if iana != ASF_IANA or msg_type != ASF_PING:
        return None
    return tag


# --- IPMI 1.5 session wrapper ---------------------------------------------------------------
@dataclass
class V15Packet:
    authtype: int
    sequence: int
    session_id: int
    authcode: bytes  # 16 bytes, or b"" for auth type NONE
    message: bytes


def parse_v15(data: bytes) -> V15Packet:
    if len(data) < 14:
        raise MalformedPacket("short IPMI 1.5 packet")
    authtype, seq, sid = struct.unpack_from("<BII", data, 4)
    offset = 13
    authcode = b""
    if authtype != AUTHTYPE_NONE:
        authcode = data[offset:offset + 16]
        offset += 16
    if len(data) < offset + 1:
        raise MalformedPacket("short IPMI 1.5 packet")
    length = data[offset]
    message = data[offset + 1:offset + 1 + length]
    if len(message) != length:
        raise MalformedPacket("IPMI 1.5 message length mismatch")
    return V15Packet(authtype, seq, sid, authcode, message)


def build_v15(authtype: int, sequence: int, session_id: int, authcode: bytes,
              message: bytes) -> bytes:
    header = rmcp_header(RMCP_CLASS_IPMI) + struct.pack("<BII", authtype, sequence, session_id)
    if authtype != AUTHTYPE_NONE:
        header += authcode
    # a legacy pad byte follows some message lengths on the wire; clients ignore it
    return header + bytes((len(message),)) + message


# --- IPMI 2.0 / RMCP+ session wrapper --------------------------------------------------------
@dataclass
class V20Packet:
    payload_type: int
    encrypted: bool
    authenticated: bool
    session_id: int
    sequence: int
    payload: bytes
    #: bytes from the auth type byte through the Next Header byte: what the integrity
    #: code covers (empty when unauthenticated)
    signed: bytes = b""
    authcode: bytes = b""


def parse_v20(data: bytes, authcode_length: int = 0) -> V20Packet:
    """Parse an RMCP+ packet; `authcode_length` is the integrity code size of its session."""
    if len(data) < 16:
        raise MalformedPacket("short RMCP+ packet")
    ptype = data[5]
    payload_type = ptype & 0x3F
    offset = 6
    if payload_type == 0x02:  # OEM explicit: IANA + OEM payload id
        offset += 6
    if len(data) < offset + 10:
        raise MalformedPacket("short RMCP+ packet")
    sid, seq, length = struct.unpack_from("<IIH", data, offset)
    offset += 10
    payload = data[offset:offset + length]
    if len(payload) != length:
        raise MalformedPacket("RMCP+ payload length mismatch")
    authenticated = bool(ptype & 0x40)
    packet = V20Packet(payload_type, bool(ptype & 0x80), authenticated, sid, seq, payload)
    if authenticated:
        if authcode_length <= 0 or len(data) < offset + length + 2 + authcode_length:
            raise MalformedPacket("RMCP+ integrity trailer missing")
        packet.signed = data[4:len(data) - authcode_length]
        packet.authcode = data[len(data) - authcode_length:]
    return packet


def build_v20(payload_type: int, session_id: int, sequence: int, payload: bytes, *,
              encrypted: bool = False, sign: object = None) -> bytes:
    """Build an RMCP+ packet. `sign`, if given, maps the signed bytes to the integrity code."""
    ptype = payload_type | (0x80 if encrypted else 0) | (0x40 if sign else 0)
    body = struct.pack("<BBIIH", AUTHTYPE_RMCPPLUS, ptype, session_id, sequence,
                       len(payload)) + payload
    if sign:
        # integrity pad: the signed part (from auth type through next header) is 4-byte aligned
        pad = -(len(body) + 2) % 4
        body += b"\xff" * pad + bytes((pad, 0x07))
        body += sign(body)  # type: ignore[operator]
    return rmcp_header(RMCP_CLASS_IPMI) + body


# --- IPMI LAN messages (section 13.8) --------------------------------------------------------
@dataclass
class Request:
    netfn: int
    command: int
    data: bytes
    rq_addr: int = 0x81
    rq_seq: int = 0
    rq_lun: int = 0
    rs_lun: int = 0


def parse_request(message: bytes) -> Request:
    if len(message) < 7:
        raise MalformedPacket("short IPMI message")
    if checksum(message[:2]) != message[2] or checksum(message[3:-1]) != message[-1]:
        raise MalformedPacket("bad IPMI message checksum")
    return Request(netfn=message[1] >> 2, command=message[5], data=bytes(message[6:-1]),
                   rq_addr=message[3], rq_seq=message[4] >> 2, rq_lun=message[4] & 3,
                   rs_lun=message[1] & 3)


def build_response(request: Request, completion_code: int, data: bytes = b"") -> bytes:
    head = bytes((request.rq_addr, ((request.netfn | 1) << 2) | request.rq_lun))
    body = bytes((BMC_SLAVE_ADDRESS, (request.rq_seq << 2) | request.rs_lun, request.command,
                  completion_code)) + data
    return head + bytes((checksum(head),)) + body + bytes((checksum(body),))
