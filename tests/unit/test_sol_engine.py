"""The SOL engine (ipmi.sol) on its own: packets in, packets out, a fake clock, a real hub."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from backends.base import BootDevice, PowerState
from backends.memory import MemoryBackend
from bmc.console import ConsoleHub
from ipmi.session import Session, Stage
from ipmi.sol import (
    OP_CTS_DEASSERT,
    OP_FLUSH_OUTBOUND,
    OP_NACK,
    SOL_DATA_MAX,
    ST_DEACTIVATING,
    ST_OVERRUN,
    SolPacket,
    SolService,
)


class SerialBackend(MemoryBackend):
    """A memory backend with a serial port: tests push output and read what was typed."""

    def __init__(self) -> None:
        super().__init__(power_on=True)
        self.output: Callable[[bytes], None] | None = None
        self.typed = bytearray()

    def attach_console(self, output: Callable[[bytes], None]) -> bool:
        self.output = output
        return True

    def write_console(self, data: bytes) -> None:
        self.typed += data

    def prints(self, data: bytes) -> None:
        assert self.output is not None
        self.output(data)


class World:
    def __init__(self) -> None:
        self.backend = SerialBackend()
        self.hub = ConsoleHub(self.backend, name="n0")
        self.sessions: dict[int, Session] = {}
        self.closed: list[int] = []
        self.wakeups = 0
        self.sol = SolService(self.hub, alive=lambda s: self.sessions.get(s.bmc_id) is s,
                              close_session=self._close, wakeup=self._wake)

    def _wake(self) -> None:
        self.wakeups += 1

    def _close(self, sid: int) -> bool:
        self.closed.append(sid)
        return self.sessions.pop(sid, None) is not None

    def session(self, sid: int) -> Session:
        session = Session(sid, sid + 1000, ("127.0.0.1", sid), Stage.ACTIVE, 0.0)
        self.sessions[sid] = session
        return session

    def sent(self, now: float) -> list[SolPacket]:
        packets = []
        for _, raw in self.sol.poll(now):
            assert raw is not None
            packet = SolPacket.parse(raw)
            assert packet is not None
            packets.append(packet)
        return packets


@pytest.fixture
def world() -> World:
    return World()


def test_output_waits_for_the_accumulate_interval(world: World) -> None:
    session = world.session(1)
    world.sol.activate(session, 0.0)
    world.backend.prints(b"ab")
    assert world.wakeups == 1
    assert world.sent(0.001) == []  # 10 ms accumulate interval by default
    assert world.sol.deadline() == pytest.approx(0.011)
    [packet] = world.sent(0.011)
    assert (packet.seq, packet.ack, packet.data) == (1, 0, b"ab")


def test_the_send_threshold_sends_at_once_in_packets_of_at_most_251(world: World) -> None:
    world.sol.activate(world.session(1), 0.0)
    world.backend.prints(b"x" * 600)
    [first] = world.sent(0.0)
    assert len(first.data) == SOL_DATA_MAX
    assert world.sent(0.001) == []  # one packet in flight at a time
    ack = world.sol.receive(world.sessions[1], SolPacket(0, 1, SOL_DATA_MAX, 0).build(), 0.002)
    assert ack is None  # an ACK needs no answer
    [second] = world.sent(0.002)
    assert (second.seq, len(second.data)) == (2, SOL_DATA_MAX)


def test_a_late_viewer_gets_the_recent_output_first(world: World) -> None:
    world.backend.prints(b"POST banner\r\n")
    world.sol.activate(world.session(1), 0.0)
    assert world.sent(0.0) == []  # the I/O loop collects it at once (woken), sends it later
    [packet] = world.sent(1.0)
    assert packet.data == b"POST banner\r\n"


def test_unacknowledged_output_is_sent_again_then_dropped(world: World) -> None:
    world.hub.sol.retry_count, world.hub.sol.retry_interval = 2, 10  # 100 ms
    world.sol.activate(world.session(1), 0.0)
    world.backend.prints(b"hello")
    assert world.sent(0.0) == []
    [first] = world.sent(0.02)
    assert world.sent(0.05) == []
    [again] = world.sent(0.121)
    assert again == first  # same sequence number, same characters
    [third] = world.sent(0.222)
    assert third == first
    assert world.sent(0.323) == []  # retry count reached: dropped
    world.backend.prints(b"next")
    assert world.sent(0.4) == []
    [nxt] = world.sent(0.42)
    assert (nxt.seq, nxt.data) == (2, b"next")


def test_a_partial_ack_sends_the_rest_and_a_nack_holds_off(world: World) -> None:
    session = world.session(1)
    world.sol.activate(session, 0.0)
    world.backend.prints(b"0123456789")
    assert world.sent(0.0) == []
    [packet] = world.sent(0.02)
    world.sol.receive(session, SolPacket(0, packet.seq, 4, 0).build(), 0.03)
    [rest] = world.sent(0.03)
    assert rest.data == b"456789" and rest.seq != packet.seq
    world.sol.receive(session, SolPacket(0, rest.seq, 0, OP_NACK).build(), 0.04)
    assert world.sent(0.05) == []  # the console is busy: wait one retry interval
    [retry] = world.sent(0.541)
    assert retry.data == b"456789"


def test_console_input_is_typed_once_and_acknowledged(world: World) -> None:
    session = world.session(1)
    world.sol.activate(session, 0.0)
    ack = world.sol.receive(session, SolPacket(3, 0, 0, 0, b"ls").build(), 0.0)
    assert SolPacket.parse(ack or b"") == SolPacket(0, 3, 2, 0)
    # the console did not get our ACK and sends the packet again, with one more character
    ack = world.sol.receive(session, SolPacket(3, 0, 0, 0, b"ls\r").build(), 0.1)
    assert SolPacket.parse(ack or b"") == SolPacket(0, 3, 3, 0)
    assert bytes(world.backend.typed) == b"ls\r"


def test_only_the_writer_types(world: World) -> None:
    world.hub.attach(lambda data: None, name="websocket")  # the first viewer is the writer
    session = world.session(1)
    world.sol.activate(session, 0.0)
    world.sol.receive(session, SolPacket(1, 0, 0, 0, b"x").build(), 0.0)
    assert world.backend.typed == b""


def test_flush_and_pause(world: World) -> None:
    session = world.session(1)
    world.sol.activate(session, 0.0)
    world.sol.receive(session, SolPacket(0, 0, 0, OP_CTS_DEASSERT).build(), 0.0)
    world.backend.prints(b"held")
    assert world.sent(1.0) == []
    world.sol.receive(session, SolPacket(0, 0, 0, OP_FLUSH_OUTBOUND).build(), 1.0)
    assert world.sent(2.0) == []  # flushed, and CTS is asserted again
    world.backend.prints(b"new")
    assert world.sent(3.0) == []
    assert [p.data for p in world.sent(3.011)] == [b"new"]


def test_overrun_is_reported_when_the_console_falls_far_behind(world: World) -> None:
    session = world.session(1)
    world.sol.activate(session, 0.0)
    world.sol.receive(session, SolPacket(0, 0, 0, OP_CTS_DEASSERT).build(), 0.0)
    world.backend.prints(b"y" * 70_000)
    world.sent(0.1)
    world.sol.receive(session, SolPacket(0, 0, 0, 0).build(), 0.2)
    [packet] = world.sent(0.2)
    assert packet.op & ST_OVERRUN


def test_deactivation_by_another_session_notifies_and_later_closes_the_first(
        world: World) -> None:
    first, second = world.session(1), world.session(2)
    world.sol.activate(first, 0.0)
    world.sol.deactivate(second, 1.0)
    assert world.hub.viewers == []
    out = world.sol.poll(1.0)
    assert [s for s, _ in out] == [first, first]
    notice, empty = (raw for _, raw in out)
    assert SolPacket.parse(notice or b"").op & ST_DEACTIVATING  # freeipmi ends on this
    assert empty is None  # an empty datagram: ipmitool ends on that
    # its keystrokes get the same news
    reply = world.sol.receive(first, SolPacket(4, 0, 0, 0, b"z").build(), 1.1)
    assert SolPacket.parse(reply or b"").op & ST_DEACTIVATING
    world.sol.poll(1.5)
    assert world.closed == []
    world.sol.poll(3.1)
    assert world.closed == [1]


def test_own_deactivation_sends_nothing_and_a_closed_session_frees_the_payload(
        world: World) -> None:
    first = world.session(1)
    world.sol.activate(first, 0.0)
    world.sol.deactivate(first, 0.5)
    assert world.sol.poll(0.5) == [] and world.sol.payload is None
    world.sol.activate(first, 1.0)
    del world.sessions[1]  # closed or expired without a Deactivate Payload
    assert world.sol.active_payload() is None
    assert world.hub.viewers == []


def test_the_memory_backend_has_no_console() -> None:
    backend = MemoryBackend()
    hub = ConsoleHub(backend)
    assert not hub.available
    backend.power_on(BootDevice.NONE)
    assert backend.power_state() is PowerState.ON
