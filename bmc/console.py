"""The console hub: one per node, between the server's serial port and every console viewer.

The backend streams serial output into `ConsoleHub._feed` (from its own thread). The hub keeps
the most recent output in a ring buffer (a viewer that attaches late still sees the boot
banner: it is replayed first), appends everything to the node's console log file if one is
configured, and fans each chunk out to every attached viewer: the IPMI SOL payload, WebSocket
clients. Viewers are callbacks, called in order with the hub's lock held, so each viewer sees
the replay and then the live stream with no gap and no duplicate; they must not block (they
queue the bytes and wake their own I/O loop).

Input: of all viewers, one is the writer (the first that asked to type; when it leaves, the
next oldest that asked takes over); only its bytes reach the serial port. The others watch.

A backend without a serial console (`memory`) gives a hub that is not `available`: IPMI SOL
activation is refused with "payload type disabled", and no WebSocket console is offered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from backends.base import Backend
from bmc.users import Privilege

if TYPE_CHECKING:
    from bmc.state import NodeState

log = logging.getLogger(__name__)

#: bytes of recent output kept for late viewers (the default of `console.buffer_size`)
DEFAULT_BUFFER_SIZE = 64 * 1024

Output = Callable[[bytes], None]


@dataclass
class SolSettings:
    """The SOL configuration parameters (IPMI 2.0 table 26-5), shared by every IPMI session.

    Units are the wire's: `accumulate_interval` in 5 ms, `retry_interval` in 10 ms, bit rates
    as IPMI codes (0x0A = 115.2 kbps). `privilege` is also what the WebSocket console needs.
    """

    enabled: bool = True
    force_encryption: bool = True
    force_authentication: bool = True
    privilege: Privilege = Privilege.USER
    accumulate_interval: int = 2  # 10 ms: short, because every echoed keystroke waits for it
    send_threshold: int = 96
    retry_count: int = 7
    retry_interval: int = 50  # 500 ms
    non_volatile_bit_rate: int = 0x0A
    volatile_bit_rate: int = 0x0A

    def saved(self) -> dict[str, Any]:
        """What survives a restart, in plain units (bmc/state.py); the volatile bit rate
        does not: like a BMC's after a reset, it starts as the non-volatile one."""
        return {"enabled": self.enabled, "force_encryption": self.force_encryption,
                "force_authentication": self.force_authentication,
                "privilege": self.privilege.name.lower(),
                "accumulate_ms": self.accumulate_interval * 5,
                "send_threshold": self.send_threshold, "retry_count": self.retry_count,
                "retry_interval_ms": self.retry_interval * 10,
                "bit_rate": BIT_RATES.get(self.non_volatile_bit_rate)}

    @classmethod
    def from_saved(cls, saved: Any) -> SolSettings:
        """The settings `saved()` gave (ValueError/KeyError/TypeError if they make no sense)."""
        flags = [saved[name] for name in ("enabled", "force_encryption",
                                          "force_authentication")]
        numbers = [saved[name] for name in ("accumulate_ms", "send_threshold", "retry_count",
                                            "retry_interval_ms")]
        if not all(isinstance(v, bool) for v in flags) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in numbers):
            raise ValueError("expected booleans and integers")
        accumulate, threshold, retries, interval = numbers
        privilege = Privilege[str(saved["privilege"]).upper()]
        rate = {bps: code for code, bps in BIT_RATES.items()}[saved["bit_rate"]]
        if not (Privilege.USER <= privilege <= Privilege.OEM and 5 <= accumulate <= 1275
                and accumulate % 5 == 0 and 0 <= threshold <= 255 and 0 <= retries <= 7
                and 0 <= interval <= 2550 and interval % 10 == 0):
            raise ValueError("a value out of range")
        return cls(flags[0], flags[1], flags[2], privilege, accumulate // 5, threshold,
                   retries, interval // 10, rate, rate)


#: IPMI SOL bit rate codes -> bits per second (0: the serial port's own setting)
BIT_RATES: dict[int, int | None] = {0x00: None, 0x06: 9600, 0x07: 19200, 0x08: 38400,
                                    0x09: 57600, 0x0A: 115200}
#: the state store's kind of the SOL settings (bmc/state.py); one row, "settings"
SOL_KIND = "sol"


class Viewer:
    """One attachment to a hub: receives output; may type if it is the writer."""

    def __init__(self, hub: ConsoleHub, output: Output, name: str, wants_write: bool) -> None:
        self.hub = hub
        self.output = output
        self.name = name
        self.wants_write = wants_write

    @property
    def is_writer(self) -> bool:
        return self.hub.writer is self

    def write(self, data: bytes) -> bool:
        """Type `data` on the console; False (and dropped) unless this viewer is the writer."""
        return self.hub.write(self, data)

    def detach(self) -> None:
        self.hub.detach(self)


class ConsoleHub:
    """The serial console of one node. Thread-safe."""

    def __init__(self, backend: Backend, *, name: str = "",
                 buffer_size: int = DEFAULT_BUFFER_SIZE, log_path: str | Path | None = None,
                 novnc_url: str | None = None) -> None:
        self.backend = backend
        self.name = name
        self.buffer_size = buffer_size
        self.sol = SolSettings()
        self._state: NodeState | None = None
        #: a VNC/noVNC viewer URL for the graphical console (Redfish GraphicalConsole)
        self.novnc_url = novnc_url
        #: where the WebSocket console listens, once it does (Redfish SerialConsole Oem)
        self.websocket_url: str | None = None
        self._lock = threading.RLock()
        self._buffer = bytearray()
        self._viewers: list[Viewer] = []
        self.writer: Viewer | None = None
        self._log: BinaryIO | None = None
        if log_path is not None:
            try:  # unbuffered: the log is complete even if the emulator is killed
                self._log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - kept open
            except OSError as exc:
                log.warning("%s: cannot open console log %s: %s", name, log_path, exc)
        self.available = backend.attach_console(self._feed)

    def attach_state(self, state: NodeState) -> None:
        """Take back the saved SOL settings (StateError if they make no sense); `save_sol`
        saves them from now on."""
        saved = state.get(SOL_KIND, "settings")
        if saved is not None:
            try:
                self.sol = SolSettings.from_saved(saved)
            except (KeyError, TypeError, ValueError) as exc:
                raise state.error(SOL_KIND, "settings", repr(exc)) from exc
        self._state = state

    def save_sol(self) -> None:
        """The SOL settings changed (IPMI Set SOL Configuration Parameters): save them."""
        if self._state is not None:
            self._state.save(SOL_KIND, "settings", self.sol.saved())

    # -- viewers --------------------------------------------------------------------------------
    def attach(self, output: Output, *, name: str = "", write: bool = True,
               replay: bool = True) -> Viewer:
        """Start sending console output to `output`, the recent output first if `replay`."""
        viewer = Viewer(self, output, name, write)
        with self._lock:
            if replay and self._buffer:
                self._send(viewer, bytes(self._buffer))
            self._viewers.append(viewer)
            if write and self.writer is None:
                self.writer = viewer
        log.debug("%s: console viewer %s attached%s", self.name, name,
                  " (writer)" if viewer.is_writer else "")
        return viewer

    def detach(self, viewer: Viewer) -> None:
        with self._lock:
            if viewer not in self._viewers:
                return
            self._viewers.remove(viewer)
            if self.writer is viewer:
                self.writer = next((v for v in self._viewers if v.wants_write), None)
        log.debug("%s: console viewer %s detached", self.name, viewer.name)

    @property
    def viewers(self) -> list[Viewer]:
        with self._lock:
            return list(self._viewers)

    def write(self, viewer: Viewer, data: bytes) -> bool:
        with self._lock:
            if viewer is not self.writer or not self.available:
                return False
        if data:
            self.backend.write_console(data)
        return True

    def recent(self) -> bytes:
        """The output kept for late viewers."""
        with self._lock:
            return bytes(self._buffer)

    # -- output from the backend ----------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        with self._lock:
            self._buffer += data
            if len(self._buffer) > self.buffer_size:
                del self._buffer[:len(self._buffer) - self.buffer_size]
            if self._log is not None:
                try:
                    self._log.write(data)
                except OSError as exc:
                    log.warning("%s: console log write failed, logging stops: %s",
                                self.name, exc)
                    self._log = None
            for viewer in self._viewers:
                self._send(viewer, data)

    def _send(self, viewer: Viewer, data: bytes) -> None:
        try:
            viewer.output(data)
        except Exception:  # one broken viewer must not starve the others
            log.exception("%s: console viewer %s failed", self.name, viewer.name)

    def close(self) -> None:
        with self._lock:
            self._viewers.clear()
            self.writer = None
            if self._log is not None:
                self._log.close()
                self._log = None
