"""sushy-tools' `sushy-emulator` as a real Redfish-only BMC for tests: `with SushyEmulator(dir)`.

Its fake driver (one system, state kept in a state directory) with HTTP Basic auth from an
htpasswd file (bcrypt, the only digest it takes). The fake driver applies a power change 1 to
11 s after the request, as slow hardware would: tests wait for it with `wait_power`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import bcrypt
import requests

from bench.util import free_ports, stop_group

HOST = "127.0.0.1"
USERNAME = "admin"
PASSWORD = "sushy-secret-1"
#: the fake driver's only system (sushy-tools' default)
SYSTEM_ID = "27946b59-9e44-4fa7-8e91-f3527a1ef094"
#: the fake driver applies a power change at most this late (random 1..11 s)
POWER_DELAY = 12.0


class SushyEmulator:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def system_url(self) -> str:
        return f"{self.url}/redfish/v1/Systems/{SYSTEM_ID}"

    def system(self) -> dict[str, object]:
        """The system resource as the BMC shows it now."""
        response = requests.get(self.system_url, auth=(USERNAME, PASSWORD), timeout=10)
        response.raise_for_status()
        return response.json()

    def wait_power(self, state: str, timeout: float = POWER_DELAY) -> None:
        deadline = time.monotonic() + timeout
        while self.system()["PowerState"] != state:
            assert time.monotonic() < deadline, f"sushy-emulator not {state} after {timeout}s"
            time.sleep(0.25)

    def start(self) -> SushyEmulator:
        state = self.workdir / "state"
        state.mkdir(exist_ok=True)
        users = self.workdir / "htpasswd"
        digest = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        users.write_text(f"{USERNAME}:{digest}\n")
        config = self.workdir / "sushy.conf"
        config.write_text(f"SUSHY_EMULATOR_STATE_DIR = {str(state)!r}\n"
                          f"SUSHY_EMULATOR_AUTH_FILE = {str(users)!r}\n")
        for attempt in range(3):
            self.port = free_ports("tcp")
            log = open(self.workdir / "sushy.log", "ab")  # noqa: SIM115 - the child's output
            with log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "sushy_tools.emulator.main", "--config", str(config),
                     "-i", HOST, "-p", str(self.port), "--fake"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)
            if self._wait_ready(30.0):
                return self
            self.stop()
            if attempt == 2:
                raise RuntimeError("sushy-emulator did not start:\n"
                                   + (self.workdir / "sushy.log").read_text()[-2000:])
        raise AssertionError("unreachable")

    def _wait_ready(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/redfish/v1/", timeout=1).status_code < 500:
                    return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_group(proc)

    def __enter__(self) -> SushyEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
