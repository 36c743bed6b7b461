"""Kept-session IPMI load: one pyghmi client session, `power status` in a bounded loop.

Run as a script in its own interpreter (pyghmi keeps module-global sessions and threads):

    python bench/pyghmi_client.py HOST PORT MAX_COMMANDS MAX_SECONDS [--sha1] [--cpu N]

Prints one JSON line: {"count", "seconds", "latencies_ms"} or {"error"}. Only the standard
library and pyghmi are imported, so any interpreter that has pyghmi can run it.

`--sha1` makes pyghmi propose cipher suite 3 (RAKP-HMAC-SHA1) instead of suite 17 first: its
suite-17 attempt fails against servers that only speak suite 3 (pyghmi's own server, which
VirtualBMC runs, and ipmi_sim here).

`--cpu N` runs the client (and the I/O thread pyghmi starts) on CPU N only. The harness pins
the server to another CPU: pyghmi 1.6.19 sends a request and only then registers the waiter
for its reply, so a reply that its I/O thread reads in between (likely when client and server
share a CPU and the client is preempted right after sending) wakes nobody, and the command
waits for the 0.5-1 s retry timer: a lost wakeup in the client, not a lost packet.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time


def _force_sha1() -> None:
    from pyghmi.ipmi.private import session

    original = session.Session._initsession

    def init_sha1(self: object) -> None:
        original(self)
        self.attemptedhash = 1  # type: ignore[attr-defined]

    session.Session._initsession = init_sha1


def main(argv: list[str]) -> int:
    host, port, max_commands, max_seconds = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    if "--cpu" in argv:  # before pyghmi starts its thread, which inherits the pin
        os.sched_setaffinity(0, {int(argv[argv.index("--cpu") + 1])})
    try:
        if "--sha1" in argv:
            _force_sha1()
        from pyghmi.ipmi import command

        client = command.Command(bmc=host, userid="admin", password="password", port=port,
                                 keepalive=False)
        latencies = []
        started = time.perf_counter()
        deadline = started + max_seconds
        while len(latencies) < max_commands and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            client.get_power()
            latencies.append((time.perf_counter() - t0) * 1000)
        seconds = time.perf_counter() - started
        # the figures are taken; a failed logout changes nothing
        with contextlib.suppress(Exception):
            client.ipmi_session.logout()
        print(json.dumps({"count": len(latencies), "seconds": seconds,
                          "latencies_ms": latencies}))
    except Exception as exc:  # reported by the harness as this figure's failure
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(0)  # pyghmi's I/O thread must not keep the interpreter alive
