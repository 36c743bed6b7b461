"""The `docker` backend against a real Docker daemon (tests/docker_env.py starts one if needed).

No mock of Docker: containers are made from the locally built base image. Daemon outages are
made by a unix-socket relay between the backend and the real daemon (`Relay`): stopping it is
"the daemon went away" for the backend, while the test still reaches the daemon directly.
"""

from __future__ import annotations

import contextlib
import io
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from backends import BackendError, backend_class, create_backend, docker_events
from backends.base import BootDevice, PowerOp, PowerState
from backends.docker import DockerBackend
from tests.console_output import ConsoleOutput
from tests.docker_env import (
    docker_client,
    dockerd_or_skip,
    ensure_base_image,
    ensure_dockerd,
)

TIMEOUT = 15.0
#: the first run on a machine builds the base image (debootstrap, 1-2 min) in a fixture
pytestmark = pytest.mark.timeout(400)
SHELL = ["/bin/bash"]


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def docker_host() -> str:
    return dockerd_or_skip()


@pytest.fixture(scope="module")
def image(docker_host: str) -> str:
    return ensure_base_image()


@pytest.fixture(scope="module")
def client(docker_host: str) -> Iterator[Any]:
    client = docker_client(docker_host)
    yield client
    client.close()


@pytest.fixture
def names(client: Any) -> Iterator[Callable[[], str]]:
    """Unique container names; every container so named is removed at teardown."""
    made: list[str] = []

    def new() -> str:
        made.append(f"bmc-unit-{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield new
    for name in made:
        with contextlib.suppress(Exception):
            client.api.remove_container(name, force=True, v=True)


@pytest.fixture
def backends() -> Iterator[Callable[..., DockerBackend]]:
    """Backends, closed at teardown; each records its power reports in `.reports`."""
    made: list[DockerBackend] = []

    def new(node: str = "node", **settings: Any) -> DockerBackend:
        if "socket" not in settings:  # the test's daemon, whichever DOCKER_HOST says
            settings["socket"] = ensure_dockerd()
        backend = create_backend("docker", settings, node)
        assert isinstance(backend, DockerBackend)
        backend.reports = []  # type: ignore[attr-defined]
        backend.on_power_change = lambda s, r: backend.reports.append((s, r))  # type: ignore
        made.append(backend)
        return backend

    yield new
    for backend in made:
        backend.close()


def wait_until(condition: Callable[[], bool], what: str = "condition") -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def state(client: Any, name: str) -> dict[str, Any]:
    return client.api.inspect_container(name)["State"]


def read_file(client: Any, name: str, path: str) -> str:
    """A file's text from a container (running or not), through the archive API."""
    stream, _ = client.api.get_archive(name, path)
    data = b"".join(stream)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmembers()[0]
        handle = tar.extractfile(member)
        assert handle is not None
        return handle.read().decode()


def has_text(client: Any, name: str, path: str, text: str) -> bool:
    import docker.errors

    try:
        return text in read_file(client, name, path)
    except docker.errors.NotFound:  # not written yet
        return False


def settle() -> None:
    """Give late events of our own actions time to arrive (they must not be reported)."""
    time.sleep(0.5)


class Relay:
    """A unix socket that relays to the real daemon; `stop()` is an outage for its users.

    `hang=True` accepts connections and never answers: a daemon that is stuck.
    """

    def __init__(self, target: str, path: Path, hang: bool = False) -> None:
        self.target = target.removeprefix("unix://")
        self.path = path
        self.hang = hang
        self.url = f"unix://{path}"
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            if self.hang:
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self._lock:
                self._conns.append(upstream)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


# -- settings (no daemon needed) --------------------------------------------------------------
@pytest.mark.parametrize(("settings", "message"), [
    ({}, "set `container:`"),
    ({"container": "bad name!"}, "not a valid container name"),
    ({"image": "x", "stop_signal": "SIGNOPE"}, "unknown signal"),
    ({"image": "x", "nmi_signal": 9}, "signal name"),
    ({"image": "x", "stop_signal": "SIGRTMIN+99"}, "unknown signal"),
    ({"image": "x", "timeout": 0}, "timeout"),
    ({"image": "x", "stop_timeout": -1}, "stop_timeout"),
    ({"image": "x", "graphical_console": "http//nope"}, "graphical_console"),
    ({"image": "x", "graphical_console": "vnc://host"}, "graphical_console"),
    ({"image": "x", "socket": "docker.sock"}, "socket"),
    ({"image": "x", "env": {"A": 1}}, "env"),
    ({"image": "x", "volumes": "/a:/b"}, "volumes"),
    ({"image": "x", "hostname": "under_score"}, "hostname"),
])
def test_bad_settings_are_refused_clearly(settings: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        create_backend("docker", settings, "node")


def test_registered_and_capabilities_follow_the_settings() -> None:
    assert backend_class("docker") is DockerBackend
    plain = create_backend("docker", {"image": "x"}, "node-1")
    assert PowerOp.NMI not in plain.capabilities.power  # no nmi_signal: no NMI
    assert plain.capabilities.serial_console and plain.capabilities.power_events
    assert not plain.capabilities.graphical_console and plain.graphical_console() is None
    full = create_backend("docker", {"container": "dev-server-01", "nmi_signal": "USR1",
                                     "graphical_console": "vnc://dev-server-01:5901",
                                     "serial_console": False}, "node-2")
    assert PowerOp.NMI in full.capabilities.power
    assert full.capabilities.graphical_console
    assert full.graphical_console() == "vnc://dev-server-01:5901"
    assert not full.capabilities.serial_console and not full.attach_console(lambda _: None)
    assert full.container == "dev-server-01" and plain.container == "node-1"


def test_the_readme_example_is_accepted() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### The `docker` backend", 1)[1]
    example = yaml.safe_load(section.split("```yaml", 1)[1].split("```", 1)[0])
    settings = dict(example[0]["backend"])
    assert settings.pop("type") == "docker"
    backend = create_backend("docker", settings, example[0]["name"])
    assert backend.stop_signal == "SIGRTMIN+3"
    assert backend.graphical_console() == "vnc://dev-server-01:5901"


def test_construction_does_not_touch_docker(tmp_path: Path) -> None:
    socket_path = tmp_path / "nothing.sock"
    backend = create_backend("docker", {"image": "x", "socket": str(socket_path)}, "node-n")
    assert f"unix://{socket_path}" not in docker_events.active_streams()
    backend.close()


# -- a daemon that is away --------------------------------------------------------------------
def test_a_missing_daemon_is_a_clear_error_at_once(tmp_path: Path,
                                                   backends: Callable[..., DockerBackend]
                                                   ) -> None:
    backend = backends(image="x", socket=str(tmp_path / "docker.sock"), timeout=2)
    for call in (backend.power_state, lambda: backend.power_on(BootDevice.NONE),
                 backend.power_off):
        started = time.monotonic()
        with pytest.raises(BackendError, match="Docker daemon at unix://.* is not reachable"):
            call()
        assert time.monotonic() - started < 2.0


def test_a_stuck_daemon_costs_at_most_the_timeout(tmp_path: Path, docker_host: str,
                                                  backends: Callable[..., DockerBackend]
                                                  ) -> None:
    relay = Relay(docker_host, tmp_path / "stuck.sock", hang=True)
    relay.start()
    try:
        backend = backends(image="x", socket=relay.url, timeout=1)
        started = time.monotonic()
        with pytest.raises(BackendError, match="did not answer within 1s"):
            backend.power_state()
        assert time.monotonic() - started < 3.0  # the version probe, then no more
    finally:
        relay.stop()


# -- power ------------------------------------------------------------------------------------
def test_power_actions_drive_the_container_and_are_not_reported_as_news(
        client: Any, image: str, names: Callable[[], str],
        backends: Callable[..., DockerBackend]) -> None:
    name = names()
    script = ("trap 'echo nmi >> /tmp/nmi' USR1; trap 'exit 0' TERM; touch /tmp/ready; "
              "while :; do sleep 0.1; done")
    backend = backends(container=name, image=image, command=["/bin/bash", "-c", script],
                       nmi_signal="SIGUSR1", stop_signal="SIGTERM", stop_timeout=5)
    assert backend.power_state() is PowerState.OFF  # no container yet: it is made at power on

    backend.power_on(BootDevice.NONE)
    assert backend.power_state() is PowerState.ON and state(client, name)["Running"]
    first = state(client, name)["StartedAt"]

    wait_until(lambda: has_text(client, name, "/tmp/ready", ""), "the traps")  # else USR1 kills
    backend.nmi()
    wait_until(lambda: has_text(client, name, "/tmp/nmi", "nmi"), "the NMI signal")

    client.containers.get(name).exec_run(["rm", "/tmp/ready"])
    backend.reset(BootDevice.NONE)
    assert state(client, name)["Running"] and state(client, name)["StartedAt"] != first

    wait_until(lambda: has_text(client, name, "/tmp/ready", ""), "the traps")  # else TERM
    started = time.monotonic()
    backend.soft_off()  # the script exits on SIGTERM: no need to wait for SIGKILL
    assert time.monotonic() - started < 4
    assert backend.power_state() is PowerState.OFF and state(client, name)["ExitCode"] == 0

    backend.power_cycle(BootDevice.NONE)
    assert backend.power_state() is PowerState.ON
    backend.power_off()
    assert backend.power_state() is PowerState.OFF
    assert not state(client, name)["Running"] and state(client, name)["ExitCode"] == 137
    settle()
    assert backend.reports == []  # type: ignore[attr-defined]


def test_soft_off_escalates_to_kill_after_the_stop_timeout(
        client: Any, image: str, names: Callable[[], str],
        backends: Callable[..., DockerBackend]) -> None:
    backend = backends(container=names(), image=image, command=SHELL, stop_timeout=1,
                       stop_signal="SIGTERM")  # bash as PID 1 ignores SIGTERM
    backend.power_on(BootDevice.NONE)
    started = time.monotonic()
    backend.soft_off()
    assert 0.9 < time.monotonic() - started < 5
    assert backend.power_state() is PowerState.OFF


def test_changes_from_outside_are_reported_once(client: Any, image: str,
                                                names: Callable[[], str],
                                                backends: Callable[..., DockerBackend]) -> None:
    name = names()
    backend = backends(container=name, image=image, command=SHELL)
    backend.power_on(BootDevice.NONE)
    reports = backend.reports  # type: ignore[attr-defined]

    client.api.kill(name)
    wait_until(lambda: len(reports) >= 1, "the stop report")
    assert reports == [(PowerState.OFF, f"container {name} stopped (exit code 137)")]
    assert backend.power_state() is PowerState.OFF

    client.api.start(name)
    wait_until(lambda: len(reports) >= 2, "the start report")
    assert reports[1] == (PowerState.ON, f"container {name} was started from outside")
    assert backend.power_state() is PowerState.ON

    client.api.restart(name, timeout=0)
    wait_until(lambda: len(reports) >= 4, "the restart reports")
    assert [s for s, _ in reports[2:]] == [PowerState.OFF, PowerState.ON]

    client.api.remove_container(name, force=True)
    wait_until(lambda: len(reports) >= 5, "the removal report")
    assert reports[4] in [(PowerState.OFF, f"container {name} was removed"),  # which comes
                          (PowerState.OFF, f"container {name} stopped (exit code 137)")]
    settle()
    assert len(reports) == 5
    # an image: setting makes a removed container a server that is off, and it comes back
    backend.power_on(BootDevice.NONE)
    assert state(client, name)["Running"]


def test_one_event_thread_per_daemon(image: str, names: Callable[[], str],
                                     backends: Callable[..., DockerBackend]) -> None:
    def event_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("docker-events")]

    before = len(event_threads())
    first = backends("a", container=names(), image=image, command=SHELL)
    second = backends("b", container=names(), image=image, command=SHELL)
    first.power_state()
    second.power_state()
    assert len(event_threads()) - before <= 1
    streams = docker_events.active_streams()
    assert streams[first.host_key] is streams[second.host_key]
    first.close()
    assert first.host_key in docker_events.active_streams()  # the other still listens
    second.close()
    assert first.host_key not in docker_events.active_streams()
    wait_until(lambda: len(event_threads()) == before, "the event thread to end")


def test_missing_container_or_image_is_a_clear_error(image: str, names: Callable[[], str],
                                                     backends: Callable[..., DockerBackend]
                                                     ) -> None:
    named = backends(container=names())
    with pytest.raises(BackendError, match="does not exist .*set `image:`"):
        named.power_state()
    missing = backends(container=names(), image="local/no-such-image-here")
    with pytest.raises(BackendError, match="is not on the Docker host"):
        missing.power_on(BootDevice.NONE)


# -- the serial console -----------------------------------------------------------------------
def test_console_follows_every_start(client: Any, image: str, names: Callable[[], str],
                                     backends: Callable[..., DockerBackend]) -> None:
    name = names()
    backend = backends(container=name, image=image, command=SHELL)
    console = ConsoleOutput(TIMEOUT)
    assert backend.attach_console(console)
    backend.power_on(BootDevice.NONE)
    backend.write_console(b"echo one-$((6*7))\r")
    mark = console.wait_for(b"one-42")

    backend.reset(BootDevice.NONE)  # our restart: attached again before the start
    backend.write_console(b"echo two-$((6*7))\r")
    mark = console.wait_for(b"two-42", mark)

    client.api.restart(name, timeout=0)  # a restart from outside: attached after it
    wait_until(lambda: len(backend.reports) >= 2, "the restart")  # type: ignore[attr-defined]
    deadline = time.monotonic() + TIMEOUT
    while console.data.find(b"three-42", mark) < 0:  # the attach races our typing: retry
        assert time.monotonic() < deadline, bytes(console.data[-500:])
        backend.write_console(b"echo three-$((6*7))\r")
        time.sleep(0.3)


def test_console_of_a_container_without_tty(client: Any, image: str, names: Callable[[], str],
                                            backends: Callable[..., DockerBackend]) -> None:
    name = names()  # made outside the backend: `container:` only, no TTY
    client.api.create_container(image, ["/bin/sh", "-c", "echo hello-out; echo hello-err >&2;"
                                        " exec cat"], name=name, stdin_open=True, tty=False)
    backend = backends(container=name)
    console = ConsoleOutput(TIMEOUT)
    backend.attach_console(console)
    backend.power_on(BootDevice.NONE)
    console.wait_for(b"hello-out")
    console.wait_for(b"hello-err")  # stderr frames too, without their headers
    backend.write_console(b"typed-line\n")
    console.wait_for(b"typed-line\n")
    assert b"\x01\x00\x00\x00" not in console.data


def test_write_console_never_blocks(image: str, names: Callable[[], str],
                                    backends: Callable[..., DockerBackend]) -> None:
    backend = backends(container=names(), image=image, command=["sleep", "infinity"])
    backend.attach_console(lambda _: None)
    backend.power_on(BootDevice.NONE)
    started = time.monotonic()
    for _ in range(256):  # 16 MiB that nobody reads
        backend.write_console(b"x" * 65536)
    assert time.monotonic() - started < 1.0


def test_a_running_container_is_attached_when_the_backend_starts(
        client: Any, image: str, names: Callable[[], str],
        backends: Callable[..., DockerBackend]) -> None:
    name = names()
    client.api.create_container(image, SHELL, name=name, tty=True, stdin_open=True)
    client.api.start(name)
    backend = backends(container=name)
    console = ConsoleOutput(TIMEOUT)
    backend.attach_console(console)
    assert backend.power_state() is PowerState.ON  # the stream's first look attaches
    deadline = time.monotonic() + TIMEOUT
    while b"early-42" not in console.data:
        assert time.monotonic() < deadline, bytes(console.data)
        backend.write_console(b"echo early-$((6*7))\r")
        time.sleep(0.3)


# -- boot override and virtual media ----------------------------------------------------------
def test_boot_override_reaches_a_created_container(client: Any, image: str,
                                                   names: Callable[[], str],
                                                   backends: Callable[..., DockerBackend]
                                                   ) -> None:
    name = names()
    backend = backends("srv-1", container=name, image=image, command=SHELL)
    backend.boot_uefi = True
    backend.power_on(BootDevice.PXE)
    attrs = client.api.inspect_container(name)
    assert "BMC_BOOT_DEVICE=Pxe" in attrs["Config"]["Env"]
    assert "BMC_BOOT_MODE=uefi" in attrs["Config"]["Env"]
    assert attrs["Config"]["Labels"]["bmc-emulator.boot-device"] == "Pxe"
    assert read_file(client, name, "/run/bmc/boot").splitlines() == [
        "BMC_BOOT_DEVICE=Pxe", "BMC_BOOT_MODE=uefi", "BMC_NODE_NAME=srv-1"]
    first_id = attrs["Id"]

    backend.boot_uefi = False
    backend.reset(BootDevice.DISK)  # new boot settings: re-created with them
    attrs = client.api.inspect_container(name)
    assert attrs["Id"] != first_id and "BMC_BOOT_DEVICE=Hdd" in attrs["Config"]["Env"]
    second_id = attrs["Id"]
    backend.reset(BootDevice.DISK)  # the same settings: the same container
    assert client.api.inspect_container(name)["Id"] == second_id
    settle()
    assert backend.reports == []  # type: ignore[attr-defined]


def test_boot_override_reaches_an_existing_container_as_a_file(
        client: Any, image: str, names: Callable[[], str],
        backends: Callable[..., DockerBackend]) -> None:
    name = names()
    made = client.api.create_container(image, SHELL, name=name, tty=True, stdin_open=True)
    backend = backends(container=name, image=image)  # exists: used as it is, never re-created
    backend.power_on(BootDevice.CDROM)
    attrs = client.api.inspect_container(name)
    assert attrs["Id"] == made["Id"]
    assert not any(e.startswith("BMC_") for e in attrs["Config"]["Env"] or [])
    assert "BMC_BOOT_DEVICE=Cd" in read_file(client, name, "/run/bmc/boot")


def test_virtual_media(client: Any, image: str, names: Callable[[], str], tmp_path: Path,
                       backends: Callable[..., DockerBackend]) -> None:
    iso = tmp_path / "install.iso"
    iso.write_bytes(b"ISO-CONTENT-" + uuid.uuid4().hex.encode())
    name = names()
    backend = backends(container=name, image=image, command=SHELL)
    backend.media_changed("Cd", f"file://{iso}")
    backend.media_changed("USBStick", "http://user:secret@example.invalid/stick.img")
    with pytest.raises(BackendError, match="no slot 'Floppy'"):
        backend.media_changed("Floppy", str(iso))
    with pytest.raises(BackendError, match="not a file"):
        backend.media_changed("Cd", str(tmp_path / "missing.iso"))
    backend.power_on(BootDevice.CDROM)
    assert read_file(client, name, "/run/bmc/media/cd") == iso.read_text()
    mount = next(m for m in client.api.inspect_container(name)["Mounts"]
                 if m["Destination"] == "/run/bmc/media/cd")
    assert mount["RW"] is False
    boot = read_file(client, name, "/run/bmc/boot")
    assert "BMC_MEDIA_CD=/run/bmc/media/cd" in boot
    assert "BMC_MEDIA_USBSTICK_URL=http://example.invalid/stick.img" in boot
    assert "secret" not in boot

    backend.media_changed("Cd", None)  # ejected: gone at the next start
    backend.reset(BootDevice.NONE)
    mounts = client.api.inspect_container(name)["Mounts"]
    assert not any(m["Destination"] == "/run/bmc/media/cd" for m in mounts)

    other = names()
    client.api.create_container(image, SHELL, name=other)
    foreign = backends(container=other, image=image)
    with pytest.raises(BackendError, match="not created by bmc-emulator"):
        foreign.media_changed("Cd", str(iso))
    named = backends(container=other)
    with pytest.raises(BackendError, match="set `image:`"):
        named.media_changed("Cd", str(iso))
    named.media_changed("Cd", "https://example.invalid/a.iso")  # a remote URL: recorded


# -- the daemon going away and coming back ----------------------------------------------------
def test_node_comes_back_with_the_daemon(client: Any, image: str, names: Callable[[], str],
                                         tmp_path: Path, docker_host: str,
                                         backends: Callable[..., DockerBackend]) -> None:
    relay = Relay(docker_host, tmp_path / "relay.sock")
    relay.start()
    try:
        name = names()
        backend = backends(container=name, image=image, command=SHELL, socket=relay.url,
                           timeout=2)
        backend.power_on(BootDevice.NONE)
        events = docker_events.active_streams()[relay.url]
        wait_until(lambda: events.connected, "the event stream")

        relay.stop()  # Docker is away (for the backend)
        wait_until(lambda: not events.connected, "the stream to notice")
        started = time.monotonic()
        with pytest.raises(BackendError, match="not reachable"):
            backend.power_state()
        assert time.monotonic() - started < 2.5
        client.api.kill(name)  # meanwhile the server stops

        relay.start()  # Docker is back: the stream reconnects and looks again
        wait_until(lambda: backend.reports, "the state found after the outage")  # type: ignore
        assert backend.reports == [  # type: ignore[attr-defined]
            (PowerState.OFF, f"container {name} stopped")]
        assert backend.power_state() is PowerState.OFF
        backend.power_on(BootDevice.NONE)
        assert state(client, name)["Running"]
    finally:
        relay.stop()


def test_a_daemon_down_at_start_is_picked_up_when_it_comes(
        client: Any, image: str, names: Callable[[], str], tmp_path: Path, docker_host: str,
        backends: Callable[..., DockerBackend]) -> None:
    relay = Relay(docker_host, tmp_path / "late.sock")
    name = names()
    client.api.create_container(image, SHELL, name=name, tty=True, stdin_open=True)
    client.api.start(name)
    backend = backends(container=name, socket=relay.url, timeout=2)
    console = ConsoleOutput(TIMEOUT)
    backend.attach_console(console)
    with pytest.raises(BackendError, match="not reachable"):
        backend.power_state()
    relay.start()
    try:
        events = docker_events.active_streams()[relay.url]
        wait_until(lambda: events.connected, "the event stream (it retries with a backoff)")
        assert backend.power_state() is PowerState.ON
        deadline = time.monotonic() + TIMEOUT  # and its console is attached
        while b"late-42" not in console.data:
            assert time.monotonic() < deadline, bytes(console.data)
            backend.write_console(b"echo late-$((6*7))\r")
            time.sleep(0.3)
    finally:
        relay.stop()
