"""The console hub: replay for late viewers, fan-out, one writer, the console log file."""

from __future__ import annotations

import threading
from pathlib import Path

from test_sol_engine import SerialBackend

from backends.memory import MemoryBackend
from bmc.console import ConsoleHub


def test_viewers_get_the_replay_then_the_live_output(tmp_path: Path) -> None:
    backend = SerialBackend()
    hub = ConsoleHub(backend, buffer_size=8, log_path=tmp_path / "node.log")
    backend.prints(b"0123456789")  # longer than the ring buffer: the oldest bytes go
    early: list[bytes] = []
    hub.attach(early.append)
    assert early == [b"23456789"]
    late: list[bytes] = []
    hub.attach(late.append, replay=False)
    backend.prints(b"ab")
    assert early[-1] == b"ab" and late == [b"ab"]
    hub.close()
    assert (tmp_path / "node.log").read_bytes() == b"0123456789ab"  # the log keeps it all


def test_one_writer_and_the_next_takes_over() -> None:
    backend = SerialBackend()
    hub = ConsoleHub(backend)
    first = hub.attach(lambda d: None, name="first")
    watcher = hub.attach(lambda d: None, name="watcher", write=False)
    second = hub.attach(lambda d: None, name="second")
    assert first.write(b"a") and not second.write(b"b") and not watcher.write(b"c")
    first.detach()
    assert second.is_writer and second.write(b"d")
    assert bytes(backend.typed) == b"ad"


def test_a_failing_viewer_does_not_starve_the_others() -> None:
    backend = SerialBackend()
    hub = ConsoleHub(backend)

    def broken(data: bytes) -> None:
        raise RuntimeError("viewer bug")

    got: list[bytes] = []
    hub.attach(broken)
    hub.attach(got.append)
    backend.prints(b"x")
    assert got == [b"x"]


def test_output_from_many_threads_arrives_whole() -> None:
    backend = SerialBackend()
    hub = ConsoleHub(backend, buffer_size=1 << 20)
    got: list[bytes] = []
    hub.attach(got.append)
    threads = [threading.Thread(target=lambda: [backend.prints(b"z" * 10) for _ in range(200)])
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(b"".join(got)) == len(hub.recent()) == 8000


def test_a_backend_without_console_is_not_available(tmp_path: Path) -> None:
    hub = ConsoleHub(MemoryBackend(), log_path=tmp_path / "missing-dir" / "x.log")
    assert not hub.available  # and the unopenable log is only a warning
    viewer = hub.attach(lambda d: None)
    assert not viewer.write(b"x")
