"""A local stand-in for the Equinix Metal API (no machine here can reach the real one).

    server = MetalApiServer(token="s3cret").start()     # 127.0.0.1, a free port
    device = server.add_device(state="inactive")        # its UUID
    server.url                                          # http://127.0.0.1:PORT/metal/v1
    server.fail(500, count=2); server.fail(429, retry_after=1); server.slow(3); server.drop()
    server.stop(); assert not server.violations

Faithful where the `metal` backend looks: every request is validated against the published
OpenAPI 3 specification in ../shared/metal-api (openapi-core: path, UUID parameters, the
X-Auth-Token security scheme, bodies such as DeviceActionInput and DeviceUpdateInput), and so is
every response this server gives (the Device schema and its nested Facility, Metro, ...; the
Error schema for errors). A request the specification refuses gets 422 and is recorded in
`violations` (our client must never send one); a response the specification refuses is recorded
too (this server's own bug). Tests assert `violations` is empty.

The device state machine follows the specification's `Device.state` description: `power_on`
takes an `inactive` device through `powering_on` to `active`, `power_off` through
`powering_off` to `inactive`, `reboot` through both, `reinstall`/`rescue` through
`reinstalling`; each step takes `transition_delay` seconds (a timer moves it on, so a boot
"prints" on the console even when nobody asks the API). An action that does not fit the state
is a 422, as the real API answers. Each completed boot is recorded in `device.boots` ("pxe"
with `always_pxe`, else "disk") and, with `console_path`, printed there as the server's serial
output would be (the test SOS console shows that file).

Injected failures (what an API gateway does on a bad day): `fail(status)` answers 429 (with
Retry-After), 500, 502, 503, ... with the specification's Error body; `slow(seconds)` delays
answers; `drop()` closes the connection without an answer. Each applies to the next `count`
matching requests. 403 answers a device of another project (`add_device(project=...)`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from flask import Flask, Response, request
from werkzeug.serving import make_server

REPO = Path(__file__).resolve().parents[1]
API_PREFIX = "/metal/v1"
ERROR_STATUSES = {429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
                  503: "Service Unavailable", 504: "Gateway Timeout"}
log = logging.getLogger(__name__)


# -- the specification ------------------------------------------------------------------------
def spec_dir() -> Path:
    """../shared/metal-api beside the repository (CI), or beside the worktree's parent, or
    $METAL_API_SPEC_DIR."""
    candidates = [Path(os.environ["METAL_API_SPEC_DIR"])] if "METAL_API_SPEC_DIR" in os.environ \
        else []
    candidates += [REPO.parent / "shared" / "metal-api",
                   REPO.parent.parent / "shared" / "metal-api"]
    for candidate in candidates:
        if (candidate / "openapi3.yaml").is_file():
            return candidate
    raise FileNotFoundError("the Equinix Metal OpenAPI specification is not in any of "
                            + ", ".join(str(c) for c in candidates))


@cache
def openapi() -> Any:
    """The specification, for openapi-core; also valid for requests to any host."""
    from jsonschema_path import SchemaPath
    from openapi_core import OpenAPI
    from openapi_core.configurations import Config

    root = spec_dir() / "openapi3.yaml"
    document = yaml.safe_load(root.read_text())
    # the one change: where the API is served (the paths and schemas are the published ones)
    local = {"url": API_PREFIX}
    document["servers"] = [local, *document.get("servers", [])]
    # relative $refs resolve against the real file; the specification's own validity is
    # openapi-spec-validator's business (slow), not this server's
    return OpenAPI(SchemaPath.from_dict(document, base_uri=root.resolve().as_uri()),
                   config=Config(spec_validator_cls=None))


@cache
def error_validator() -> Any:
    """The specification's Error schema, for error answers that an operation does not list
    (429 and 5xx: the API's "Errors" section says they carry it)."""
    from openapi_schema_validator import OAS30Validator

    schema = yaml.safe_load((spec_dir() / "components" / "schemas" / "Error.yaml").read_text())
    return OAS30Validator(schema)


# -- the model --------------------------------------------------------------------------------
def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


ACTION_NAMES = {"power_on": "Power On", "power_off": "Power Off", "reboot": "Reboot",
                "rescue": "Rescue", "reinstall": "Reinstall"}
#: the actions each state allows (what `Device.actions` lists)
ALLOWED = {"active": ("power_off", "reboot", "rescue", "reinstall"),
           "inactive": ("power_on", "reinstall")}


@dataclass
class Device:
    id: str
    hostname: str
    state: str
    project: str
    facility: str = "da11"
    always_pxe: bool = False
    ipxe_script_url: str = ""
    locked: bool = False
    description: str = ""
    tags: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    #: the states still to come: (monotonic time, state)
    pending: list[tuple[float, str]] = field(default_factory=list)
    #: one entry per completed boot: "pxe" or "disk" (and the iPXE script URL of a PXE boot)
    boots: list[str] = field(default_factory=list)
    #: the actions performed, in order
    actions: list[str] = field(default_factory=list)

    sos_host: str | None = None  # the `sos` field; default: the facility's SOS host

    @property
    def sos(self) -> str:
        return self.sos_host or f"sos.{self.facility}.platformequinix.com"

    def as_json(self, project_id: str) -> dict[str, Any]:
        """The `Device` the API returns (the fields a real answer has that matter here)."""
        href = f"{API_PREFIX}/devices/{self.id}"
        return {
            "id": self.id, "short_id": self.id[:8], "href": href, "hostname": self.hostname,
            "description": self.description, "state": self.state,
            "always_pxe": self.always_pxe, "ipxe_script_url": self.ipxe_script_url,
            "billing_cycle": "hourly", "locked": self.locked, "network_frozen": False,
            "spot_instance": False, "tags": list(self.tags), "customdata": {},
            "created_at": self.created_at, "updated_at": self.updated_at,
            "facility": {"id": str(uuid.uuid5(uuid.NAMESPACE_DNS, self.facility)),
                         "code": self.facility, "name": f"Facility {self.facility.upper()}",
                         "features": ["baremetal", "layer_2"],
                         "metro": {"code": self.facility[:2], "name": self.facility[:2]}},
            "metro": {"code": self.facility[:2], "name": self.facility[:2]},
            "plan": {"slug": "c3.small.x86", "name": "c3.small.x86"},
            "operating_system": {"slug": "custom_ipxe", "name": "Custom iPXE"},
            "project": {"id": project_id, "href": f"{API_PREFIX}/projects/{project_id}"},
            "actions": [{"type": a, "name": ACTION_NAMES[a]} for a in ALLOWED.get(self.state, ())],
            "ssh_keys": [], "volumes": [], "ip_addresses": [], "network_ports": [],
            "sos": self.sos,
        }


@dataclass
class Fault:
    kind: str  # "status", "slow", "drop"
    count: int
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    method: str | None = None  # only requests with this method (None: any)


class MetalApiServer:
    """The API on 127.0.0.1 (a thread of this process); see the module docstring."""

    def __init__(self, token: str = "test-token", *, transition_delay: float = 0.3,
                 console_path: Path | None = None, host: str = "127.0.0.1") -> None:
        self.token = token
        self.transition_delay = transition_delay
        self.console_path = console_path
        self.host = host
        self.project_id = str(uuid.uuid4())
        self.devices: dict[str, Device] = {}
        self.violations: list[str] = []
        #: (method, path, JSON body or None) of every request, in order
        self.requests: list[tuple[str, str, Any]] = []
        self._faults: list[Fault] = []
        self._timers: list[threading.Timer] = []
        self._lock = threading.RLock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.app = self._make_app()

    # -- setting up -----------------------------------------------------------------------
    def add_device(self, *, state: str = "inactive", hostname: str = "server-1",
                   device_id: str | None = None, project: str | None = None,
                   facility: str = "da11", always_pxe: bool = False,
                   sos: str | None = None) -> str:
        device = Device(device_id or str(uuid.uuid4()), hostname, state,
                        project or self.project_id, facility, always_pxe, sos_host=sos)
        with self._lock:
            self.devices[device.id] = device
        return device.id

    def device(self, device_id: str) -> Device:
        """The device, its pending transitions applied."""
        with self._lock:
            device = self.devices[device_id]
            self._advance(device)
            return device

    def set_state(self, device_id: str, state: str) -> None:
        """Put a device in `state` at once (as if something outside did it)."""
        with self._lock:
            device = self.devices[device_id]
            device.state, device.pending = state, []

    def fail(self, status: int, count: int = 1, *, retry_after: float | str | None = None,
             method: str | None = None) -> None:
        """Answer the next `count` requests with `status` (and Retry-After)."""
        after = None if retry_after is None else (
            retry_after if isinstance(retry_after, str) else f"{retry_after:g}")
        self._add(Fault("status", count, status=status, retry_after=after, method=method))

    def slow(self, seconds: float, count: int = 1, method: str | None = None) -> None:
        """Answer the next `count` requests `seconds` late."""
        self._add(Fault("slow", count, seconds=seconds, method=method))

    def drop(self, count: int = 1, method: str | None = None) -> None:
        """Close the connection of the next `count` requests without answering."""
        self._add(Fault("drop", count, method=method))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method in (None, method):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- running --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    def start(self) -> MetalApiServer:
        openapi()  # loaded before the first request is timed
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
        # werkzeug's server closes every connection after its answer (no keep-alive): the
        # client's connection reuse is not exercised here, its reconnecting is
        self._server = make_server(self.host, 0, self.app, threaded=True)
        self._server.daemon_threads = True
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="metal-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> MetalApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the state machine ----------------------------------------------------------------
    def _advance(self, device: Device) -> None:
        now = time.monotonic()
        while device.pending and device.pending[0][0] <= now:
            _, state = device.pending.pop(0)
            device.state = state
            if state == "active":
                self._booted(device)

    def _booted(self, device: Device) -> None:
        if device.always_pxe:
            boot = f"pxe {device.ipxe_script_url}".strip()
            text = f"iPXE: booting from the network: chain {device.ipxe_script_url or 'dhcp'}"
        else:
            boot, text = "disk", "Booting from the local disk"
        device.boots.append(boot)
        if self.console_path is not None:
            with open(self.console_path, "a") as console:
                console.write(f"{device.hostname}: {text}\n")

    def _perform(self, device: Device, action: str) -> str | None:
        """Start `action`; the reason it cannot be done now (a 422), or None."""
        if action not in ALLOWED.get(device.state, ()):
            return f"Cannot {action.replace('_', ' ')} a device that is {device.state}"
        step, now = self.transition_delay, time.monotonic()
        match action:
            case "power_on":
                device.state, device.pending = "powering_on", [(now + step, "active")]
            case "power_off":
                device.state, device.pending = "powering_off", [(now + step, "inactive")]
            case "reboot":
                device.state = "powering_off"
                device.pending = [(now + step / 2, "powering_on"), (now + step, "active")]
            case _:  # reinstall, rescue
                device.state, device.pending = "reinstalling", [(now + 3 * step, "active")]
        device.actions.append(action)
        device.updated_at = _now()
        self._timers = [t for t in self._timers if t.is_alive()]
        for at, _ in device.pending:
            timer = threading.Timer(at - now + 0.001, self._tick, (device.id,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        return None

    def _tick(self, device_id: str) -> None:
        with self._lock:
            device = self.devices.get(device_id)
            if device is not None:
                self._advance(device)

    # -- HTTP -----------------------------------------------------------------------------
    def _make_app(self) -> Flask:
        app = Flask("metal-api-test-server")
        app.before_request(self._before)
        app.after_request(self._after)

        # the route variables are named as in the specification: openapi-core reads Flask's
        @app.get(f"{API_PREFIX}/devices/<id>")
        def get_device(id: str) -> Response:  # noqa: A002
            return self._with_device(id, lambda d: self._json(d.as_json(self.project_id)))

        @app.put(f"{API_PREFIX}/devices/<id>")
        def update_device(id: str) -> Response:  # noqa: A002
            body = request.get_json()

            def update(device: Device) -> Response:
                for key in ("always_pxe", "ipxe_script_url", "hostname", "description",
                            "locked", "tags"):
                    if key in body:
                        setattr(device, key, body[key])
                device.updated_at = _now()
                return self._json(device.as_json(self.project_id))

            return self._with_device(id, update)

        @app.post(f"{API_PREFIX}/devices/<id>/actions")
        def device_action(id: str) -> Response:  # noqa: A002
            action = request.get_json()["type"]

            def perform(device: Device) -> Response:
                problem = self._perform(device, action)
                if problem:
                    return self._error(422, problem)
                return Response(status=202)

            return self._with_device(id, perform)

        @app.errorhandler(404)
        def not_found(_: Exception) -> Response:
            return self._error(404, "Not found")

        @app.errorhandler(405)
        def not_allowed(_: Exception) -> Response:
            return self._error(405, "Method not allowed")

        return app

    def _with_device(self, device_id: str, then: Callable[[Device], Response]) -> Response:
        with self._lock:
            device = self.devices.get(device_id)
            if device is None or device.state == "deleted":
                return self._error(404, "Not found")
            if device.project != self.project_id:
                return self._error(403, "You are not authorized to view this device")
            self._advance(device)
            return then(device)

    def _before(self) -> Response | None:
        body = request.get_json(silent=True) if request.data else None
        with self._lock:
            self.requests.append((request.method, request.path, body))
        fault = self._take_fault(request.method)
        if fault is not None:
            if fault.kind == "drop":
                sock = request.environ.get("werkzeug.socket")
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)  # the client sees the connection drop
                return Response(status=500)  # never arrives
            if fault.kind == "slow":
                time.sleep(fault.seconds)
            else:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                return self._error(fault.status, ERROR_STATUSES.get(fault.status, "Error"),
                                   headers)
        return self._check_request()

    def _check_request(self) -> Response | None:
        from openapi_core.contrib.flask import FlaskOpenAPIRequest
        from openapi_core.validation.request.exceptions import SecurityValidationError

        try:
            openapi().validate_request(FlaskOpenAPIRequest(request))
        except SecurityValidationError:
            return self._error(401, "Invalid authentication token")
        except Exception as exc:  # what the specification refuses: our client's bug
            detail = f"{type(exc).__name__}: {exc}; {exc.__cause__ or ''}"
            with self._lock:
                self.violations.append(f"request {request.method} {request.path}: {detail}")
            return self._error(422, detail[:500])
        if request.headers.get("X-Auth-Token") != self.token:
            return self._error(401, "Invalid authentication token")
        return None

    def _after(self, response: Response) -> Response:
        """Check the answer against the specification (what this server says must be true)."""
        from openapi_core.contrib.flask import FlaskOpenAPIRequest, FlaskOpenAPIResponse
        from openapi_core.templating.responses.exceptions import ResponseNotFound

        if response.status_code == 500 and not response.data:  # a dropped connection
            return response
        problem = None
        try:
            openapi().validate_response(FlaskOpenAPIRequest(request),
                                        FlaskOpenAPIResponse(response))
        except ResponseNotFound:  # 429/5xx/403: the spec's "Errors" section: an Error body
            errors = list(error_validator().iter_errors(response.get_json(silent=True)))
            if response.status_code < 400 or errors:
                problem = f"{response.status_code} not in the spec: {errors}"
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}; {exc.__cause__ or ''}"
        if problem is not None and not request.path.startswith(API_PREFIX + "/devices/") \
                and response.status_code in (404, 405):
            problem = None  # a path the specification does not serve here: a plain 404
        if problem is not None:
            with self._lock:
                self.violations.append(f"response to {request.method} {request.path}: "
                                       f"{problem}")
        return response

    @staticmethod
    def _json(body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body), status=status, content_type="application/json")

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None
               ) -> Response:
        response = self._json({"errors": [message]}, status)
        response.headers.update(headers or {})
        return response


def main() -> None:
    """Run the server by hand (the README's worked example)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--token", default=os.environ.get("METAL_AUTH_TOKEN", "test-token"))
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--transition-delay", type=float, default=5.0)
    args = parser.parse_args()
    server = MetalApiServer(args.token, transition_delay=args.transition_delay).start()
    for index in range(args.devices):
        print(f"device {server.add_device(hostname=f'server-{index}')}")
    print(f"serving {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
