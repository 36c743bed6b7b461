"""The `docker` backend: a server is a Docker container.

The container is named in the config (`container:`), or created by the backend from `image:`
(with `command`, `env`, `volumes`, `network`, `labels`, `hostname`) when it does not exist.
Power: on = start, off = kill, soft off = stop (`stop_signal`, then SIGKILL after
`stop_timeout`), reset = kill and start again, power cycle = stop and start, NMI = `nmi_signal`
(no NMI without one). The power state is the container's: one thread per Docker daemon reads
its event stream (`backends/docker_events.py`) so a container stopped, killed, removed or
started from outside is reported at once (`report_power`); the backend's own actions are not
reported twice (events seen while an action runs are ignored, and an event only counts if a
fresh `inspect` disagrees with the state the backend knows).

The container's TTY is the node's serial console (`backends/docker_console.py`): attached
before every start by the backend, so no boot output is lost, and right after a start from
outside.

The boot override reaches the container at the next start in two ways (see the README):
every container gets the file /run/bmc/boot (shell syntax: BMC_BOOT_DEVICE, BMC_BOOT_MODE,
BMC_NODE_NAME, BMC_MEDIA_*), written with `put_archive` before the start; a container the
backend created also gets them as environment variables and labels, which Docker fixes at
create time, so such a container is re-created (its writable layer is lost; keep state in
`volumes`) when they change. Virtual media: a local path or file:// URL is bind-mounted
read-only at /run/bmc/media/<slot> at the next start (only into a container the backend
creates: mounts too are fixed at create time); any other URL is only recorded and passed on
as BMC_MEDIA_<SLOT>_URL in /run/bmc/boot.

Only the Docker socket is needed (`DOCKER_HOST` or `socket:`). Every request has `timeout`
seconds; a daemon that is down gives a BackendError saying so, and the event thread reconnects
with a backoff, resynchronising (and reporting what changed meanwhile) when it is back.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shlex
import signal
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from backends import docker_events
from backends.base import (
    ALL_POWER_OPS,
    Backend,
    BackendError,
    BootDevice,
    Capabilities,
    PowerOp,
    PowerState,
)
from backends.docker_console import ContainerConsole
from backends.settings import seconds as _seconds

log = logging.getLogger(__name__)

#: labels on containers the backend creates (and so may re-create)
OWNER_LABEL = "bmc-emulator.node"
SPEC_LABEL = "bmc-emulator.spec"
BOOT_DEVICE_LABEL = "bmc-emulator.boot-device"
BOOT_MODE_LABEL = "bmc-emulator.boot-mode"
BOOT_FILE = "run/bmc/boot"  # relative to the container's root
MEDIA_DIR = "/run/bmc/media"
DEFAULT_HOST = "unix:///var/run/docker.sock"
WINDOW_SIZE = (24, 80)
#: Docker's container-name syntax
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
_PENDING = "pending"  # a console attached before a start, whose StartedAt is not known yet


@dataclass(frozen=True)
class _Seen:
    """What `inspect` said about the container."""

    exists: bool
    running: bool = False
    started_at: str = ""
    container_id: str = ""

    @property
    def power(self) -> PowerState:
        return PowerState.ON if self.running else PowerState.OFF

    @classmethod
    def of(cls, attrs: dict[str, Any] | None) -> _Seen:
        if attrs is None:
            return cls(exists=False)
        state = attrs.get("State") or {}
        return cls(True, bool(state.get("Running")), state.get("StartedAt") or "",
                   attrs.get("Id") or "")


def _signal_name(value: Any, setting: str) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{setting}: must be a signal name such as SIGTERM, got {value!r}")
    key = value.upper() if value.upper().startswith("SIG") else f"SIG{value.upper()}"
    realtime = re.fullmatch(r"SIGRT(MIN\+|MAX-)(\d+)", key)  # systemd halts on SIGRTMIN+3
    if realtime and int(realtime[2]) <= signal.SIGRTMAX - signal.SIGRTMIN:
        return key
    try:
        return signal.Signals[key].name
    except KeyError:
        raise ValueError(f"{setting}: unknown signal {value!r}") from None


def _str_map(value: Any, setting: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()):
        raise TypeError(f"{setting}: must be a mapping of names to strings")
    return dict(value)


def _str_list(value: Any, setting: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TypeError(f"{setting}: must be a list of strings")
    return list(value)




def _host_url(socket: str | None) -> str | None:
    """`socket:` as a Docker base URL (a bare path is a unix socket); None = the environment."""
    if socket is None:
        return None
    if not isinstance(socket, str) or not socket:
        raise TypeError("socket: must be a path or URL such as unix:///var/run/docker.sock")
    if socket.startswith("/"):
        return f"unix://{socket}"
    if not re.match(r"^(unix|tcp|ssh|https?)://", socket):
        raise ValueError(f"socket: {socket!r} is not a unix socket path or unix://, tcp://, "
                         "ssh:// URL")
    return socket


def _graphical(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("graphical_console: must be a URL such as vnc://dev-server-01:5901")
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme == "vnc" and parts.hostname and port:
        return value
    if parts.scheme in ("http", "https") and parts.hostname:
        return value  # a noVNC page
    raise ValueError(f"graphical_console: {value!r} is not vnc://host:port or an http(s) "
                     "noVNC URL")


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _local_path(image: str) -> str | None:
    """The host path of a local image (an absolute path or file:// URL); None if remote."""
    if image.startswith("/"):
        return image
    parts = urlsplit(image)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise BackendError(f"virtual media: {image!r} names a file on another host")
        return unquote(parts.path)
    return None


class DockerBackend(Backend):
    kind = "docker"

    def __init__(self, *, container: str | None = None, image: str | None = None,
                 command: list[str] | None = None, env: dict[str, str] | None = None,
                 volumes: list[str] | None = None, network: str | None = None,
                 labels: dict[str, str] | None = None, hostname: str | None = None,
                 socket: str | None = None, timeout: float = 5.0,
                 stop_signal: str | None = None, stop_timeout: float = 10.0,
                 nmi_signal: str | None = None, graphical_console: str | None = None,
                 serial_console: bool = True, node_name: str = "") -> None:
        name = container if container is not None else node_name
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValueError(f"container: {name!r} is not a valid container name (letters, "
                             "digits, '_', '.', '-'); set `container:`")
        if image is not None and (not isinstance(image, str) or not image):
            raise TypeError("image: must be an image reference such as debian:bookworm")
        if image is None and container is None:
            raise ValueError("set `container:` (an existing container) or `image:` (the "
                             "backend creates the container)")
        self.container = name
        self.image = image
        self.command = _str_list(command, "command") or None
        self.env = _str_map(env, "env")
        self.volumes = _str_list(volumes, "volumes")
        if network is not None and (not isinstance(network, str) or not network):
            raise TypeError("network: must be a Docker network name")
        self.network = network
        self.labels = _str_map(labels, "labels")
        if hostname is None and HOSTNAME_RE.match(node_name or ""):
            hostname = node_name
        if hostname is not None and (not isinstance(hostname, str)
                                     or not HOSTNAME_RE.match(hostname)):
            raise ValueError(f"hostname: {hostname!r} is not a valid host name")
        self.hostname = hostname
        self.host = _host_url(socket)
        self.timeout = _seconds(timeout, "timeout", 0.1, 300)
        self.stop_signal = None if stop_signal is None else _signal_name(stop_signal,
                                                                         "stop_signal")
        self.stop_timeout = _seconds(stop_timeout, "stop_timeout", 0, 3600)
        self.nmi_signal = None if nmi_signal is None else _signal_name(nmi_signal, "nmi_signal")
        self._graphical = _graphical(graphical_console)
        if not isinstance(serial_console, bool):
            raise TypeError("serial_console: must be true or false")
        self.node_name = node_name or name
        power = ALL_POWER_OPS if self.nmi_signal else ALL_POWER_OPS - {PowerOp.NMI}
        self.capabilities = Capabilities(power=frozenset(power), serial_console=serial_console,
                                         graphical_console=self._graphical is not None,
                                         power_events=True, local_media=True)
        self._lock = threading.RLock()
        self._client: Any = None
        self._events: docker_events.EventStream | None = None
        self._known: _Seen | None = None  # the state last learnt (None: not known)
        self._acting = 0  # our own actions running: events are theirs, not news
        self._generation = 0  # bumped by each action: a slower event's inspect is stale
        self._sink: Callable[[bytes], None] | None = None
        self._console: ContainerConsole | None = None
        self._console_for: str | None = None  # the StartedAt the console belongs to
        self._media: dict[str, str] = {}  # slot -> image (path or URL)
        self._closed = False
        #: the device the last boot by the backend used (tests and logs)
        self.last_boot_device: BootDevice | None = None

    # -- the Docker client ------------------------------------------------------------------
    @property
    def host_key(self) -> str:
        return self.host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST

    def _new_client(self) -> Any:
        import docker  # lazily: only docker nodes pay for the SDK

        if self.host is None:  # DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
            return docker.DockerClient.from_env(timeout=self.timeout)
        return docker.DockerClient(base_url=self.host, timeout=self.timeout)

    def _docker(self) -> Any:
        """The API client (connecting on first use); BackendError if the daemon is away."""
        with self._lock:
            if self._closed:
                raise BackendError("the backend is closed")
            if self._events is None:  # first: it brings the node back when Docker returns
                self._events = docker_events.subscribe(self.host_key, self._new_client,
                                                       self.container, self._on_event)
            if self._client is None:
                try:
                    self._client = self._new_client()
                except Exception as exc:
                    raise self._unreachable(exc) from exc
            return self._client

    def _unreachable(self, exc: BaseException) -> BackendError:
        detail = str(exc).strip() or type(exc).__name__
        if len(detail) > 200:
            detail = detail[:200] + "..."
        return BackendError(f"the Docker daemon at {self.host_key} is not reachable or did "
                            f"not answer within {self.timeout:g}s ({detail})")

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Docker's exceptions as BackendErrors that say what failed."""
        import docker.errors
        import requests.exceptions

        try:
            yield
        except BackendError:
            raise
        except docker.errors.ImageNotFound as exc:
            raise BackendError(f"{what}: image {self.image!r} is not on the Docker host "
                               "(bmc-emulator never pulls: docker pull or build it)") from exc
        except docker.errors.NotFound as exc:
            raise BackendError(f"{what}: container {self.container!r} does not exist") from exc
        except docker.errors.APIError as exc:
            raise BackendError(f"{what}: Docker refused: {exc.explanation or exc}") from exc
        except (requests.exceptions.RequestException, docker.errors.DockerException,
                OSError) as exc:
            raise self._unreachable(exc) from exc

    def _inspect(self) -> dict[str, Any] | None:
        """The container's `inspect` (None if it does not exist)."""
        import docker.errors

        client = self._docker()
        with self._errors(f"inspect {self.container}"):
            try:
                return client.api.inspect_container(self.container)
            except docker.errors.NotFound:
                return None

    # -- power ------------------------------------------------------------------------------
    def power_state(self) -> PowerState:
        with self._lock:
            events = self._events
            connected = events is not None and events.connected
            if connected and self._known is not None:
                return self._known.power  # kept current by the event stream
            generation = self._generation
        seen = _Seen.of(self._inspect())
        if not seen.exists and self.image is None:
            raise BackendError(f"container {self.container!r} does not exist (set `image:` to "
                               "let bmc-emulator create it)")
        if connected:  # else the stream's resync must still compare with the old state
            self._apply(seen, generation=generation)
        else:  # a container already running when we start: its console, now
            self._attach_if_running(seen)
        return seen.power

    def power_on(self, boot_device: BootDevice) -> None:
        with self._action("power on"):
            self._start(boot_device)

    def power_off(self) -> None:
        with self._action("power off"):
            self._kill()

    def soft_off(self) -> None:
        with self._action("soft off"):
            self._stop()

    def reset(self, boot_device: BootDevice) -> None:
        with self._action("reset"):
            self._kill()
            self._start(boot_device)

    def power_cycle(self, boot_device: BootDevice) -> None:
        with self._action("power cycle"):
            self._stop()
            self._start(boot_device)

    def nmi(self) -> None:
        if self.nmi_signal is None:
            raise BackendError(f"container {self.container!r} has no NMI (set nmi_signal)")
        with self._action("NMI"):
            seen = _Seen.of(self._inspect())
            if seen.running:
                self._docker().api.kill(seen.container_id, signal=self.nmi_signal)

    @contextmanager
    def _action(self, what: str) -> Iterator[None]:
        """Run one of our own power actions; its events are not reported as news."""
        self._docker()
        with self._lock:
            self._acting += 1
            self._generation += 1
        try:
            with self._errors(f"{what} {self.container}"):
                yield
        finally:
            try:  # what the action left is the state now, reported by nobody
                self._apply(_Seen.of(self._inspect()), generation=None)
            except BackendError:
                with self._lock:
                    self._known = None
            finally:
                with self._lock:
                    self._acting -= 1
                    self._generation += 1

    def _start(self, boot_device: BootDevice) -> None:
        api = self._docker().api
        attrs = self._prepare(boot_device)
        seen = _Seen.of(attrs)
        if seen.running:
            return
        self._write_boot_file(seen.container_id, boot_device)
        tty = bool(attrs["Config"].get("Tty"))
        self._attach_console(seen.container_id, tty, bool(attrs["Config"].get("OpenStdin")),
                             before_start=True)
        api.start(seen.container_id)
        self.last_boot_device = boot_device
        if tty:
            try:
                api.resize(seen.container_id, height=WINDOW_SIZE[0], width=WINDOW_SIZE[1])
            except Exception as exc:  # noqa: BLE001 - it died at once: the state will say
                log.debug("%s: tty resize failed: %s", self.container, exc)
        log.info("%s: started container %s, boot device %s", self.node_name, self.container,
                 boot_device.value)

    def _kill(self) -> None:
        """Hard power off: SIGKILL, and wait until Docker says it is not running."""
        import docker.errors

        seen = _Seen.of(self._inspect())
        if not seen.running:
            return
        api = self._docker().api
        try:
            api.kill(seen.container_id)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: it stopped meanwhile
                raise
        api.wait(seen.container_id, timeout=self.timeout, condition="not-running")

    def _stop(self) -> None:
        """Graceful: `stop_signal` (else the container's own), SIGKILL after `stop_timeout`."""
        import requests.exceptions

        seen = _Seen.of(self._inspect())
        if not seen.running:
            return
        api = self._docker().api
        if self.stop_signal is None:  # Docker's stop: the container's StopSignal, then KILL
            api.stop(seen.container_id, timeout=max(0, round(self.stop_timeout)))
            return
        api.kill(seen.container_id, signal=self.stop_signal)
        try:
            api.wait(seen.container_id, timeout=self.stop_timeout, condition="not-running")
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            log.info("%s: %s ignored %s for %gs: killing it", self.node_name, self.container,
                     self.stop_signal, self.stop_timeout)
            self._kill()

    # -- creating containers, the boot override and media -----------------------------------
    def _prepare(self, boot_device: BootDevice) -> dict[str, Any]:
        """The container to start: as it is, created, or re-created with a new boot config."""
        attrs = self._inspect()
        if attrs is None:
            if self.image is None:
                raise BackendError(f"container {self.container!r} does not exist (set "
                                   "`image:` to let bmc-emulator create it)")
            return self._create(boot_device)
        labels = attrs["Config"].get("Labels") or {}
        if (labels.get(OWNER_LABEL) == self.node_name and self.image is not None
                and not attrs["State"].get("Running")
                and labels.get(SPEC_LABEL) != self._spec(boot_device)[1]):
            log.info("%s: re-creating container %s for the new boot settings", self.node_name,
                     self.container)
            self._docker().api.remove_container(attrs["Id"], v=True, force=True)
            return self._create(boot_device)
        return attrs

    def _spec(self, boot_device: BootDevice) -> tuple[dict[str, Any], str]:
        """The create arguments for this boot, and their digest (the SPEC_LABEL)."""
        env = {**self._boot_env(boot_device), **self.env}
        volumes = list(self.volumes)
        for slot, image in sorted(self._media.items()):
            path = _local_path(image)
            if path is not None:
                volumes.append(f"{path}:{MEDIA_DIR}/{slot.lower()}:ro")
        labels = {**self.labels, OWNER_LABEL: self.node_name,
                  BOOT_DEVICE_LABEL: boot_device.value,
                  BOOT_MODE_LABEL: "uefi" if self.boot_uefi else "legacy"}
        spec = {"image": self.image, "command": self.command, "environment": env,
                "volumes": volumes, "network": self.network, "labels": labels,
                "hostname": self.hostname, "stop_signal": self.stop_signal}
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        return spec, digest

    def _create(self, boot_device: BootDevice) -> dict[str, Any]:
        spec, digest = self._spec(boot_device)
        spec["labels"][SPEC_LABEL] = digest
        kwargs = {k: v for k, v in spec.items() if v not in (None, [])}
        client = self._docker()
        container = client.containers.create(name=self.container, tty=True, stdin_open=True,
                                             detach=True, **kwargs)
        log.info("%s: created container %s from %s", self.node_name, self.container,
                 self.image)
        return client.api.inspect_container(container.id)

    def _boot_env(self, boot_device: BootDevice) -> dict[str, str]:
        env = {"BMC_BOOT_DEVICE": boot_device.value,
               "BMC_BOOT_MODE": "uefi" if self.boot_uefi else "legacy",
               "BMC_NODE_NAME": self.node_name}
        for slot, image in sorted(self._media.items()):
            key = f"BMC_MEDIA_{re.sub(r'[^A-Z0-9]', '_', slot.upper())}"
            if _local_path(image) is not None:
                env[key] = f"{MEDIA_DIR}/{slot.lower()}"
            else:
                env[f"{key}_URL"] = _without_credentials(image)
        return env

    def _write_boot_file(self, container_id: str, boot_device: BootDevice) -> None:
        """/run/bmc/boot in the container, for the boot about to start."""
        text = "".join(f"{k}={shlex.quote(v)}\n" for k, v in self._boot_env(boot_device).items())
        data = text.encode()
        archive = io.BytesIO()
        now = time.time()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            folder = tarfile.TarInfo(os.path.dirname(BOOT_FILE))
            folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(folder)
            entry = tarfile.TarInfo(BOOT_FILE)
            entry.size, entry.mode, entry.mtime = len(data), 0o644, now
            tar.addfile(entry, io.BytesIO(data))
        import docker.errors

        try:
            self._docker().api.put_archive(container_id, "/", archive.getvalue())
        except docker.errors.APIError as exc:  # a read-only root: the env must do
            log.warning("%s: cannot write /%s into %s: %s", self.node_name, BOOT_FILE,
                        self.container, exc.explanation or exc)

    def media_changed(self, slot: str, image: str | None) -> None:
        if slot not in self.capabilities.media_slots:
            raise BackendError(f"virtual media: no slot {slot!r} (slots: "
                               f"{', '.join(self.capabilities.media_slots)})")
        if image is None:
            with self._lock:
                self._media.pop(slot, None)
            return
        path = _local_path(image)
        if path is not None:
            if not os.path.isfile(path):
                raise BackendError(f"virtual media: {path} is not a file on this host")
            if self.image is None:
                raise BackendError(f"virtual media: a local image is bind-mounted when the "
                                   f"backend creates the container; {self.container!r} is "
                                   "an existing container (set `image:`)")
            attrs = self._inspect()
            if attrs is not None and ((attrs["Config"].get("Labels") or {})
                                      .get(OWNER_LABEL) != self.node_name):
                raise BackendError(f"virtual media: container {self.container!r} was not "
                                   "created by bmc-emulator, so no mount can be added to it")
        with self._lock:
            self._media[slot] = image
        log.info("%s: virtual media %s: %s at the next start", self.node_name, slot,
                 "mounted" if path is not None else "recorded (a remote URL)")

    # -- state from the event stream --------------------------------------------------------
    def _on_event(self, event: dict[str, Any] | None) -> None:
        """Docker says the container changed (None: the stream (re)connected; look)."""
        with self._lock:
            if self._acting or self._closed:
                return  # our own action's doing: it learns the outcome itself
            generation = self._generation
        try:
            seen = _Seen.of(self._inspect())
        except BackendError as exc:
            log.debug("%s: inspect after a Docker event failed: %s", self.node_name, exc)
            return
        self._apply(seen, generation=generation, report=True, event=event)

    def _apply(self, seen: _Seen, *, generation: int | None, report: bool = False,
               event: dict[str, Any] | None = None) -> None:
        """Learn `seen`; report what changed if `report`; (re)attach the console if it runs.

        `generation` is the action count when the inspect began: if an action ran since,
        `seen` may be stale and is dropped (None: the caller is the action itself).
        """
        with self._lock:
            if self._closed:
                return
            if generation is not None and (self._acting or generation != self._generation):
                return
            old, self._known = self._known, seen
        changes: list[tuple[PowerState, str]] = []
        if report and old is not None:
            if old.running and not seen.running:
                changes.append((PowerState.OFF, _off_reason(self.container, seen, event)))
            elif seen.running and not old.running:
                changes.append((PowerState.ON, f"container {self.container} was started "
                                               "from outside"))
            elif seen.running and old.started_at != seen.started_at:
                changes += [(PowerState.OFF, f"container {self.container} was restarted "
                                             "from outside"),
                            (PowerState.ON, f"container {self.container} was started again")]
        for state, reason in changes:
            log.info("%s: %s", self.node_name, reason)
            try:
                self.report_power(state, reason)
            except Exception:  # the node's listeners: not ours to crash on
                log.exception("%s: power-change callback failed", self.node_name)
        self._attach_if_running(seen)

    def _attach_if_running(self, seen: _Seen) -> None:
        """(Re)attach the console if the container runs and nothing is attached to this boot."""
        with self._lock:
            if (self._console_for == _PENDING and self._console is not None
                    and seen.running):
                self._console_for = seen.started_at  # the boot it was attached for
            attach = (seen.running and self._sink is not None and not self._closed
                      and self.capabilities.serial_console
                      and (self._console is None or not self._console.alive
                           or self._console_for != seen.started_at))
        if attach:
            try:
                attrs = self._inspect()
                config = (attrs or {}).get("Config") or {}
                self._attach_console(seen.container_id, bool(config.get("Tty")),
                                     bool(config.get("OpenStdin")), started_at=seen.started_at)
            except Exception as exc:  # noqa: BLE001 - the console is not worth a failure
                log.warning("%s: cannot attach to the console of %s: %s", self.node_name,
                            self.container, exc)

    # -- the serial console -----------------------------------------------------------------
    def attach_console(self, output: Callable[[bytes], None]) -> bool:
        if not self.capabilities.serial_console:
            return False
        with self._lock:
            self._sink = output
            known = self._known
        if known is not None and known.running:
            # already running and known (no event will come to attach it): attach now, off
            # the caller's thread (a Docker call)
            threading.Thread(target=self._attach_if_running, args=(known,), daemon=True,
                             name=f"docker-console-{self.node_name}").start()
        return True  # else the stream attaches when the container runs (or power_state())

    def write_console(self, data: bytes) -> None:
        with self._lock:
            console = self._console
        if console is not None:
            console.write(data)

    def _attach_console(self, container_id: str, tty: bool, stdin: bool, *,
                        before_start: bool = False, started_at: str = "") -> None:
        with self._lock:
            if self._sink is None or not self.capabilities.serial_console or self._closed:
                return
            old, self._console = self._console, None
        if old is not None:
            old.close()
        params = {"stdin": int(stdin), "stdout": 1, "stderr": 1, "stream": 1}
        with self._errors(f"attach to {self.container}"):
            sock = self._docker().api.attach_socket(container_id, params=params)
        console = ContainerConsole(sock, tty=tty, output=self._emit,
                                   name=self.node_name)
        with self._lock:
            if self._closed:
                console.close()
                return
            self._console = console
            self._console_for = _PENDING if before_start else started_at

    def _emit(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None:
            sink(data)

    # -- the graphical console --------------------------------------------------------------
    def graphical_console(self) -> str | None:
        return self._graphical

    # -- closing ----------------------------------------------------------------------------
    def close(self) -> None:
        """Let go of Docker; the container keeps running (a BMC restart is no power cut)."""
        with self._lock:
            self._closed = True
            console, self._console = self._console, None
            events, self._events = self._events, None
            client, self._client = self._client, None
        if events is not None:
            docker_events.unsubscribe(events, self.container, self._on_event)
        if console is not None:
            console.close()
        if client is not None:
            client.close()


def _off_reason(name: str, seen: _Seen, event: dict[str, Any] | None) -> str:
    if not seen.exists:
        return f"container {name} was removed"
    attrs = ((event or {}).get("Actor") or {}).get("Attributes") or {}
    if (event or {}).get("Action") == "die" and "exitCode" in attrs:
        return f"container {name} stopped (exit code {attrs['exitCode']})"
    return f"container {name} stopped"
