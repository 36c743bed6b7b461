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
    outbound_seq: int = 0
    #: last (sequence, request bytes, reply) so a retransmitted request gets the same reply
    last_reply: tuple[int, bytes, bytes] | None = field(default=None, repr=False)

    def next_outbound_seq(self) -> int:
        self.outbound_seq = (self.outbound_seq + 1) & 0xFFFFFFFF or 1
        return self.outbound_seq

    def accept_inbound_seq(self, seq: int) -> bool:
        """Sliding-window check of an inbound session sequence number (13.28.5)."""
        if seq == 0:
            return False
        if self.inbound_seq == 0 or seq > self.inbound_seq:
            if self.inbound_seq and seq - self.inbound_seq > SEQUENCE_WINDOW:
                return False
            self.inbound_seq = seq
            return True
        return self.inbound_seq - seq < SEQUENCE_WINDOW
