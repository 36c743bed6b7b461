"""The IPMI fuzz target: one BmcEndpoint (the sans-I/O engine), fed datagrams in-process.

Before authentication an attacker's datagrams: raw bytes, mutated real frames (ipmitool's, from
tests/unit/data, and our own clients'), ASF pings, IPMI 1.5 (auth types none, MD5, password),
RMCP+ Open Session / RAKP1 / RAKP3 with every field chosen. After authentication the target
logs in for real (RAKP with cipher suites 3 and 17, IPMI 1.5 MD5 and straight password) and
sends fuzzed requests *inside* valid sessions (encrypted and signed, so that they reach the
command handlers), fuzzed frames of those sessions (bad pad, bad ICV, old sequence numbers),
and fuzzed SOL packets in an activated SOL payload. A fake clock moves on by fuzzed amounts,
so expiry, retransmission and poll() paths run too.

State persists from one input to the next (a real BMC's does); when the fuzzed commands lock
the target out of its own logins (a changed password, a disabled user, a full session table,
SOL disabled) it repairs that through the node's API and counts the repair.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from backends.memory import MemoryBackend
from bench.fuzzing import BytesSource, ErrorLog, FuzzFailure, Source, restore_users
from bmc.console import SolSettings
from bmc.node import Node
from bmc.users import Privilege
from ipmi import wire
from ipmi.crypto import SUITE_3, SUITE_17, CipherSuite, SessionKeys, hmac_digest, md5_authcode
from ipmi.endpoint import BmcEndpoint
from ipmi.sol import SolPacket

LoggedIn = TypeVar("LoggedIn")  # a V20Client or a V15Client

CAPTURE = Path(__file__).resolve().parents[2] / "tests" / "unit" / "data" / \
    "rmcp_ipmitool_capture.json"
ATTACKERS = [("192.0.2.10", 50000), ("192.0.2.11", 623), ("198.51.100.7", 1)]
HARNESS = ("127.0.0.1", 40000)
USERS = {"admin": ("password", Privilege.ADMINISTRATOR, 2),
         "viewer": ("viewpass", Privilege.USER, 3)}
#: an input whose first byte is below this is one raw datagram, the rest a program of operations
RAW_MODE = 0x40
ACTIVATE_SOL = bytes((0x01, 0x01, 0xC0, 0, 0, 0))
#: commands by network function: the fuzzer picks these more often than any byte
KNOWN_NETFNS = (0x00, 0x04, 0x06, 0x0A, 0x0C, 0x2C)


class EchoConsole(MemoryBackend):
    """A server whose serial port echoes what is typed, as a shell with echo on does: SOL
    input makes SOL output (so the outbound half runs too)."""

    def __init__(self) -> None:
        super().__init__(power_on=True)
        self._output: Callable[[bytes], None] | None = None

    def attach_console(self, output: Callable[[bytes], None]) -> bool:
        self._output = output
        return True

    def write_console(self, data: bytes) -> None:
        if self._output is not None:
            self._output(bytes(data[:512]))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def message(netfn: int, cmd: int, data: bytes, rq_seq: int = 1, *, good: bool = True) -> bytes:
    """An IPMI LAN request (section 13.8); `good=False` breaks its second checksum."""
    head = bytes((0x20, (netfn & 0x3F) << 2))
    body = bytes((0x81, (rq_seq & 0x3F) << 2, cmd & 0xFF)) + data
    return head + bytes((wire.checksum(head),)) + body + bytes(
        ((wire.checksum(body) + (0 if good else 1)) & 0xFF,))


def check_message(reply: bytes, what: str) -> None:
    """An IPMI response: both checksums right, a completion code present."""
    if len(reply) < 8 or wire.checksum(reply[:2]) != reply[2] or wire.checksum(
            reply[3:-1]) != reply[-1]:
        raise FuzzFailure(f"{what}: malformed IPMI response {reply.hex()}")


@dataclass
class V20Client:
    """One authenticated RMCP+ session, from the console's side."""

    suite: CipherSuite
    bmc_id: int
    console_id: int
    keys: SessionKeys
    user: str
    seq: int = 0
    rq_seq: int = 0
    sent: list[bytes] = field(default_factory=list)  # recent frames, for replay mutations

    def seal(self, payload_type: int, plaintext: bytes, *, seq: int | None = None,
             ciphertext: bytes | None = None, encrypted: bool = True,
             sign: bool = True) -> bytes:
        if seq is None:
            self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
            seq = self.seq
        payload = ciphertext if ciphertext is not None else (
            self.keys.encrypt(plaintext) if encrypted else plaintext)
        frame = wire.build_v20(payload_type, self.bmc_id, seq, payload, encrypted=encrypted,
                               sign=self.keys.sign if sign else None)
        self.sent = [*self.sent[-7:], frame]
        return frame

    def open(self, reply: bytes) -> tuple[int, bytes]:
        packet = wire.parse_v20(reply, self.suite.icv_length)
        if packet.session_id != self.console_id or not packet.authenticated \
                or not packet.encrypted:
            raise FuzzFailure(f"reply in session {self.bmc_id:#x} not sealed: {reply.hex()}")
        if not self.keys.verify(packet.signed, packet.authcode):
            raise FuzzFailure(f"reply in session {self.bmc_id:#x} has a bad integrity code")
        return packet.payload_type, self.keys.decrypt(packet.payload)


@dataclass
class V15Client:
    authtype: int
    bmc_id: int
    password: bytes
    seq: int
    rq_seq: int = 0

    def authcode(self, msg: bytes, seq: int) -> bytes:
        if self.authtype == wire.AUTHTYPE_PASSWORD:
            return self.password.ljust(16, b"\x00")[:16]
        return md5_authcode(self.password, struct.pack("<I", self.bmc_id), msg,
                            struct.pack("<I", seq))

    def frame(self, msg: bytes, seq: int | None = None) -> bytes:
        if seq is None:
            self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
            seq = self.seq
        return wire.build_v15(self.authtype, seq, self.bmc_id, self.authcode(msg, seq), msg)


class LoginFailed(Exception):
    pass


def seed_frames() -> list[bytes]:
    """Every datagram of ipmitool's captured RMCP+ logins (requests and replies)."""
    try:
        capture = json.loads(CAPTURE.read_text())
    except OSError:
        return []
    return [bytes.fromhex(frame) for suite in capture["suites"].values()
            for pair in suite["packets"] for frame in pair]


class IpmiTarget:
    """The engine of one BMC and the clients that fuzz it."""

    def __init__(self, *, seed: int = 1) -> None:
        import random

        self.rng = random.Random(seed)  # the BMC's session IDs and challenges: reproducible
        self.clock = FakeClock()
        self.node = Node("fuzz-ipmi", EchoConsole())
        for name, (password, privilege, uid) in USERS.items():
            self.node.users.add(name, password, privilege, user_id=uid)
        # our own clients hold up to 6 sessions (suites 17 and 3 as two users, 1.5 MD5 and
        # password); two slots more for the attackers' successful logins
        self.endpoint = BmcEndpoint(self.node, clock=self.clock, password_auth=True,
                                    session_limit=8,
                                    random=self.rng.randbytes,
                                    local_address=("127.0.0.1", 16230))
        self.v20: dict[tuple[int, str], V20Client] = {}  # (suite id, user) -> session
        #: sessions we stopped using (closed, reset): SOL notices may still come for them
        self.retired: list[V20Client] = []
        self.v15: dict[int, V15Client] = {}  # authtype -> session
        self.seeds = seed_frames()
        self.known_commands = sorted(self.endpoint.commands)
        self.recent_ids: list[int] = []  # session IDs the BMC handed out to attackers
        self.stats = {"inputs": 0, "datagrams": 0, "replies": 0, "logins": 0, "repairs": 0,
                      "sol_packets": 0, "max_sessions": 0}
        self.errors = ErrorLog()
        self.ops: list[Callable[[Source], None]] = [
            self.op_raw, self.op_seed, self.op_asf, self.op_v15_sessionless, self.op_v15_forged,
            self.op_open_session, self.op_rakp1, self.op_rakp3, self.op_handshake,
            self.op_v20_sessionless, self.op_authed, self.op_authed, self.op_authed,
            self.op_authed_frame, self.op_v15_authed, self.op_sol, self.op_sol, self.op_tick]
        self.pre_auth = [self.op_raw, self.op_seed, self.op_asf, self.op_v15_sessionless,
                         self.op_v15_forged, self.op_open_session, self.op_rakp1, self.op_rakp3,
                         self.op_handshake, self.op_v20_sessionless]
        self.post_auth = [self.op_authed, self.op_authed_frame, self.op_v15_authed]
        self.sol_ops = [self.op_sol, self.op_sol, self.op_sol, self.op_tick]

    def close(self) -> None:
        self.endpoint.close()
        self.node.close()

    # -- one input ---------------------------------------------------------------------------
    def run_input(self, data: bytes) -> None:
        """One fuzz input: a raw datagram (first byte below RAW_MODE; real frames seed these)
        or a program of operations read from the bytes."""
        if data and data[0] < RAW_MODE:
            self.stats["inputs"] += 1
            self.send(data[1:], HARNESS)
            self.errors.check("IPMI raw datagram")
        else:
            self.run(BytesSource(data))

    def run(self, source: Source, max_ops: int = 6,
            ops: Sequence[Callable[[Source], None]] | None = None) -> None:
        """Run one fuzz input: a few operations chosen by `source` (from `ops`, default all);
        FuzzFailure if an invariant broke."""
        self.stats["inputs"] += 1
        for _ in range(source.integer(1, max_ops)):
            source.choice(ops or self.ops)(source)
        self.stats["max_sessions"] = max(self.stats["max_sessions"],
                                         len(self.endpoint.sessions))
        self.errors.check("IPMI")

    # -- sending and checking ------------------------------------------------------------------
    def send(self, data: bytes, peer: Hashable) -> bytes | None:
        self.clock.now += 0.001
        self.stats["datagrams"] += 1
        reply = self.endpoint.datagram_received(data, peer)
        if reply is not None:
            self.stats["replies"] += 1
            self.check_reply(reply, data)
        return reply

    def check_reply(self, reply: bytes, request: bytes) -> None:
        """A reply parses as RMCP; one sealed for our own session verifies and decrypts."""
        what = f"reply to {request[:64].hex()}"
        if len(reply) < 5 or reply[:3] != b"\x06\x00\xff":
            raise FuzzFailure(f"{what}: not RMCP: {reply.hex()}")
        try:
            if reply[3] == wire.RMCP_CLASS_ASF:
                if len(reply) != 28 or struct.unpack_from(">IB", reply, 4) != (
                        wire.ASF_IANA, wire.ASF_PONG):
                    raise FuzzFailure(f"{what}: bad ASF pong {reply.hex()}")
            elif reply[3] != wire.RMCP_CLASS_IPMI:
                raise FuzzFailure(f"{what}: RMCP class {reply[3]:#x}")
            elif reply[4] == wire.AUTHTYPE_RMCPPLUS:
                self._check_v20(reply, what)
            else:
                check_message(wire.parse_v15(reply).message, what)
        except wire.MalformedPacket as exc:
            raise FuzzFailure(f"{what}: unparseable reply {reply.hex()}: {exc}") from exc

    def _check_v20(self, reply: bytes, what: str) -> None:
        if not reply[5] & 0x40:  # unauthenticated: session setup or a sessionless answer
            packet = wire.parse_v20(reply)
            if packet.payload_type == wire.PAYLOAD_IPMI:
                check_message(packet.payload, what)
            elif packet.payload_type not in (wire.PAYLOAD_OPEN_SESSION_RESPONSE,
                                             wire.PAYLOAD_RAKP2, wire.PAYLOAD_RAKP4):
                raise FuzzFailure(f"{what}: unexpected payload {packet.payload_type:#x}")
            return
        console_id = struct.unpack_from("<I", reply, 6)[0]
        client = next((c for c in [*self.v20.values(), *self.retired]
                       if c.console_id == console_id), None)
        if client is None:
            raise FuzzFailure(f"{what}: a sealed reply to console session {console_id:#x}, "
                              "not one of ours")
        payload_type, plaintext = client.open(reply)
        if payload_type == wire.PAYLOAD_IPMI:
            check_message(plaintext, what)
        elif payload_type == wire.PAYLOAD_SOL:
            if len(plaintext) < 4:
                raise FuzzFailure(f"{what}: short SOL packet {plaintext.hex()}")
        else:
            raise FuzzFailure(f"{what}: sealed payload type {payload_type:#x}")

    def poll(self) -> None:
        for peer, datagram in self.endpoint.poll(self.clock.now):
            if datagram:
                self.check_reply(datagram, b"(poll)")
            if peer is None:
                raise FuzzFailure("poll() output without a peer")

    # -- logins --------------------------------------------------------------------------------
    def repair(self) -> None:
        """Put our users, the SOL settings and the session table back as a login needs them."""
        self.stats["repairs"] += 1
        restore_users(self.node, USERS)
        self.node.console.sol = SolSettings()
        ours = {c.bmc_id for c in self.v20.values()} | {c.bmc_id for c in self.v15.values()}
        for sid, session in list(self.endpoint.sessions.items()):
            if sid not in ours or session.draining:
                self.endpoint.close_session(sid)

    def _alive(self, bmc_id: int) -> bool:
        session = self.endpoint.sessions.get(bmc_id)
        return session is not None and session.stage.value == "active" and not session.draining

    def session(self, suite: CipherSuite, user: str = "admin") -> V20Client:
        """Our authenticated RMCP+ session (a new login if the last one is gone)."""
        client = self.v20.get((suite.suite_id, user))
        if client is not None and self._alive(client.bmc_id):
            return client
        if client is not None:
            self.retired = [*self.retired[-31:], client]
        self.v20.pop((suite.suite_id, user), None)
        client = self._login_repairing(lambda: self.login_v20(suite, user))
        self.v20[(suite.suite_id, user)] = client
        return client

    def _login_repairing(self, login: Callable[[], LoggedIn]) -> LoggedIn:
        """`login()`; if fuzzed commands locked us out, repair the node and try once more."""
        try:
            return login()
        except LoginFailed:
            self.repair()
        try:
            return login()
        except LoginFailed as exc:
            raise FuzzFailure(f"our own login fails after a repair: {exc}") from exc

    def login_v20(self, suite: CipherSuite, user: str) -> V20Client:
        """The RAKP handshake (IPMI 2.0 section 13.20), then Set Session Privilege."""
        password, privilege, _ = USERS[user]
        role = int(privilege)
        console_id = self.rng.randrange(1, 1 << 32)
        algorithms = bytes((0, 0, 0, 8, suite.auth, 0, 0, 0, 1, 0, 0, 8, suite.integrity, 0, 0,
                            0, 2, 0, 0, 8, suite.confidentiality, 0, 0, 0))
        reply = self.send(wire.build_v20(wire.PAYLOAD_OPEN_SESSION_REQUEST, 0, 0, struct.pack(
            "<BBxxI", 1, role, console_id) + algorithms), HARNESS)
        body = wire.parse_v20(reply).payload if reply else b""
        if len(body) < 12 or body[1] != 0:
            raise LoginFailed(f"open session: {body.hex()}")
        bmc_id = struct.unpack_from("<I", body, 8)[0]
        console_random, name = self.rng.randbytes(16), user.encode()
        reply = self.send(wire.build_v20(wire.PAYLOAD_RAKP1, 0, 0, struct.pack(
            "<BxxxI", 2, bmc_id) + console_random + bytes((role, 0, 0, len(name))) + name),
            HARNESS)
        rakp2 = wire.parse_v20(reply).payload if reply else b""
        if len(rakp2) < 40 or rakp2[1] != 0:
            raise LoginFailed(f"rakp2: {rakp2.hex()}")
        bmc_random, guid, key = rakp2[8:24], rakp2[24:40], password.encode()
        expected = hmac_digest(suite, key, struct.pack("<II", console_id, bmc_id)
                               + console_random + bmc_random + guid
                               + bytes((role, len(name))) + name)
        if rakp2[40:] != expected:
            raise FuzzFailure("RAKP2 does not prove the BMC knows the password")
        authcode = hmac_digest(suite, key, bmc_random + struct.pack("<I", console_id)
                               + bytes((role, len(name))) + name)
        reply = self.send(wire.build_v20(wire.PAYLOAD_RAKP3, 0, 0, struct.pack(
            "<BBxxI", 3, 0, bmc_id) + authcode), HARNESS)
        rakp4 = wire.parse_v20(reply).payload if reply else b""
        if len(rakp4) < 8 or rakp4[1] != 0:
            raise LoginFailed(f"rakp4: {rakp4.hex()}")
        keys = SessionKeys.derive(suite, key, console_random + bmc_random
                                  + bytes((role, len(name))) + name)
        client = V20Client(suite, bmc_id, console_id, keys, user)
        self.v20[(suite.suite_id, user)] = client  # so that check_reply knows its keys
        self.stats["logins"] += 1
        answer = self.command(client, 0x06, 0x3B, bytes((role,)))
        if answer is None or answer[0] != 0:
            del self.v20[(suite.suite_id, user)]
            raise LoginFailed(f"set session privilege: {answer}")
        return client

    def command(self, client: V20Client, netfn: int, cmd: int,
                data: bytes = b"") -> tuple[int, bytes] | None:
        """(completion code, data) of one request in `client`'s session."""
        client.rq_seq = (client.rq_seq + 1) % 64
        reply = self.send(client.seal(wire.PAYLOAD_IPMI, message(netfn, cmd, data,
                                                                 client.rq_seq)), HARNESS)
        if reply is None:
            return None
        payload_type, plaintext = client.open(reply)
        if payload_type != wire.PAYLOAD_IPMI or plaintext[5] != cmd:
            raise FuzzFailure(f"answer to {netfn:#x}/{cmd:#x} is {plaintext.hex()}")
        return plaintext[6], plaintext[7:-1]

    def session_v15(self, authtype: int) -> V15Client:
        client = self.v15.get(authtype)
        if client is not None and self._alive(client.bmc_id):
            return client
        self.v15.pop(authtype, None)
        client = self._login_repairing(lambda: self.login_v15(authtype))
        self.v15[authtype] = client
        return client

    def login_v15(self, authtype: int) -> V15Client:
        """Get Session Challenge, then Activate Session (IPMI 1.5, section 22.16-22.17)."""
        password = USERS["admin"][0].encode()
        challenge = message(0x06, 0x39, bytes((authtype,)) + b"admin".ljust(16, b"\x00"))
        reply = self.send(wire.build_v15(wire.AUTHTYPE_NONE, 0, 0, b"", challenge), HARNESS)
        msg = wire.parse_v15(reply).message if reply else b""
        if len(msg) < 28 or msg[6] != 0:
            raise LoginFailed(f"challenge: {msg.hex()}")
        bmc_id, token = struct.unpack_from("<I", msg, 7)[0], msg[11:27]
        client = V15Client(authtype, bmc_id, password, 0)
        activate = message(0x06, 0x3A, bytes((authtype, 4)) + token + struct.pack("<I", 1))
        reply = self.send(client.frame(activate, seq=0), HARNESS)
        msg = wire.parse_v15(reply).message if reply else b""
        if len(msg) < 17 or msg[6] != 0:
            raise LoginFailed(f"activate: {msg.hex()}")
        client.seq = struct.unpack_from("<I", msg, 12)[0] - 1
        self.stats["logins"] += 1
        return client

    # -- operations: before authentication ---------------------------------------------------
    def attacker(self, source: Source) -> tuple[str, int]:
        return source.choice(ATTACKERS)

    def op_raw(self, source: Source) -> None:
        self.send(source.blob(300), self.attacker(source))

    def op_seed(self, source: Source) -> None:
        """A real frame (ipmitool's, or one of our sessions'), mutated, from anyone."""
        pool = self.seeds + [f for c in self.v20.values() for f in c.sent]
        if not pool:
            return
        frame = bytearray(source.choice(pool))
        for _ in range(source.integer(0, 4)):
            kind, at = source.integer(0, 4), source.integer(0, max(len(frame) - 1, 0))
            if kind == 0 and frame:
                frame[at] = source.integer(0, 255)
            elif kind == 1 and frame:
                frame[at] ^= 1 << source.integer(0, 7)
            elif kind == 2:
                del frame[at:]
            elif kind == 3:
                frame[at:at] = source.blob(40)
            elif kind == 4 and len(frame) > 16:
                struct.pack_into("<H", frame, 14, source.integer(0, 0xFFFF))  # a length field
        self.send(bytes(frame), source.choice([HARNESS, *ATTACKERS]))

    def op_asf(self, source: Source) -> None:
        iana = source.choice([wire.ASF_IANA, source.integer(0, 0xFFFFFFFF)])
        msg_type = source.choice([wire.ASF_PING, source.integer(0, 255)])
        body = struct.pack(">IBBBB", iana, msg_type, source.integer(0, 255), 0,
                           source.integer(0, 255)) + source.blob(16)
        head = bytes((6, 0, source.choice([0xFF, source.integer(0, 255)]),
                      source.choice([wire.RMCP_CLASS_ASF, source.integer(0, 255)])))
        self.send(head + body[:source.integer(0, len(body))], self.attacker(source))

    def fuzzed_message(self, source: Source) -> bytes:
        """An IPMI request: mostly a known command, with fuzzed data and checksums."""
        if source.integer(0, 9) == 0:
            return source.blob(64)
        if source.integer(0, 4):
            netfn, cmd = source.choice(self.known_commands)
        else:
            netfn = source.choice([*KNOWN_NETFNS, source.integer(0, 63)])
            cmd = source.integer(0, 255)
        return message(netfn, cmd, source.blob(48), source.integer(0, 63),
                       good=source.integer(0, 15) != 0)

    def op_v15_sessionless(self, source: Source) -> None:
        authtype = source.choice([wire.AUTHTYPE_NONE, wire.AUTHTYPE_MD5, wire.AUTHTYPE_PASSWORD,
                                  source.integer(0, 255)])
        msg = self.fuzzed_message(source)
        if source.integer(0, 3) == 0:  # a login attempt with a fuzzed name
            msg = message(0x06, 0x39, bytes((source.choice([2, 4, 1, 0]),))
                          + source.choice([b"admin", b"viewer", source.blob(20)]).ljust(16, b"\0"))
        authcode = b"" if authtype == wire.AUTHTYPE_NONE else source.blob(16).ljust(16, b"\0")
        self.send(wire.build_v15(authtype, source.integer(0, 3), 0, authcode, msg),
                  self.attacker(source))

    def op_v15_forged(self, source: Source) -> None:
        """A frame naming a live session, without its password."""
        ids = list(self.endpoint.sessions) or [source.integer(0, 0xFFFFFFFF)]
        authtype = source.choice([wire.AUTHTYPE_MD5, wire.AUTHTYPE_PASSWORD,
                                  source.integer(0, 255)])
        self.send(wire.build_v15(authtype, source.integer(0, 0xFFFFFFFF), source.choice(ids),
                                 source.blob(16).ljust(16, b"\0"), self.fuzzed_message(source)),
                  source.choice([HARNESS, *ATTACKERS]))

    def open_request(self, source: Source) -> bytes:
        suite = source.choice([SUITE_17, SUITE_3, None])
        auth, integrity, conf = ((suite.auth, suite.integrity, suite.confidentiality) if suite
                                 else (source.integer(0, 255), source.integer(0, 255),
                                       source.integer(0, 255)))
        markers = source.choice([(0, 1, 2), (source.integer(0, 3), source.integer(0, 3),
                                             source.integer(0, 3))])
        payload = struct.pack("<BBxxI", source.integer(0, 255),
                              source.choice([0, 2, 3, 4, source.integer(0, 255)]),
                              source.integer(0, 0xFFFFFFFF)) + bytes(
            (markers[0], 0, 0, 8, auth, 0, 0, 0, markers[1], 0, 0, 8, integrity, 0, 0, 0,
             markers[2], 0, 0, 8, conf, 0, 0, 0))
        return payload[:source.choice([32, 32, 32, source.integer(0, 40)])]

    def _remember(self, reply: bytes | None) -> None:
        if reply is not None and len(reply) >= 28 and reply[5] == \
                wire.PAYLOAD_OPEN_SESSION_RESPONSE:
            self.recent_ids = [*self.recent_ids[-7:], struct.unpack_from("<I", reply, 24)[0]]

    def op_open_session(self, source: Source) -> None:
        self._remember(self.send(wire.build_v20(wire.PAYLOAD_OPEN_SESSION_REQUEST, 0, 0,
                                                self.open_request(source)),
                                 self.attacker(source)))

    def _session_id(self, source: Source) -> int:
        return source.choice([*self.recent_ids, *self.endpoint.sessions,
                              source.integer(0, 0xFFFFFFFF)])

    def op_rakp1(self, source: Source) -> None:
        name = source.choice([b"admin", b"viewer", b"", b"root", source.blob(20)])
        payload = struct.pack("<BxxxI", source.integer(0, 255), self._session_id(source)) + \
            source.blob(16).ljust(16, b"\0") + bytes((
                source.choice([4, 2, 0x14, source.integer(0, 255)]), 0, 0,
                source.choice([len(name), source.integer(0, 255)]))) + name
        self.send(wire.build_v20(wire.PAYLOAD_RAKP1, 0, 0, payload[:source.integer(0, 60)]),
                  self.attacker(source))

    def op_rakp3(self, source: Source) -> None:
        payload = struct.pack("<BBxxI", source.integer(0, 255),
                              source.choice([0, 0, 0x02, 0x0F, source.integer(0, 255)]),
                              self._session_id(source)) + source.blob(40)
        self.send(wire.build_v20(wire.PAYLOAD_RAKP3, 0, 0, payload), self.attacker(source))

    def op_handshake(self, source: Source) -> None:
        """A whole RMCP+ login from an attacker, one step of it fuzzed (or none: a success)."""
        peer = self.attacker(source)
        suite = source.choice([SUITE_17, SUITE_3])
        user = source.choice(["admin", "viewer"])
        password = source.choice([USERS[user][0], USERS[user][0], "wrong", ""]).encode()
        role = source.choice([int(USERS[user][1]), 4, 2, 0x14, source.integer(0, 255)])
        console_id = source.integer(0, 0xFFFFFFFF)
        algorithms = bytes((0, 0, 0, 8, suite.auth, 0, 0, 0, 1, 0, 0, 8, suite.integrity, 0, 0,
                            0, 2, 0, 0, 8, suite.confidentiality, 0, 0, 0))
        reply = self.send(wire.build_v20(wire.PAYLOAD_OPEN_SESSION_REQUEST, 0, 0, struct.pack(
            "<BBxxI", 1, role & 0x0F, console_id) + algorithms), peer)
        self._remember(reply)
        if not self.recent_ids or reply is None or reply[17] != 0:
            return
        bmc_id, name, console_random = self.recent_ids[-1], user.encode(), source.blob(16)
        reply = self.send(wire.build_v20(wire.PAYLOAD_RAKP1, 0, 0, struct.pack(
            "<BxxxI", 2, bmc_id) + console_random.ljust(16, b"\0") + bytes(
            (role, 0, 0, len(name))) + name), peer)
        if reply is None or len(reply) < 64 or reply[17] != 0:
            return
        bmc_random = reply[24:40]
        authcode = hmac_digest(suite, password, bmc_random + struct.pack("<I", console_id)
                               + bytes((role, len(name))) + name)
        if source.boolean():
            authcode = authcode[:source.integer(0, len(authcode))]
        self.send(wire.build_v20(wire.PAYLOAD_RAKP3, 0, 0, struct.pack(
            "<BBxxI", 3, source.choice([0, 0, 0, 0x0F]), bmc_id) + authcode), peer)

    def op_v20_sessionless(self, source: Source) -> None:
        ptype = source.choice([wire.PAYLOAD_IPMI, wire.PAYLOAD_SOL, 0x02, source.integer(0, 255)])
        self.send(wire.build_v20(ptype & 0x3F, 0, source.integer(0, 3),
                                 self.fuzzed_message(source)), self.attacker(source))

    # -- operations: after authentication ------------------------------------------------------
    def _client(self, source: Source) -> V20Client:
        suite = source.choice([SUITE_17, SUITE_3])
        return self.session(suite, source.choice(["admin", "admin", "viewer"]))

    def op_authed(self, source: Source) -> None:
        """A fuzzed request inside a valid, encrypted and signed session."""
        client = self._client(source)
        self.send(client.seal(wire.PAYLOAD_IPMI, self.fuzzed_message(source)), HARNESS)

    def op_authed_frame(self, source: Source) -> None:
        """A frame of a valid session, one thing about it wrong."""
        client = self._client(source)
        plaintext = self.fuzzed_message(source)
        kind = source.integer(0, 7)
        if kind == 0:  # an old, repeated, zero or far sequence number
            seq = source.choice([0, client.seq, client.seq - source.integer(1, 40),
                                 client.seq + source.integer(17, 1000), 0xFFFFFFFF])
            frame = client.seal(wire.PAYLOAD_IPMI, plaintext, seq=seq & 0xFFFFFFFF)
        elif kind == 1:  # ciphertext of a wrong length, or garbage
            frame = client.seal(wire.PAYLOAD_IPMI, b"", ciphertext=source.blob(80))
        elif kind == 2:  # a wrong confidentiality pad
            frame = client.seal(wire.PAYLOAD_IPMI, b"", ciphertext=self._bad_pad(client, source))
        elif kind == 3:  # not encrypted, but signed
            frame = client.seal(wire.PAYLOAD_IPMI, plaintext, encrypted=False)
        elif kind == 4:  # not signed
            frame = client.seal(wire.PAYLOAD_IPMI, plaintext, sign=False)
        elif kind == 5:  # a bad integrity code
            frame = bytearray(client.seal(wire.PAYLOAD_IPMI, plaintext))
            frame[-1 - source.integer(0, client.suite.icv_length - 1)] ^= 0xFF
            frame = bytes(frame)
        elif kind == 6:  # another payload type
            frame = client.seal(source.choice([0x02, 0x10, 0x12, 0x14, source.integer(0, 63)]),
                                plaintext)
        else:  # a retransmission of one of our recent frames
            frame = source.choice(client.sent) if client.sent else client.seal(0, plaintext)
        self.send(frame, source.choice([HARNESS, HARNESS, *ATTACKERS]))

    @staticmethod
    def _bad_pad(client: V20Client, source: Source) -> bytes:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        block = source.blob(47)
        block += bytes(-len(block) % 16 or 16)
        block = block[:-1] + bytes((source.integer(0, 255),))
        iv = bytes(16)
        encryptor = Cipher(algorithms.AES(client.keys.aes_key), modes.CBC(iv)).encryptor()
        return iv + encryptor.update(block) + encryptor.finalize()

    def op_v15_authed(self, source: Source) -> None:
        client = self.session_v15(source.choice([wire.AUTHTYPE_MD5, wire.AUTHTYPE_PASSWORD]))
        seq = None if source.integer(0, 3) else source.integer(0, 0xFFFFFFFF)
        self.send(client.frame(self.fuzzed_message(source), seq), HARNESS)

    def op_sol(self, source: Source) -> None:
        """A fuzzed SOL packet in the session that holds the SOL payload (activating it)."""
        client = self.session(source.choice([SUITE_17, SUITE_3]), "admin")
        payload = self.endpoint.sol.active_payload()
        if payload is None or payload.session.bmc_id != client.bmc_id:
            if payload is not None:
                self.command(client, 0x06, 0x49, ACTIVATE_SOL)  # take it over
            answer = self.command(client, 0x06, 0x48, ACTIVATE_SOL)
            if answer is None or answer[0] not in (0, 0x80):
                self.repair()  # fuzzed SOL configuration disabled it
                return
        seq = source.choice([source.integer(0, 15), source.integer(0, 255)])
        packet = bytes((seq, source.integer(0, 255), source.integer(0, 255),
                        source.choice([0, 0, 0x40, 0x08, 0x01, 0x02, 0x10,
                                       source.integer(0, 255)]))) + source.blob(300)
        self.stats["sol_packets"] += 1
        reply = self.send(client.seal(wire.PAYLOAD_SOL, packet[:source.choice(
            [len(packet), source.integer(0, len(packet))])]), HARNESS)
        if reply is not None:
            payload_type, ack = client.open(reply)
            if payload_type != wire.PAYLOAD_SOL or SolPacket.parse(ack) is None:
                raise FuzzFailure(f"SOL answer {ack.hex()}")
        if source.boolean():
            self.poll()

    def op_tick(self, source: Source) -> None:
        self.clock.now += source.choice([0.001, 0.006, 0.05, 0.3, 1.1, 3.5, 11.0, 61.0])
        self.endpoint.expire_sessions()
        self.poll()

    # -- afterwards ----------------------------------------------------------------------------
    def still_works(self) -> None:
        """A fresh login, a command and a SOL round trip still succeed."""
        self.retired += self.v20.values()
        self.v20.clear()
        self.repair()
        client = self.session(SUITE_17, "admin")
        if self.command(client, 0x06, 0x01) is None:
            raise FuzzFailure("Get Device ID unanswered after the run")
        code, _ = self.command(client, 0x00, 0x01) or (None, b"")
        if code != 0:
            raise FuzzFailure(f"Get Chassis Status failed after the run: {code}")
        self.session_v15(wire.AUTHTYPE_MD5)
        self.errors.check("IPMI after the run")
