"""The `metal` backend's SOS console against a real sshd on loopback (the device's UUID as the
login, its ForceCommand a serial console on a pty) and the local Metal API server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.base import BootDevice
from backends.metal import MetalBackend
from tests.console_output import ConsoleOutput
from tests.fake_server import __file__ as FAKE_SERVER
from tests.metal_api_server import MetalApiServer
from tests.sshd_env import Sshd, skip_unless_root

TOKEN = "sos-test-token"
ENV = "BMC_TEST_METAL_TOKEN"
PYTHON = __import__("sys").executable


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MetalApiServer,
                                                                           str, Sshd]]:
    skip_unless_root()
    monkeypatch.setenv(ENV, TOKEN)
    console = tmp_path / "serial"
    console.write_text("")
    api = MetalApiServer(TOKEN, transition_delay=0.2, console_path=console).start()
    device = api.add_device(state="inactive", hostname="sos-box", sos="127.0.0.1")
    sos = f"{PYTHON} {FAKE_SERVER} console {console} 'SOS console of sos-box'"
    sshd = Sshd(tmp_path / "sshd", users=[device], force_command=sos).start()
    yield api, device, sshd
    sshd.stop()
    api.stop()
    assert api.violations == []


def make(api: MetalApiServer, device: str, sshd: Sshd, **settings: object) -> MetalBackend:
    options: dict[str, object] = {
        "sos_host": "127.0.0.1", "sos_port": sshd.port, "sos_key": str(sshd.client_key),
        "sos_known_hosts": str(sshd.known_hosts), **settings}
    return MetalBackend(device_id=device, token_env=ENV, base_url=api.url, node_name="m1",
                        **options)  # type: ignore[arg-type]


def test_the_sos_console_is_the_servers_serial_port(env: tuple[MetalApiServer, str, Sshd]
                                                     ) -> None:
    api, device, sshd = env
    metal = make(api, device, sshd)
    try:
        out = ConsoleOutput(10)
        assert metal.attach_console(out) is True
        out.wait_for(b"SOS console of sos-box")
        metal.power_on(BootDevice.PXE)  # what the server prints while it boots arrives
        out.wait_for(b"sos-box: iPXE: booting from the network")
        metal.write_console(b"hello serial\r")
        out.wait_for(b"echo: hello serial")
        assert f"Accepted publickey for {device}" in sshd.log()
    finally:
        metal.close()


def test_sos_host_auto_comes_from_the_api(env: tuple[MetalApiServer, str, Sshd]) -> None:
    api, device, sshd = env
    metal = make(api, device, sshd, sos_host="auto")
    try:
        out = ConsoleOutput(10)
        metal.attach_console(out)
        out.wait_for(b"SOS console of sos-box")
    finally:
        metal.close()


def test_a_dropped_sos_session_is_opened_again(env: tuple[MetalApiServer, str, Sshd],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    api, device, sshd = env
    monkeypatch.setattr("backends.sshconsole.RETRY_MIN", 0.2)
    metal = make(api, device, sshd)
    try:
        out = ConsoleOutput(10)
        metal.attach_console(out)
        out.wait_for(b"SOS console of sos-box")
        assert sshd.kill_sessions() >= 1
        deadline = time.monotonic() + 10
        while bytes(out.data).count(b"SOS console of sos-box") < 2:
            assert time.monotonic() < deadline, bytes(out.data)
            time.sleep(0.05)
        assert metal._console is not None and metal._console.sessions == 2  # noqa: SLF001
        metal.write_console(b"still here\r")
        out.wait_for(b"echo: still here")
    finally:
        metal.close()


def test_an_unknown_host_key_is_refused(env: tuple[MetalApiServer, str, Sshd],
                                        tmp_path: Path, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    api, device, sshd = env
    other = tmp_path / "other_known_hosts"
    other.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIHbzcnR1HM2LbJsL3Y1Ga4cV1rQ6D7dG9ZX5p3Tw4P8v\n")
    metal = make(api, device, sshd, sos_known_hosts=str(other))
    try:
        out = ConsoleOutput(10)
        metal.attach_console(out)
        deadline = time.monotonic() + 10
        while "cannot open the SOS console" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
        assert "host key" in caplog.text.lower()
        assert out.data == b""
    finally:
        metal.close()
