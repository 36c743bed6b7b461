"""IPMI Serial over LAN (payload type 1, IPMI 2.0 section 15): the BMC side. Sans-I/O.

`SolService` is the SOL payload of one BMC (capacity: one instance, instance 1, one session at
a time). An active `SolPayload` is a viewer of the node's console hub: console output lands in
its inbox (from the backend's thread, which then wakes the I/O loop); the I/O loop calls
`poll(now)` for the packets to send and `receive()` for each SOL packet that arrives.

BMC -> console: output is accumulated for the "character accumulate interval" or until the
"send threshold" is reached, then sent as one packet (at most SOL_DATA_MAX characters) with a
4-bit packet sequence number; one packet is in flight at a time. A packet not acknowledged
within the retry interval is sent again, the same sequence number and data, up to the retry
count; then it is dropped. An ACK that accepts fewer characters than sent puts the rest back in
front of the queue; a NACK also holds output back for one retry interval.

Console -> BMC: characters are typed on the console (if this payload is the hub's writer) and
acknowledged at once. A retransmission (same sequence number) is acknowledged again, and only
characters beyond those already accepted are typed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bmc.console import ConsoleHub, SolSettings
from ipmi.session import Session

log = logging.getLogger(__name__)

#: characters per packet: the accepted-character count is one byte, and this keeps a packet
#: within what both ipmitool and freeipmi accept (payload size 5..259)
SOL_DATA_MAX = 251
PAYLOAD_SIZE = SOL_DATA_MAX + 4  # the Activate Payload answer's inbound/outbound sizes
#: output waiting for a slow console is cut to the newest bytes beyond this (overrun)
PENDING_LIMIT = 64 * 1024
#: a payload whose session vanished is noticed within this many seconds
LIVENESS_CHECK = 1.0
#: a session whose payload another session took is closed after this, unless it closes first
STOLEN_SESSION_GRACE = 2.0

# operation bits, console -> BMC (table 15-2)
OP_NACK = 0x40
OP_RING = 0x20
OP_BREAK = 0x10
OP_CTS_DEASSERT = 0x08  # the console asks us to pause output
OP_DCD_DSR_DEASSERT = 0x04
OP_FLUSH_INBOUND = 0x02
OP_FLUSH_OUTBOUND = 0x01
# status bits, BMC -> console (table 15-3)
ST_NACK = 0x40
ST_UNAVAILABLE = 0x20
ST_DEACTIVATING = 0x10
ST_OVERRUN = 0x08
ST_BREAK = 0x04


@dataclass(frozen=True)
class SolPacket:
    seq: int  # 1..15; 0 = no character data (an ACK only)
    ack: int  # the packet acknowledged; 0 = none
    count: int  # accepted character count (of the acknowledged packet)
    op: int  # operation (to BMC) or status (from BMC) bits
    data: bytes = b""

    @classmethod
    def parse(cls, raw: bytes) -> SolPacket | None:
        if len(raw) < 4:
            return None
        return cls(raw[0] & 0x0F, raw[1] & 0x0F, raw[2], raw[3], bytes(raw[4:]))

    def build(self) -> bytes:
        return bytes((self.seq, self.ack, self.count, self.op)) + self.data


class SolPayload:
    """One activated SOL instance: a session on one side, the node's console on the other."""

    def __init__(self, session: Session, hub: ConsoleHub, settings: SolSettings, now: float,
                 wakeup: Callable[[], None]) -> None:
        self.session = session
        self.settings = settings
        self._wakeup = wakeup
        self.inbox: deque[bytes] = deque()  # filled by the hub's thread, emptied by poll()
        self.pending = bytearray()
        self.pending_since = now
        self.overrun = False
        self.paused = False  # the console deasserted CTS
        self.hold_until = 0.0  # after a NACK
        self.in_flight: bytes | None = None
        self.in_flight_seq = 0
        self.sent_at = 0.0
        self.retries = 0
        self._next_seq = 1
        self.last_in_seq = 0
        self.last_in_length = 0
        self.breaks = 0  # serial breaks the console asked for (the pty has no line to break)
        self.viewer = hub.attach(self._output, name=f"ipmi-sol {session.peer}", write=True)

    def _output(self, data: bytes) -> None:  # the hub's thread
        self.inbox.append(data)
        self._wakeup()

    @property
    def accumulate(self) -> float:
        return max(self.settings.accumulate_interval, 1) * 0.005

    @property
    def retry_interval(self) -> float:
        return max(self.settings.retry_interval, 1) * 0.01

    def receive(self, packet: SolPacket, now: float) -> bytes | None:
        """Handle one packet from the console; the ACK to send back, if any."""
        self.paused = bool(packet.op & OP_CTS_DEASSERT)
        if packet.op & OP_FLUSH_OUTBOUND:
            self.pending.clear()
            self.in_flight = None
        if packet.op & OP_BREAK:
            self.breaks += 1
        if packet.ack and self.in_flight is not None and packet.ack == self.in_flight_seq:
            accepted = min(packet.count, len(self.in_flight))
            rest = self.in_flight[accepted:]
            self.in_flight = None
            if rest:
                self.pending[:0] = rest
                self.pending_since = now - self.accumulate  # due now
            if packet.op & OP_NACK:
                self.hold_until = now + self.retry_interval
        if not packet.seq:
            return None
        # more than the inbound payload size we announced cannot be acknowledged (the count
        # is one byte): accept what fits, and the console sends the rest again (a partial ACK)
        data = packet.data[:SOL_DATA_MAX]
        new = data[self.last_in_length:] if packet.seq == self.last_in_seq else data
        self.last_in_seq, self.last_in_length = packet.seq, len(data)
        if new:
            self.viewer.write(new)  # dropped unless this payload is the console's writer
        return SolPacket(0, packet.seq, len(data), 0).build()

    def _take_inbox(self, now: float) -> None:
        while self.inbox:
            if not self.pending and self.in_flight is None:
                self.pending_since = now
            self.pending += self.inbox.popleft()
        if len(self.pending) > PENDING_LIMIT:
            del self.pending[:len(self.pending) - PENDING_LIMIT]
            self.overrun = True

    def poll(self, now: float) -> list[bytes]:
        """The packets due now: a retransmission, or accumulated output."""
        self._take_inbox(now)
        out: list[bytes] = []
        if self.in_flight is not None and now >= self.sent_at + self.retry_interval:
            if self.retries < self.settings.retry_count:
                self.retries += 1
                self.sent_at = now
                out.append(SolPacket(self.in_flight_seq, 0, 0, 0, self.in_flight).build())
            else:
                log.debug("SOL packet %d not acknowledged after %d retries: dropped",
                          self.in_flight_seq, self.retries)
                self.in_flight = None
        if self._due(now):
            chunk = bytes(self.pending[:SOL_DATA_MAX])
            del self.pending[:SOL_DATA_MAX]
            self.in_flight, self.in_flight_seq = chunk, self._next_seq
            self._next_seq = self._next_seq % 15 + 1
            self.sent_at, self.retries = now, 0
            status = ST_OVERRUN if self.overrun else 0
            self.overrun = False
            out.append(SolPacket(self.in_flight_seq, 0, 0, status, chunk).build())
        return out

    def _due(self, now: float) -> bool:
        if self.in_flight is not None or not self.pending or self.paused:
            return False
        if now < self.hold_until:
            return False
        threshold = max(self.settings.send_threshold, 1)
        return len(self.pending) >= threshold or now >= self.pending_since + self.accumulate

    def deadline(self) -> float | None:
        if self.inbox:
            return 0.0
        if self.in_flight is not None:
            return self.sent_at + self.retry_interval
        if self.pending and not self.paused:
            return max(self.hold_until, self.pending_since + self.accumulate)
        return None

    def close(self) -> None:
        self.viewer.detach()


#: what poll() hands the endpoint: a SOL payload to seal for the session, or None for an
#: empty datagram to the session's peer
Outbound = tuple[Session, bytes | None]


class SolService:
    """The SOL payload of one BMC: at most one active instance."""

    INSTANCE = 1

    def __init__(self, hub: ConsoleHub, *, alive: Callable[[Session], bool],
                 close_session: Callable[[int], object],
                 wakeup: Callable[[], None]) -> None:
        self.hub = hub
        self._alive = alive
        self._close_session = close_session
        self._wakeup = wakeup
        self.payload: SolPayload | None = None
        self._notices: list[Outbound] = []
        self._doomed: dict[int, tuple[Session, float]] = {}  # sessions whose payload was taken
        self._next_check = 0.0

    @property
    def settings(self) -> SolSettings:
        return self.hub.sol

    def active_payload(self) -> SolPayload | None:
        """The active payload, after dropping it if its session is gone."""
        payload = self.payload
        if payload is not None and not self._alive(payload.session):
            log.info("SOL payload of a closed session deactivated")
            self._drop()
        return self.payload

    def activate(self, session: Session, now: float) -> SolPayload:
        self.payload = SolPayload(session, self.hub, self.settings, now, self._wakeup)
        log.info("%s: SOL activated by %s", self.hub.name, session.peer)
        return self.payload

    def deactivate(self, by: Session | None, now: float) -> None:
        """End the active payload. If `by` is another session (or the BMC itself, None), the
        payload's own session is told: a SOL packet with "SOL deactivating" (freeipmi ends on
        it), then an empty datagram, because ipmitool ignores that bit and ends a SOL session
        only when a read from its socket returns nothing ("SOL session closed by BMC"). That
        session is closed soon after, as ipmitool then exits without closing it."""
        payload = self.payload
        if payload is None:
            return
        self._drop()
        victim = payload.session
        if by is victim:
            return
        notice = SolPacket(0, 0, 0, ST_DEACTIVATING | ST_UNAVAILABLE).build()
        self._notices += [(victim, notice), (victim, None)]
        self._doomed[victim.bmc_id] = (victim, now + STOLEN_SESSION_GRACE)
        log.info("%s: SOL of %s deactivated by %s", self.hub.name, victim.peer,
                 "the BMC" if by is None else by.peer)

    def _drop(self) -> None:
        if self.payload is not None:
            self.payload.close()
            self.payload = None

    def receive(self, session: Session, raw: bytes, now: float) -> bytes | None:
        """A SOL packet from `session`; the reply payload, if any."""
        packet = SolPacket.parse(raw)
        if packet is None:
            return None
        payload = self.active_payload()
        if payload is None or payload.session is not session:
            # not (or no longer) this session's: say so, so a console does not type into void
            if packet.seq:
                return SolPacket(0, packet.seq, 0, ST_DEACTIVATING | ST_UNAVAILABLE).build()
            return None
        return payload.receive(packet, now)

    def poll(self, now: float) -> list[Outbound]:
        out, self._notices = self._notices, []
        if now >= self._next_check:
            self._next_check = now + LIVENESS_CHECK
            self.active_payload()
        if self.payload is not None:
            out += [(self.payload.session, p) for p in self.payload.poll(now)]
        for sid, (session, deadline) in list(self._doomed.items()):
            if now >= deadline or not self._alive(session):
                del self._doomed[sid]
                if self._alive(session):
                    self._close_session(sid)
        return out

    def deadline(self) -> float | None:
        times = [d for _, d in self._doomed.values()]
        if self._notices:
            times.append(0.0)
        if self.payload is not None:
            times.append(self._next_check)
            own = self.payload.deadline()
            if own is not None:
                times.append(own)
        return min(times) if times else None

    def close(self) -> None:
        self._drop()
