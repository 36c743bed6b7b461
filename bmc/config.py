"""Runtime configuration: which nodes to emulate, where each listens, and who may log in.

The runtime config is plain dataclasses so that `bmc-emulator serve` without `--config` imports
neither pydantic nor PyYAML (startup time). A YAML file is read by `load_config`
(bmc/config_file.py, which imports both), and every problem of a file is reported in one run as
`file:line: node 'name': field: message`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends import DEFAULT_KIND, known_kinds
from bmc.faults import Faults
from bmc.faults import build as build_faults
from bmc.users import MAX_PASSWORD_BYTES, MAX_USERS, Privilege

if TYPE_CHECKING:
    from bmc.state import Sync

PORT_MIN, PORT_MAX = 1, 65535
#: node names end up in URLs and log lines: keep them to a safe alphabet
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
#: IPMI user IDs 2..MAX_USERS are usable (ID 1 is the reserved anonymous user)
MAX_USERS_PER_NODE = MAX_USERS - 1
#: addresses that bind every interface (of their family), so they clash with any address of
#: that family on the same port (the servers bind IPv6 sockets IPv6-only)
WILDCARDS = frozenset({"0.0.0.0", "::"})
#: IPMI sessions per node: Get Channel Info reports the active count in 6 bits
MAX_IPMI_SESSIONS = 63
MAX_IDLE_TIMEOUT = 86400.0
#: Redfish sessions per node (redfish.auth.DEFAULT_SESSION_LIMIT): a user's share is at most all
MAX_REDFISH_SESSIONS = 64


# -- the runtime config -------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int

    @property
    def host_port(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class UserConfig:
    name: str
    password: str = field(repr=False)  # repr=False: a logged config never shows a password
    privilege: Privilege = Privilege.ADMINISTRATOR


@dataclass(frozen=True)
class ConsoleConfig:
    """A node's serial console (bmc.console): log file, replay buffer, WebSocket listener, and
    the URL of a VNC/noVNC viewer for its graphical console."""

    log: str | None = None  # append everything the console prints to this file; None = off
    buffer_size: int = 64 * 1024  # recent output replayed to a viewer that attaches
    websocket: Endpoint | None = None  # where the WebSocket console listens; None = off
    novnc_url: str | None = None


@dataclass(frozen=True)
class TlsConfig:
    """HTTPS for a node's Redfish service: its own certificate and key, or (None) one the
    emulator makes and signs with its lab CA (redfish/tls.py)."""

    cert: str | None = None
    key: str | None = None
    #: more names (DNS names, IP addresses) a made certificate is valid for
    names: tuple[str, ...] = ()
    #: a plain-HTTP request on the HTTPS port: a 308 to https:// (False: a 400 saying so)
    redirect_http: bool = True


@dataclass
class NodeConfig:
    name: str
    ipmi: Endpoint
    redfish: Endpoint
    users: list[UserConfig]
    backend: str = DEFAULT_KIND
    backend_settings: dict[str, Any] = field(default_factory=dict)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    #: what the BMC says it is: {"vendor": preset, and any of bmc.vendors.IDENTITY_FIELDS}
    identity: dict[str, Any] = field(default_factory=dict)
    #: the sensor profile as bmc.sensors.profile_from_config takes it; None = the default
    sensors: list[dict[str, Any]] | None = None
    #: IPMI sessions open at once, and seconds before an idle one is dropped
    ipmi_session_limit: int = 4
    ipmi_idle_timeout: float = 60.0
    #: the UDP port IPMI SOL announces (Activate Payload, SOL parameter 8): where clients reach
    #: this BMC from outside when a relay or NAT changes the port; None = the bound port
    ipmi_sol_port: int | None = None
    #: IPMI 1.5 "straight password" authentication (the password crosses the wire in clear)
    ipmi_password_auth: bool = False
    #: HTTPS for Redfish; None = plain HTTP
    redfish_tls: TlsConfig | None = None
    #: injected faults (bmc/faults.py); None = none, the default
    faults: Faults | None = None
    #: the config file this node came from and the line of each of its fields ("" = the node),
    #: so that problems found later (a backend refusing its settings) can still point at a line
    source: str | None = None
    lines: dict[str, int] = field(default_factory=dict)
    #: where the backend came from when the node names none: "defaults.backend" (the file) or
    #: "--backend" (the flag); None = the node's own `backend:` (or the built-in default)
    backend_from: str | None = None
    #: fields already reported as wrong: left out of the checks across nodes (a clash with a
    #: port that is itself refused would only be noise)
    unchecked: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @property
    def redfish_url(self) -> str:
        scheme = "https" if self.redfish_tls is not None else "http"
        return f"{scheme}://{self.redfish.host_port}"

    def problem(self, field_name: str, message: str) -> Problem:
        line = self.lines.get(field_name, self.lines.get(""))
        inherited = field_name.split(".", 1)[0] == "backend" and self.backend_from
        if inherited:  # one problem of the shared setting, not one per node that inherits it
            where = self.backend_from + field_name[len("backend"):]
            source = self.source if where.startswith("defaults.") else None
            return Problem(message, source, line if source else None, None, where)
        return Problem(message, self.source, line, self.name, field_name)


@dataclass
class Config:
    nodes: list[NodeConfig]
    source: str | None = None
    #: what the nodes were resolved with; a node added while serving gets the same
    defaults: Defaults | None = None


@dataclass(frozen=True)
class Defaults:
    """What a node gets when it does not say: built-in, then the file's `defaults:`, then flags."""

    bind: str = "127.0.0.1"
    username: str = "admin"
    password: str = field(default="password", repr=False)
    ipmi_port_base: int = 6230
    redfish_port_base: int = 8000
    ipmi_session_limit: int = 4
    ipmi_idle_timeout: float = 60.0
    console_port_base: int | None = None  # WebSocket consoles: off unless a base is given
    #: node i listens on this IPv4 address + i, on the port bases themselves (not base + i)
    address_base: str | None = None
    nodes: int = 3  # only used when no node list is given
    #: the backend of nodes that name none (`defaults.backend`, `--backend`)
    backend: str = DEFAULT_KIND
    backend_settings: dict[str, Any] = field(default_factory=dict)
    backend_from: str | None = None  # see NodeConfig.backend_from
    #: where the emulator keeps what must survive a restart (bmc/state.py); None: nowhere
    state_dir: str | None = None
    #: how far each save goes before the client's answer: "normal" (the kernel: survives a
    #: killed emulator) or "full" (the disk: survives a host's power cut; an fsync each)
    state_sync: Sync = "normal"
    #: HTTPS for the Redfish service of nodes that do not say (`defaults.redfish_tls`, --tls)
    redfish_tls: TlsConfig | None = None
    #: `defaults.faults`, checked (bmc.faults.parse): every node's, under its own `faults:`
    faults: dict[str, Any] | None = None
    #: networks Redfish event subscriptions may push to (None: redfish.destinations' default)
    redfish_event_destinations: list[str] | None = None
    #: Redfish sessions one user may hold per node (None: redfish.auth's default, 16)
    redfish_session_user_limit: int | None = None

    def updated(self, **values: Any) -> Defaults:
        """A copy with every value that is not None replaced."""
        return replace(self, **{k: v for k, v in values.items() if v is not None})


@dataclass(frozen=True)
class Overrides:
    """Command-line flags; None = not given. They override the config file's `defaults:`."""

    nodes: int | None = None
    bind: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ipmi_port_base: int | None = None
    redfish_port_base: int | None = None
    console_port_base: int | None = None
    address_base: str | None = None
    backend: str | None = None  # a backend type; its settings come from the file, if the same
    state_dir: str | None = None
    state_sync: Sync | None = None
    redfish_tls: TlsConfig | None = None  # --tls, --tls-cert/--tls-key

    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}


# -- problems -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config, located as precisely as we know."""

    message: str
    source: str | None = None
    line: int | None = None
    node: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.source:
            parts.append(f"{self.source}:{self.line}" if self.line else self.source)
        if self.node is not None:
            parts.append(f"node '{self.node}'")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class ConfigError(Exception):
    """The config is refused; `problems` says why (each prints as one `error:` line)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(dict.fromkeys(problems))  # nodes sharing a setting share a problem
        super().__init__("\n".join(str(p) for p in self.problems))


# -- value checks, shared by flags and the file schema --------------------------------------------
def check_port(port: int) -> int:
    if not PORT_MIN <= port <= PORT_MAX:
        raise ValueError(f"port {port} is out of range {PORT_MIN}..{PORT_MAX}")
    return port


def check_address(address: str) -> str:
    import ipaddress  # lazily: only configs that set an address pay for it

    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        raise ValueError(f"{address!r} is not an IPv4 or IPv6 address") from None


def check_address_base(address: str) -> str:
    """The first address of `address_base`: IPv4 only (node i gets this address + i)."""
    import ipaddress

    try:
        return str(ipaddress.IPv4Address(address))
    except ValueError:
        raise ValueError(f"{address!r} is not an IPv4 address") from None


def nth_address(base: str, index: int) -> str:
    """`base` + `index`; ValueError past 255.255.255.255 or, from a loopback base, past
    127.255.255.254 (the range must stay on the loopback interface)."""
    import ipaddress

    first = ipaddress.IPv4Address(base)
    last_loopback = ipaddress.IPv4Address("127.255.255.254")
    try:
        address = first + index
    except ipaddress.AddressValueError:
        address = None
    if address is None or (first.is_loopback and address > last_loopback):
        raise ValueError(f"address_base {base} + node index {index} is past the end of "
                         f"{'127.0.0.0/8' if first.is_loopback else 'IPv4'}")
    return str(address)


def check_username(name: str) -> str:
    if not name:
        raise ValueError("must not be empty (anonymous users are not allowed)")
    if len(name.encode()) > 16:  # IPMI user names are 16 bytes
        raise ValueError(f"{name!r} is longer than 16 bytes")
    return name


def check_password(password: str) -> str:
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"longer than {MAX_PASSWORD_BYTES} bytes (the IPMI 2.0 limit)")
    return password


def check_session_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_IPMI_SESSIONS:
        raise ValueError(f"{limit} is out of range 1..{MAX_IPMI_SESSIONS}")
    return limit


def check_idle_timeout(seconds: float) -> float:
    if not 0 < seconds <= MAX_IDLE_TIMEOUT:
        raise ValueError(f"{seconds} is out of range (0, {MAX_IDLE_TIMEOUT:g}] seconds")
    return seconds


def check_buffer_size(size: int) -> int:
    if not 1024 <= size <= 16 * 1024 * 1024:
        raise ValueError(f"{size} is out of range 1024..16777216 bytes")
    return size


def check_networks(networks: list[str]) -> list[str]:
    """Networks such as "10.0.0.0/8" or "192.0.2.7" (host bits are allowed, as in a route)."""
    import ipaddress

    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ValueError(f"{network!r} is not a network such as 10.0.0.0/8 or fd00::/8"
                             ) from None
    return networks


def check_redfish_user_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_REDFISH_SESSIONS:
        raise ValueError(f"{limit} is out of range 1..{MAX_REDFISH_SESSIONS}")
    return limit


def check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return url


def check_vendor(vendor: str) -> str:
    from bmc.vendors import check_vendor as known_vendor  # only a config file needs it

    return known_vendor(vendor)


def check_sensor_profile(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from bmc.sensors import numbered, profile_from_config  # only a config file needs them

    numbered(profile_from_config(items))  # ValueError names the bad entry
    return items


def check_node_name(name: str) -> str:
    if not NODE_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid node name (letters, digits, '.', '_', '-'; "
                         "starting with a letter or digit; at most 63 characters)")
    return name


def check_backend_type(kind: str) -> str:
    if kind not in known_kinds():
        raise ValueError(f"unknown backend type {kind!r} (known: {', '.join(known_kinds())})")
    return kind


def parse_privilege(name: str) -> Privilege:
    """An IPMI privilege name (any case); Redfish's `ReadOnly` role is accepted too."""
    key = name.upper()
    if key == "READONLY":
        return Privilege.USER
    try:
        return Privilege[key]
    except KeyError:
        known = ", ".join(p.name for p in Privilege)
        raise ValueError(f"unknown privilege {name!r} (one of {known})") from None


def check_privilege(name: str) -> str:
    parse_privilege(name)
    return name


def _check_overrides(overrides: Overrides) -> list[Problem]:
    checks = {"bind": check_address, "username": check_username, "password": check_password,
              "address_base": check_address_base, "backend": check_backend_type}
    problems = []
    for name, check in checks.items():
        value = getattr(overrides, name)
        if value is None:
            continue
        try:
            check(value)
        except ValueError as exc:
            problems.append(Problem(str(exc), field=f"--{name}"))
    return problems


def flag_backend_problems(kind: str) -> list[Problem]:
    """`--backend TYPE` gives no settings: refuse a type that cannot do without some."""
    from backends import BackendError, backend_class
    from bmc.backend_settings import required_settings

    try:
        names = required_settings(backend_class(kind))
    except BackendError as exc:
        return [Problem(str(exc), field="--backend")]
    if not names:
        return []
    return [Problem(f"the {kind} backend needs settings ({', '.join(names)}): give it as "
                    f"`defaults.backend: {{type: {kind}, ...}}` in a config file instead",
                    field="--backend")]


# -- building a config --------------------------------------------------------------------------
def default_config(overrides: Overrides | None = None) -> Config:
    """The config without a file: `nodes` memory nodes named node-0.., ports from the bases."""
    overrides = overrides or Overrides()
    _raise_if(_check_overrides(overrides))
    defaults = Defaults().updated(**overrides.given())
    if overrides.backend is not None:
        _raise_if(flag_backend_problems(overrides.backend))
        defaults = replace(defaults, backend_from="--backend")
    nodes, problems = _generated_nodes(defaults)
    _raise_if(problems + check_nodes(nodes))
    return Config(nodes, defaults=defaults)


def _generated_nodes(defaults: Defaults) -> tuple[list[NodeConfig], list[Problem]]:
    nodes, problems = [], []
    for index in range(defaults.nodes):
        name = f"node-{index}"
        ipmi, redfish, endpoint_problems = _endpoints(defaults, index, name)
        problems += endpoint_problems
        websocket, ws_problems = _websocket(defaults, index, name, None)
        problems += ws_problems
        nodes.append(NodeConfig(name, ipmi, redfish,
                                [UserConfig(defaults.username, defaults.password)],
                                backend=defaults.backend,
                                backend_settings=dict(defaults.backend_settings),
                                backend_from=defaults.backend_from,
                                console=ConsoleConfig(websocket=websocket),
                                ipmi_session_limit=defaults.ipmi_session_limit,
                                ipmi_idle_timeout=defaults.ipmi_idle_timeout,
                                redfish_tls=defaults.redfish_tls,
                                faults=build_faults(defaults.faults)))
    return nodes, problems


def _endpoints(defaults: Defaults, index: int, node: str, given: dict[str, Any] | None = None,
               source: str | None = None, lines: dict[str, int] | None = None
               ) -> tuple[Endpoint, Endpoint, list[Problem]]:
    """A node's IPMI and Redfish endpoints: what it set, else bind and base + its index
    (with `address_base`: address_base + its index, on the bases themselves).

    `given` maps "ipmi"/"redfish" to the node's own (possibly partial) settings.
    """
    given, lines = given or {}, lines or {}
    endpoints, problems = [], []
    for proto in ("ipmi", "redfish"):
        own = given.get(proto)
        address = getattr(own, "address", None)
        if address is None and defaults.address_base is not None:
            try:
                address = nth_address(defaults.address_base, index)
            except ValueError as exc:
                line = lines.get(f"{proto}.address", lines.get(""))
                problems.append(Problem(str(exc), source, line, node, f"{proto}.address"))
        address = address or defaults.bind
        port = getattr(own, "port", None)
        if port is None:
            base_name = f"{proto}_port_base"
            base = getattr(defaults, base_name)
            # own addresses (address_base): every node on the same ports, like real BMCs
            port = base if defaults.address_base is not None else base + index
            if port > PORT_MAX:
                message = f"{base_name} {base} + node index {index} = {port} is above {PORT_MAX}"
                line = lines.get(f"{proto}.port", lines.get(""))
                problems.append(Problem(message, source, line, node, f"{proto}.port"))
        endpoints.append(Endpoint(address, port))
    return endpoints[0], endpoints[1], problems


def _websocket(defaults: Defaults, index: int, node: str, own: Any, source: str | None = None,
               lines: dict[str, int] | None = None) -> tuple[Endpoint | None, list[Problem]]:
    """A node's WebSocket console endpoint: its own `console.websocket`, else bind and
    console_port_base + index, else none (the WebSocket console is off)."""
    base = defaults.console_port_base
    if own is None and base is None:
        return None, []
    port = getattr(own, "port", None)
    if port is None:
        line = (lines or {}).get("console.websocket.port", (lines or {}).get(""))
        where = "console.websocket.port"
        if base is None:
            return None, [Problem("required (or set defaults.console_port_base)", source, line,
                                  node, where)]
        port = base + index
        if port > PORT_MAX:
            message = f"console_port_base {base} + node index {index} = {port} is above {PORT_MAX}"
            return None, [Problem(message, source, line, node, where)]
    return Endpoint(getattr(own, "address", None) or defaults.bind, port), []


def check_nodes(nodes: list[NodeConfig]) -> list[Problem]:
    """What is wrong across nodes: a name used twice, an address:port used twice."""
    problems = []
    names: dict[str, NodeConfig] = {}
    for node in nodes:
        if "name" in node.unchecked:
            continue
        if node.name in names:
            first = _where(names[node.name], "name")
            problems.append(node.problem("name", f"duplicate node name (also {first})"))
        names.setdefault(node.name, node)
    # port -> address -> its first user; linear in the node count (10,000 BMCs on their own
    # addresses all share one port)
    taken: dict[int, dict[str, tuple[NodeConfig, str]]] = {}
    for node in nodes:
        endpoints = [("ipmi", node.ipmi), ("redfish", node.redfish)]
        if node.console.websocket is not None:
            endpoints.append(("console.websocket", node.console.websocket))
        for proto, endpoint in endpoints:
            if proto.split(".")[0] in node.unchecked:
                continue
            label = f"{proto}.port"
            users = taken.setdefault(endpoint.port, {})
            clash = _clash(users, endpoint.address)
            if clash is not None:
                message = f"{endpoint.host_port} is already used by {_where(*clash)}"
                problems.append(node.problem(label, message))
            users.setdefault(endpoint.address, (node, label))
    return problems


def _clash(users: dict[str, tuple[NodeConfig, str]], address: str
           ) -> tuple[NodeConfig, str] | None:
    """Who already uses a port that `address` cannot share with them: the same address, or
    either side its family's wildcard."""
    if address in users:
        return users[address]
    v6 = ":" in address
    for wildcard in WILDCARDS:
        if (":" in wildcard) == v6 and wildcard in users:
            return users[wildcard]
    if address in WILDCARDS:
        return next((user for other, user in users.items() if (":" in other) == v6), None)
    return None


def _where(node: NodeConfig, field_name: str) -> str:
    line = node.lines.get(field_name, node.lines.get(""))
    at = f", line {line}" if line else ""
    return f"node '{node.name}' {field_name}{at}"


def _raise_if(problems: list[Problem]) -> None:
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: p.line or 0))


# -- the YAML file ------------------------------------------------------------------------------
def load_config(path: str | Path, overrides: Overrides | None = None) -> Config:
    """Read, check and resolve a YAML config; flags in `overrides` beat its `defaults:`.

    Raises ConfigError with every problem of the file (and of the flags), each naming file,
    line, node and field.
    """
    from bmc.config_file import load_config as load  # pydantic and yaml: only for a file

    return load(path, overrides)


