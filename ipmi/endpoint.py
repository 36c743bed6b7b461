"""The sans-I/O IPMI LAN engine of one BMC: datagram bytes in, reply bytes out.

No sockets here (in the style of h11): `IpmiServer` feeds datagrams in and sends what comes
back, and unit tests can drive the engine with plain bytes. The engine owns the sessions
(RMCP+ with RAKP, and IPMI 1.5), checks integrity, decrypts, enforces privilege, and dispatches
IPMI requests to the handlers in `ipmi.commands`.
"""

from __future__ import annotations

import hmac
import logging
import os
import struct
import time
from collections.abc import Callable, Hashable

from bmc.node import Node
from bmc.users import Privilege
from ipmi import wire
from ipmi.commands import (
    CC_INSUFFICIENT_PRIVILEGE,
    CC_INVALID_COMMAND,
    CC_UNSPECIFIED,
    NETFN_APP,
    Command,
    Context,
    IpmiError,
    load_all,
    load_core,
    lookup,
)
from ipmi.controller import ControllerState
from ipmi.crypto import SessionKeys, find_suite, hmac_digest, md5_authcode
from ipmi.session import Session, Stage
from ipmi.sol import SolService

log = logging.getLogger(__name__)

# RMCP+ status codes (table 13-15)
RMCP_OK = 0x00
RMCP_NO_RESOURCES = 0x01
RMCP_INVALID_SESSION_ID = 0x02
RMCP_INVALID_ROLE = 0x09
RMCP_UNAUTHORIZED_NAME = 0x0D
RMCP_INVALID_ICV = 0x0F
RMCP_NO_CIPHER_SUITE_MATCH = 0x11
RMCP_ILLEGAL_PARAMETER = 0x12
RMCP_INVALID_NAME_LENGTH = 0x0C

#: a session still being set up is dropped after this many seconds without progress
#: Activate Session's "invalid session ID in request", what a wrong 1.5 password gets
CC_INVALID_SESSION_ID_V15 = 0x85
PENDING_TIMEOUT = 10.0  # a session a BMC reset is dropping lives on this long
#: Half-open sessions (Open Session or Get Session Challenge answered, authentication not
#: finished) cost an attacker one datagram each and prove nothing: they never take a session
#: slot, live only as long as a real client's handshake takes (milliseconds) with room for
#: retransmissions, and are bounded per node and per source address; a new one evicts the
#: oldest, so a flood can never refuse a client that goes on to authenticate.
HALF_OPEN_TIMEOUT = 3.0
HALF_OPEN_LIMIT = 32
HALF_OPEN_PER_SOURCE = 4
CLOSE_SESSION = (NETFN_APP, 0x3C)


def _source(peer: Hashable) -> str:
    """The client's address: what a lockout holds off (not its port, which it can change)."""
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


class _AuthFailureLog:
    """Failed logins, logged at most once per interval with a count of the rest: a password
    guesser must not be able to fill the log."""

    INTERVAL = 10.0

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.next_line = 0.0
        self.suppressed = 0

    def failed(self, node: str, user: str, peer: Hashable, why: str) -> None:
        now = self.clock()
        if now < self.next_line:
            self.suppressed += 1
            return
        more = f" ({self.suppressed} more failures not logged)" if self.suppressed else ""
        log.info("%s: IPMI login of %r from %s failed: %s%s", node, user, _source(peer), why,
                 more)
        self.next_line, self.suppressed = now + self.INTERVAL, 0


class BmcEndpoint:
    """One BMC's IPMI LAN service. Not thread-safe: one I/O loop drives it."""

    def __init__(self, node: Node, *, session_limit: int = 4, idle_timeout: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 random: Callable[[int], bytes] = os.urandom, kg: bytes | None = None,
                 local_address: tuple[str, int] | None = None,
                 sol_port: int | None = None, password_auth: bool = False) -> None:
        self.node = node
        self.local_address = local_address  # where the server bound us (LAN parameters)
        #: the port SOL announces: where clients reach us through a relay or NAT (ipmitool
        #: refuses a SOL port other than the one it dialed); None = local_address's
        self.sol_port = sol_port
        #: IPMI 1.5 authentication types enabled: MD5 always; "straight password" (the
        #: password in clear on the wire) only when configured
        self.v15_authtypes = ((wire.AUTHTYPE_MD5, wire.AUTHTYPE_PASSWORD) if password_auth
                              else (wire.AUTHTYPE_MD5,))
        self.session_limit = session_limit
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.random = random
        self.kg = kg  # BMC key; None = use the user's password (the common setup)
        load_core()  # the rest on first use (`lookup`)
        self.sessions: dict[int, Session] = {}
        #: IPMI-only boot option parameters (set-in-progress, valid-bit clearing, ack)
        self.boot_params: dict[int, bytes] = {}
        self.guid = wire.guid_bytes(node.uuid)
        #: watchdog, global enables: what a Cold Reset sets back
        self.controller = ControllerState(clock)
        self._reset_pending: bool | None = None  # a BMC reset to do once the reply is built
        #: Serial over LAN. Console output arrives on another thread: the SOL payload then calls
        #: `wakeup` (the server sets it) and the server collects the packets with poll()
        self.wakeup: Callable[[], None] = lambda: None
        self.sol = SolService(node.console, alive=self._session_alive,
                              close_session=self.close_session, wakeup=lambda: self.wakeup())
        self.sol_set_in_progress = 0  # SOL configuration parameter 0
        self._auth_log = _AuthFailureLog(clock)

    @property
    def commands(self) -> dict[tuple[int, int], Command]:
        """Every handler by (netfn, command); importing them all (dispatch uses `lookup`)."""
        return load_all()

    # -- entry point ------------------------------------------------------------------------
    def datagram_received(self, data: bytes, peer: Hashable) -> bytes | None:
        """The reply to one datagram, or None to stay silent. Never raises."""
        try:
            return self._receive(data, peer)
        except wire.MalformedPacket as exc:
            log.debug("dropped malformed packet from %s: %s", peer, exc)
        except Exception:  # a bug must cost one packet, never the server
            log.exception("error handling packet from %s", peer)
        finally:
            if self._reset_pending is not None:  # the reply is built (and signed): reset now
                self._reset(cold=self._reset_pending)
        return None

    def request_reset(self, *, cold: bool) -> None:
        """BMC Cold/Warm Reset: drop every session once the current reply has been built."""
        self._reset_pending = cold

    def _reset(self, *, cold: bool) -> None:
        log.info("%s: BMC %s reset: %d sessions dropped", self.node.name,
                 "cold" if cold else "warm", len(self.sessions))
        self._reset_pending = None
        now = self.clock()
        for sid, session in list(self.sessions.items()):
            if session.stage is Stage.ACTIVE:
                session.draining, session.last_activity = True, now
            else:
                del self.sessions[sid]
        if cold:
            self.controller = ControllerState(self.clock)

    def _receive(self, data: bytes, peer: Hashable) -> bytes | None:
        if len(data) < 5 or data[0] != wire.RMCP_VERSION:
            raise wire.MalformedPacket("not RMCP")
        if data[3] == wire.RMCP_CLASS_ASF:
            tag = wire.parse_asf_ping(data)
            return None if tag is None else wire.asf_pong(tag)
        if data[3] & 0x1F != wire.RMCP_CLASS_IPMI:
            raise wire.MalformedPacket("unknown RMCP class")
        self.expire_sessions()
        if data[4] == wire.AUTHTYPE_RMCPPLUS:
            return self._receive_v20(data, peer)
        return self._receive_v15(data, peer)

    def expire_sessions(self) -> None:
        """Forget sessions idle too long, so a vanished client frees its slot."""
        now = self.clock()
        for sid, session in list(self.sessions.items()):
            if session.stage is not Stage.ACTIVE:
                limit = HALF_OPEN_TIMEOUT
            elif session.draining:
                limit = PENDING_TIMEOUT
            else:
                limit = self.idle_timeout
            if now - session.last_activity > limit:
                if session.stage is Stage.ACTIVE:
                    del self.sessions[sid]
                else:
                    self._drop_half_open(session)
        self.controller.watchdog.poll(self.node)

    def _credentials_changed(self, session: Session) -> bool:
        """The session's user changed its password since it logged in: the session ends, as
        its Redfish sessions do (whoever knew the old password is out)."""
        if session.user is None or session.user.credentials_epoch == session.credentials_epoch:
            return False
        self.sessions.pop(session.bmc_id, None)  # its SOL payload ends with it (_session_alive)
        log.info("%s: IPMI session %#x of %r ended: its password changed", self.node.name,
                 session.bmc_id, session.user.name)
        return True

    def _drop_half_open(self, session: Session) -> None:
        """Forget a half-open session. One that got our RAKP2 and never sent RAKP3 is a
        client that found our RAKP2 wrong, i.e. a wrong password (ipmitool says nothing,
        it just stops): a failed login."""
        self.sessions.pop(session.bmc_id, None)
        if session.stage is Stage.RAKP and session.user is not None:
            self.login_failed(session.user.name, session.peer)

    def admit_half_open(self, peer: Hashable) -> None:
        """Make room for one more half-open session from `peer`: evict the oldest of its
        source beyond the per-source bound, and the oldest of all beyond the node's bound."""
        source = peer[0] if isinstance(peer, tuple) else peer
        half_open = sorted((s for s in self.sessions.values() if s.stage is not Stage.ACTIVE),
                           key=lambda s: s.last_activity)
        mine = [s for s in half_open
                if (s.peer[0] if isinstance(s.peer, tuple) else s.peer) == source]
        for session in mine[:max(0, len(mine) - HALF_OPEN_PER_SOURCE + 1)]:
            self._drop_half_open(session)
            half_open.remove(session)
        for session in half_open[:max(0, len(half_open) - HALF_OPEN_LIMIT + 1)]:
            self._drop_half_open(session)

    def slots_full(self) -> bool:
        """Every session slot is taken by an authenticated session."""
        return self.session_count(active_only=True) >= self.session_limit

    def close_session(self, bmc_id: int) -> bool:
        return self.sessions.pop(bmc_id, None) is not None

    def session_count(self, *, active_only: bool = False) -> int:
        """Sessions holding a slot (those a BMC reset dropped do not); or only active ones."""
        return sum(1 for s in self.sessions.values() if not s.draining
                   and (s.stage is Stage.ACTIVE or not active_only))

    # -- packets not answering a request (SOL output, retransmissions, notices) ----------------
    def poll(self, now: float | None = None) -> list[tuple[Hashable, bytes]]:
        """The datagrams to send now, each with its peer. Never raises."""
        try:
            out = []
            for session, payload in self.sol.poll(self.clock() if now is None else now):
                if payload is None:
                    out.append((session.peer, b""))
                elif session.keys is not None:
                    out.append((session.peer, self._seal(session, wire.PAYLOAD_SOL, payload)))
            return out
        except Exception:  # a bug must cost some output, never the server
            log.exception("%s: SOL poll failed", self.node.name)
            return []

    def next_deadline(self) -> float | None:
        """When poll() next has something to do (clock() time), None if only on wakeup."""
        return self.sol.deadline()

    def close(self) -> None:
        """The server stops: detach from the console."""
        self.sol.close()

    def _session_alive(self, session: Session) -> bool:
        return (self.sessions.get(session.bmc_id) is session and not session.draining
                and session.stage is Stage.ACTIVE)

    def _seal(self, session: Session, payload_type: int, payload: bytes) -> bytes:
        """An encrypted, signed RMCP+ packet of `session`."""
        assert session.keys is not None
        keys = session.keys
        return wire.build_v20(payload_type, session.console_id, session.next_outbound_seq(),
                              keys.encrypt(payload), encrypted=True, sign=keys.sign)

    # -- RMCP+ ------------------------------------------------------------------------------
    def _receive_v20(self, data: bytes, peer: Hashable) -> bytes | None:
        sid = struct.unpack_from("<I", data, 6)[0] if len(data) >= 10 else 0
        if sid == 0:
            packet = wire.parse_v20(data)
            handler = {
                wire.PAYLOAD_OPEN_SESSION_REQUEST: self._open_session,
                wire.PAYLOAD_RAKP1: self._rakp1,
                wire.PAYLOAD_RAKP3: self._rakp3,
            }.get(packet.payload_type)
            if handler is not None:
                return handler(packet.payload, peer)
            if packet.payload_type == wire.PAYLOAD_IPMI and not packet.authenticated:
                reply = self._dispatch(packet.payload, None, sessionless=True)
                return wire.build_v20(wire.PAYLOAD_IPMI, 0, 0, reply) if reply else None
            return None
        session = self.sessions.get(sid)
        if session is None or session.stage is not Stage.ACTIVE or session.keys is None:
            return None  # nothing we could sign an answer with
        if self._credentials_changed(session):
            return None
        keys = session.keys
        packet = wire.parse_v20(data, keys.suite.icv_length)
        if not packet.authenticated or not keys.verify(packet.signed, packet.authcode):
            log.debug("dropped packet with bad integrity code in session %#x", sid)
            return None
        if not packet.encrypted:
            return None  # our suites all require confidentiality
        if session.last_reply and session.last_reply[:2] == (packet.sequence, data):
            return session.last_reply[2]  # the console retried: same answer, done once
        if not session.accept_inbound_seq(packet.sequence,
                                          duplicates_ok=packet.payload_type == wire.PAYLOAD_SOL):
            return None
        session.last_activity = self.clock()
        try:
            payload = keys.decrypt(packet.payload)
        except ValueError as exc:  # signed by the session's client, yet not AES-CBC: its bug
            log.debug("dropped undecryptable packet in session %#x: %s", sid, exc)
            return None
        if packet.payload_type == wire.PAYLOAD_SOL:
            ack = self.sol.receive(session, payload, self.clock())
            return None if ack is None else self._seal(session, wire.PAYLOAD_SOL, ack)
        if packet.payload_type != wire.PAYLOAD_IPMI:
            return None
        reply = self._dispatch(payload, session)
        if reply is None:
            return None
        out = self._seal(session, wire.PAYLOAD_IPMI, reply)
        session.last_reply = (packet.sequence, data, out)
        return out

    def _open_session(self, payload: bytes, peer: Hashable) -> bytes:
        if len(payload) < 32:
            tag = payload[0] if payload else 0
            return self._open_session_error(tag, RMCP_ILLEGAL_PARAMETER, 0)
        tag, requested = payload[0], payload[1] & 0x0F
        console_id = struct.unpack_from("<I", payload, 4)[0]
        algorithms = (payload[12] & 0x3F, payload[20] & 0x3F, payload[28] & 0x3F)
        if (payload[8], payload[16], payload[24]) != (0, 1, 2):
            return self._open_session_error(tag, RMCP_ILLEGAL_PARAMETER, console_id)
        suite = find_suite(*algorithms)
        if suite is None:  # includes cipher suite 0: no authentication is never offered
            return self._open_session_error(tag, RMCP_NO_CIPHER_SUITE_MATCH, console_id)
        try:
            privilege = Privilege(requested) if requested else Privilege.ADMINISTRATOR
        except ValueError:
            return self._open_session_error(tag, RMCP_INVALID_ROLE, console_id)
        # a retransmitted request reuses the session it already opened
        session = next((s for s in self.sessions.values() if s.peer == peer
                        and s.console_id == console_id and s.stage is Stage.OPENED), None)
        if session is None:
            if self.slots_full():
                return self._open_session_error(tag, RMCP_NO_RESOURCES, console_id)
            self.admit_half_open(peer)
            session = Session(self._new_session_id(), console_id, peer, Stage.OPENED,
                              self.clock(), suite=suite, requested_privilege=privilege)
            self.sessions[session.bmc_id] = session
        body = struct.pack("<BBBxII", tag, RMCP_OK, privilege, console_id, session.bmc_id)
        body += bytes((0, 0, 0, 8, suite.auth, 0, 0, 0, 1, 0, 0, 8, suite.integrity, 0, 0, 0,
                       2, 0, 0, 8, suite.confidentiality, 0, 0, 0))
        return wire.build_v20(wire.PAYLOAD_OPEN_SESSION_RESPONSE, 0, 0, body)

    @staticmethod
    def _open_session_error(tag: int, status: int, console_id: int) -> bytes:
        body = struct.pack("<BBBxI", tag, status, 0, console_id)
        return wire.build_v20(wire.PAYLOAD_OPEN_SESSION_RESPONSE, 0, 0, body)

    def _new_session_id(self) -> int:
        while True:
            sid = struct.unpack("<I", self.random(4))[0]
            if sid and sid not in self.sessions:
                return sid

    def _rakp1(self, payload: bytes, peer: Hashable) -> bytes | None:
        if len(payload) < 28:
            return None
        tag = payload[0]
        bmc_id = struct.unpack_from("<I", payload, 4)[0]
        session = self.sessions.get(bmc_id)
        # an RMCP+ session waiting for RAKP1 (or a retransmitted one); never an IPMI 1.5
        # session's challenge, which has no cipher suite
        if session is None or session.peer != peer or session.stage not in (Stage.OPENED,
                                                                            Stage.RAKP):
            return self._rakp_error(wire.PAYLOAD_RAKP2, tag, RMCP_INVALID_SESSION_ID, 0)
        role_byte, name_length = payload[24], payload[27]
        username = payload[28:28 + name_length]
        if name_length > 16 or len(username) != name_length:
            return self._rakp_fail(session, wire.PAYLOAD_RAKP2, tag, RMCP_INVALID_NAME_LENGTH)
        name = username.decode("latin-1")
        user = self.node.users.by_name(name)
        if user is None or not user.may_use_ipmi:  # also refuses the null (anonymous) user
            self.node.lockout.failed(name, _source(peer), known=False)
            return self._rakp_fail(session, wire.PAYLOAD_RAKP2, tag, RMCP_UNAUTHORIZED_NAME)
        if self.node.lockout.is_locked(name, _source(peer)):  # as if unknown: no oracle
            self._auth_log.failed(self.node.name, name, peer, "locked out")
            return self._rakp_fail(session, wire.PAYLOAD_RAKP2, tag, RMCP_UNAUTHORIZED_NAME)
        try:
            role = Privilege(role_byte & 0x0F)
        except ValueError:
            return self._rakp_fail(session, wire.PAYLOAD_RAKP2, tag, RMCP_INVALID_ROLE)
        if role > user.privilege or role > session.requested_privilege:
            return self._rakp_fail(session, wire.PAYLOAD_RAKP2, tag, RMCP_INVALID_ROLE)
        assert session.suite is not None
        session.user, session.max_privilege = user, role
        session.console_random, session.bmc_random = payload[8:24], self.random(16)
        session.role_byte, session.username = role_byte, username
        session.stage, session.last_activity = Stage.RAKP, self.clock()
        material = (struct.pack("<II", session.console_id, session.bmc_id)
                    + session.console_random + session.bmc_random + self.guid
                    + bytes((role_byte, name_length)) + username)
        authcode = hmac_digest(session.suite, user.password_bytes(), material)
        body = (struct.pack("<BBxxI", tag, RMCP_OK, session.console_id) + session.bmc_random
                + self.guid + authcode)
        return wire.build_v20(wire.PAYLOAD_RAKP2, 0, 0, body)

    def _rakp3(self, payload: bytes, peer: Hashable) -> bytes | None:
        if len(payload) < 8:
            return None
        tag, status = payload[0], payload[1]
        bmc_id = struct.unpack_from("<I", payload, 4)[0]
        session = self.sessions.get(bmc_id)
        if session is None or session.peer != peer or session.stage is not Stage.RAKP:
            return self._rakp_error(wire.PAYLOAD_RAKP4, tag, RMCP_INVALID_SESSION_ID, 0)
        if status != RMCP_OK:  # the console gave up (e.g. it found our RAKP2 wrong)
            self.sessions.pop(bmc_id, None)
            if session.user is not None:
                # our RAKP2 did not match its password (ipmitool says so with status 0x02 or
                # 0x0F): a wrong password, found on the client's side
                self.login_failed(session.user.name, peer)
            return None
        assert session.suite is not None and session.user is not None
        suite, user = session.suite, session.user
        expected = hmac_digest(suite, user.password_bytes(), session.bmc_random
                               + struct.pack("<I", session.console_id)
                               + bytes((session.role_byte, len(session.username)))
                               + session.username)
        if not hmac.compare_digest(expected, payload[8:]):
            self.login_failed(user.name, peer)
            return self._rakp_fail(session, wire.PAYLOAD_RAKP4, tag, RMCP_INVALID_ICV)
        if self.slots_full():  # taken while this one was authenticating
            return self._rakp_fail(session, wire.PAYLOAD_RAKP4, tag, RMCP_NO_RESOURCES)
        rakp_material = (session.console_random + session.bmc_random
                         + bytes((session.role_byte, len(session.username))) + session.username)
        session.keys = SessionKeys.derive(suite, self.kg or user.password_bytes(), rakp_material)
        icv = hmac_digest(suite, session.keys.sik, session.console_random
                          + struct.pack("<I", session.bmc_id) + self.guid)[: suite.icv_length]
        session.stage, session.last_activity = Stage.ACTIVE, self.clock()
        session.credentials_epoch = user.credentials_epoch
        self.node.lockout.succeeded(user.name, _source(peer))
        # the operating privilege starts at USER (or the lower limit) until the console
        # raises it with Set Session Privilege Level
        session.privilege = min(Privilege.USER, session.max_privilege)
        body = struct.pack("<BBxxI", tag, RMCP_OK, session.console_id) + icv
        return wire.build_v20(wire.PAYLOAD_RAKP4, 0, 0, body)

    def login_failed(self, name: str, peer: Hashable) -> None:
        """A wrong password: counted by the node's lockout (shared with Redfish), logged
        at most every few seconds however fast they come."""
        self.node.lockout.failed(name, _source(peer))
        self._auth_log.failed(self.node.name, name, peer, "wrong password")

    def _rakp_fail(self, session: Session, payload_type: int, tag: int, status: int) -> bytes:
        self.sessions.pop(session.bmc_id, None)
        return self._rakp_error(payload_type, tag, status, session.console_id)

    @staticmethod
    def _rakp_error(payload_type: int, tag: int, status: int, console_id: int) -> bytes:
        return wire.build_v20(payload_type, 0, 0, struct.pack("<BBxxI", tag, status, console_id))

    # -- IPMI 1.5 ---------------------------------------------------------------------------
    def _receive_v15(self, data: bytes, peer: Hashable) -> bytes | None:
        packet = wire.parse_v15(data)
        if packet.session_id == 0:
            if packet.authtype != wire.AUTHTYPE_NONE:
                return None
            reply = self._dispatch(packet.message, None, sessionless=True, peer=peer)
            return wire.build_v15(wire.AUTHTYPE_NONE, 0, 0, b"", reply) if reply else None
        session = self.sessions.get(packet.session_id)
        if (session is None or session.v15_authtype is None or session.user is None
                or packet.authtype != session.v15_authtype or session.peer != peer):
            return None
        if session.stage is Stage.ACTIVE and self._credentials_changed(session):
            return None
        password = session.user.password_bytes()
        expected = self._v15_authcode(session.v15_authtype, password, packet.session_id,
                                      packet.message, packet.sequence)
        if not hmac.compare_digest(expected, packet.authcode):
            if session.stage is Stage.CHALLENGED:  # Activate Session with a wrong password
                return self._v15_login_failed(session, packet.message, peer)
            log.debug("dropped IPMI 1.5 packet with bad auth code in session %#x",
                      packet.session_id)
            return None
        if session.stage is Stage.ACTIVE:
            if session.last_reply and session.last_reply[:2] == (packet.sequence, data):
                return session.last_reply[2]
            if not session.accept_inbound_seq(packet.sequence):
                return None
        elif packet.sequence != 0:  # Activate Session comes with sequence number 0
            return None
        session.last_activity = self.clock()
        activating = session.stage is Stage.CHALLENGED
        reply = self._dispatch(packet.message, session, peer=peer)
        if reply is None:
            return None
        # the Activate Session answer goes out with sequence number 0; then ours count up
        seq = 0 if activating else session.next_outbound_seq()
        out = wire.build_v15(session.v15_authtype, seq, session.bmc_id,
                             self._v15_authcode(session.v15_authtype, password, session.bmc_id,
                                                reply, seq), reply)
        if session.stage is Stage.ACTIVE:
            session.last_reply = (packet.sequence, data, out)
        return out

    def _v15_login_failed(self, session: Session, message: bytes, peer: Hashable) -> bytes:
        """A wrong password in Activate Session: counted like a failed RAKP, the challenge
        dropped, and answered so the client reports it now instead of timing out. The reply
        is in the session's form (ipmitool parses it so), with an all-zero auth code: signing
        it with the real password would hand the client an offline password oracle."""
        assert session.user is not None and session.v15_authtype is not None
        self.login_failed(session.user.name, peer)
        self.sessions.pop(session.bmc_id, None)
        reply = wire.build_response(wire.parse_request(message), CC_INVALID_SESSION_ID_V15)
        return wire.build_v15(session.v15_authtype, 0, session.bmc_id, bytes(16), reply)

    @staticmethod
    def _v15_authcode(authtype: int, password: bytes, session_id: int, message: bytes,
                      sequence: int) -> bytes:
        if authtype == wire.AUTHTYPE_PASSWORD:
            return password.ljust(16, b"\x00")[:16]
        return md5_authcode(password, struct.pack("<I", session_id), message,
                            struct.pack("<I", sequence))

    def new_v15_session(self, authtype: int, user_name: str, peer: Hashable) -> Session:
        """Open a challenged 1.5 session (Get Session Challenge); the caller checks the user."""
        self.admit_half_open(peer)
        session = Session(self._new_session_id(), 0, peer, Stage.CHALLENGED, self.clock(),
                          v15_authtype=authtype, user=self.node.users.by_name(user_name),
                          challenge=self.random(16))
        session.console_id = session.bmc_id
        self.sessions[session.bmc_id] = session
        return session

    # -- dispatch ---------------------------------------------------------------------------
    def _dispatch(self, message: bytes, session: Session | None, *, sessionless: bool = False,
                  peer: Hashable = None) -> bytes | None:
        request = wire.parse_request(message)
        entry: Command | None = lookup(request.netfn, request.command)
        context = Context(self.node, request.data, session, self, request.netfn,
                          request.command, peer)
        if entry is None:
            return wire.build_response(request, CC_INVALID_COMMAND)
        if sessionless and not entry.sessionless:
            return None  # outside a session only the pre-session commands are answered
        if session is not None and session.draining and \
                (request.netfn, request.command) != CLOSE_SESSION:
            return None  # a BMC reset dropped this session
        if session is not None and session.stage is not Stage.ACTIVE and not entry.sessionless:
            return None
        if (session is not None and session.stage is Stage.ACTIVE
                and entry.privilege > session.privilege):
            return wire.build_response(request, CC_INSUFFICIENT_PRIVILEGE)
        try:
            data = entry.handler(context)
            code = 0
        except IpmiError as exc:
            data, code = b"", exc.code
        except Exception:
            log.exception("IPMI handler %#04x/%#04x failed", request.netfn, request.command)
            data, code = b"", CC_UNSPECIFIED
        return wire.build_response(request, code, data)

