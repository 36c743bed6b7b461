#!/usr/bin/env python3
"""A file-backed fake server for the `ssh` backend's tests, and a fake serial console.

    fake_server.py DIR on|off|soft|reset|status|nmi     power; `status` prints "on"/"off"
    fake_server.py DIR boot DEVICE MODE                 the boot device of the next boot
    fake_server.py DIR media URL                        insert virtual media
    fake_server.py DIR fail ACTION [exit|hang]          make ACTION fail from now on
    fake_server.py console FILE [BANNER]                a serial console (on a pty)

Server state is files in DIR: `power` ("on"/"off"), `boot` ("DEVICE MODE"), `media`, and
`actions` (one line per command run, for the tests to read); what the server "prints" while it
boots is appended to DIR/console. `console FILE` prints BANNER, then everything appended to
FILE from now on, and answers each line typed with "echo: LINE" (a login-less shell), so a
test sees both directions of a serial console. Standard library only: sshd runs it.
"""

from __future__ import annotations

import os
import select
import sys
import time
from pathlib import Path


def _read(path: Path, default: str = "") -> str:
    return path.read_text().strip() if path.exists() else default


def _say(state: Path, text: str) -> None:
    with open(state / "console", "a") as console:
        console.write(text + "\n")


def _boot(state: Path) -> None:
    device, _, mode = _read(state / "boot", "None legacy").partition(" ")
    (state / "power").write_text("on")
    _say(state, f"fake-server: booting from {device} ({mode})")


def server(state: Path, action: str, args: list[str]) -> int:
    state.mkdir(parents=True, exist_ok=True)
    with open(state / "actions", "a") as log:
        log.write(" ".join([action, *args]) + "\n")
    failing = _read(state / f"fail-{action}")
    if failing == "hang":
        time.sleep(3600)
    if failing:
        print(f"fake-server: {action} is broken", file=sys.stderr)
        return 3
    power = _read(state / "power", "off")
    match action:
        case "status":
            print(f"Power is {power}")
        case "on":
            if power == "off":
                _boot(state)
        case "off":
            (state / "power").write_text("off")
            _say(state, "fake-server: power off")
        case "soft":
            (state / "power").write_text("off")
            _say(state, "fake-server: shutting down (ACPI)")
        case "reset":
            _say(state, "fake-server: reset")
            _boot(state)
        case "nmi":
            _say(state, "fake-server: NMI received")
        case "boot":
            (state / "boot").write_text(" ".join(args[:2]))
        case "media":
            (state / "media").write_text(args[0])
        case "fail":
            (state / f"fail-{args[0]}").write_text(args[1] if len(args) > 1 else "exit")
        case _:
            print(f"fake-server: unknown action {action!r}", file=sys.stderr)
            return 2
    return 0


def console(path: Path, banner: str) -> int:
    """Follow `path` and echo typed lines until stdin closes (the session ends)."""
    out = sys.stdout.buffer
    out.write(banner.encode() + b"\n")
    out.flush()
    position = path.stat().st_size if path.exists() else 0
    pending = b""
    while True:
        ready, _, _ = select.select([0], [], [], 0.05)
        if ready:
            data = os.read(0, 4096)
            if not data:
                return 0
            pending += data.replace(b"\r", b"\n")
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                if line:
                    out.write(b"echo: " + line + b"\n")
        if path.exists() and path.stat().st_size > position:
            with open(path, "rb") as source:
                source.seek(position)
                chunk = source.read()
            position += len(chunk)
            out.write(chunk)
        out.flush()


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "console":
        return console(Path(argv[1]), argv[2] if len(argv) > 2 else "fake console")
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    return server(Path(argv[0]), argv[1], argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
