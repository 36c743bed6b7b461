"""State of one IPMI session, RMCP+ (2.0) or 1.5, from open to close."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum

from bmc.users import Privilege, User
from ipmi.crypto import CipherSuite, SessionKeys


class Stage(Enum):
    OPENED = "opened"  # RMCP+: Open Session answered, waiting for RAKP1
    RAKP = "rakp"  # RMCP+: RAKP2 sent, waiting for RAKP3
    CHALLENGED = "challenged"  # 1.5: Get Session Challenge answered, waiting for Activate
    ACTIVE = "active"


#: how far behind the highest inbound sequence number a packet may be and still count
SEQUENCE_WINDOW = 16


@dataclass
class Session:
    bmc_id: int  # our session ID: what the console puts in its packets
    console_id: int  # the console's session ID (1.5: same as ours)
    peer: Hashable
    stage: Stage
    last_activity: float
    v15_authtype: int | None = None  # None for RMCP+ sessions
    suite: CipherSuite | None = None
    requested_privilege: Privilege = Privilege.ADMINISTRATOR
    user: User | None = None
    #: the user's credentials epoch when the session opened: a password change ends it
    credentials_epoch: int = 0
    max_privilege: Privilege = Privilege.USER  # the limit negotiated at activation
    privilege: Privilege = Privilege.USER  # the current (Set Session Privilege Level)
    keys: SessionKeys | None = None
    # RAKP material kept between messages
    console_random: bytes = b""
    bmc_random: bytes = b""
    role_byte: int = 0
    username: bytes = b""
    challenge: bytes = b""  # 1.5
    inbound_seq: int = 0
    inbound_seen: int = 0  # bit i set: inbound_seq - i has been received (duplicates)
    outbound_seq: int = 0
    #: dropped by a BMC reset: only its Close Session is still answered (so that clients do
    #: not wait out their retries), until it expires
    draining: bool = False
    #: last (sequence, request bytes, reply) so a retransmitted request gets the same reply
    last_reply: tuple[int, bytes, bytes] | None = field(default=None, repr=False)

    def next_outbound_seq(self) -> int:
        self.outbound_seq = (self.outbound_seq + 1) & 0xFFFFFFFF or 1
        return self.outbound_seq

    def accept_inbound_seq(self, seq: int, *, duplicates_ok: bool = False) -> bool:
        """Sliding-window check of an inbound session sequence number (13.28.5, 6.12.13).

        Up to SEQUENCE_WINDOW ahead of the highest number seen moves the window; a number
        behind it is accepted once (late, out of order) but never twice (a replay), unless
        `duplicates_ok`: SOL, whose own sequence numbers catch repeats, and whose clients
        (pyghmi) retransmit a packet byte for byte when our acknowledgement is late.
        """
        if seq == 0:
            return False
        if self.inbound_seq == 0:
            self.inbound_seq, self.inbound_seen = seq, 1
            return True
        ahead = (seq - self.inbound_seq) & 0xFFFFFFFF  # modulo 2^32: numbers wrap around
        behind = (self.inbound_seq - seq) & 0xFFFFFFFF
        if 0 < ahead <= SEQUENCE_WINDOW:
            self.inbound_seen = ((self.inbound_seen << ahead) | 1) & _WINDOW_MASK
            self.inbound_seq = seq
            return True
        if behind >= SEQUENCE_WINDOW or (self.inbound_seen >> behind & 1 and not duplicates_ok):
            return False
        self.inbound_seen |= 1 << behind
        return True


_WINDOW_MASK = (1 << SEQUENCE_WINDOW) - 1
