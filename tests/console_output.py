"""What a backend's serial console prints, collected for a test (the `output` callback of
`attach_console`, called from the backend's own thread), and waited for.

    console = ConsoleOutput(timeout=15)
    backend.attach_console(console)
    end = console.wait_for(b"login: ")          # the offset just after the first match
    console.wait_for(b"# ", end)                # the next match after that
    console.wait_for(b"console-up", times=3)    # seen three times
"""

from __future__ import annotations

import threading


class ConsoleOutput:
    """Collects console output; `wait_for` fails the test after `timeout` seconds."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.data = bytearray()
        self.changed = threading.Condition()

    def __call__(self, data: bytes) -> None:
        with self.changed:
            self.data += data
            self.changed.notify_all()

    def count(self, text: bytes) -> int:
        with self.changed:
            return bytes(self.data).count(text)

    def wait_for(self, text: bytes, start: int = 0, times: int = 1) -> int:
        """The end offset of the first `text` after `start`, once it was seen `times` times
        after `start`."""
        with self.changed:
            seen = self.changed.wait_for(
                lambda: bytes(self.data[start:]).count(text) >= times, self.timeout)
            assert seen, (f"{text!r} x{times} not seen; console:\n"
                          f"{self.data[-2000:].decode(errors='replace')}")
            return self.data.find(text, start) + len(text)
