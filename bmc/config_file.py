"""Reading a YAML config file: every problem of the file reported in one run.

Each part is checked on its own, so one problem does not hide another: the top level, the
`defaults:`, every node (a node with a bad field is still checked against the others, without
that field), every backend's settings against the schema its constructor declares
(bmc/backend_settings.py), and the checks across nodes (names and ports used twice). When the
file has problems, the backends whose settings passed their schema are also built once (and
closed) so that what only a constructor checks comes out in the same run.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from bmc.backend_settings import check_settings, trial_settings, try_backend
from bmc.config import (
    MAX_USERS_PER_NODE,
    Config,
    ConfigError,
    ConsoleConfig,
    Defaults,
    NodeConfig,
    Overrides,
    Problem,
    TlsConfig,
    UserConfig,
    _check_overrides,
    _endpoints,
    _generated_nodes,
    _raise_if,
    _websocket,
    check_address,
    check_address_base,
    check_backend_type,
    check_buffer_size,
    check_idle_timeout,
    check_networks,
    check_node_name,
    check_nodes,
    check_password,
    check_port,
    check_privilege,
    check_redfish_user_limit,
    check_sensor_profile,
    check_session_limit,
    check_url,
    check_username,
    check_vendor,
    flag_backend_problems,
    parse_privilege,
)
from bmc.faults import build as build_faults
from bmc.messages import value_kind

#: `defaults:` keys that every derived endpoint depends on: with one of them refused, clashes
#: between derived endpoints would be guesses, so they are not reported
_ENDPOINT_DEFAULTS = frozenset({"bind", "address_base", "ipmi_port_base", "redfish_port_base",
                                "console_port_base"})
#: node fields that the checks across nodes read
_CROSS_CHECKED = frozenset({"name", "ipmi", "redfish", "console"})
#: the node fields whose line is remembered for problems found after validation
_NODE_FIELDS = ("name", "backend", "users", "identity", "sensors", "ipmi.port", "redfish.port",
                "console.websocket.port")


def load_config(path: str | Path, overrides: Overrides | None = None) -> Config:
    """Read, check and resolve a YAML config; flags in `overrides` beat its `defaults:`.

    Raises ConfigError with every problem found, each naming file, line, node and field.
    """
    source = str(path)
    overrides = overrides or Overrides()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(f"cannot read config: {_strerror(exc)}", source)]) from None
    try:
        root, data = _parse_yaml(text)
    except yaml.MarkedYAMLError as exc:  # nothing else can be checked in a file that won't parse
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        text = ": ".join(filter(None, [exc.context, exc.problem]))
        raise ConfigError([Problem(f"YAML syntax: {text}", source, line)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(f"YAML: {exc}", source)]) from None
    return _FileCheck(_Locator(source, root, data), overrides).run()


def load_node(text: str, source: str, defaults: Defaults, index: int
              ) -> tuple[NodeConfig | None, list[Problem]]:
    """One node, as a `nodes:` entry of a config file would be (YAML or JSON), resolved with
    `defaults` as the node at `index` (for generated ports and addresses); and every problem,
    lines counted in `text`. The node is None only if too little of it could be read; checks
    across nodes are the caller's (with the node, even when it has problems of its own)."""
    # as the one entry of a `nodes:` list: the same schema, messages and line numbers + 1
    lines = text.splitlines(keepends=True) or ["{}"]
    document = "nodes:\n" + "".join(("- " if i == 0 else "  ") + line
                                    for i, line in enumerate(lines))
    try:
        root, data = _parse_yaml(document)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line if mark else None  # 0-based in the document = 1-based in text
        detail = ": ".join(filter(None, [exc.context, exc.problem]))
        return None, [Problem(f"YAML syntax: {detail}", source, line)]
    check = _FileCheck(_AddedNodeLocator(source, root, data, index), Overrides())
    raw = data["nodes"][0] if isinstance(data, dict) and data.get("nodes") else None
    if not isinstance(raw, dict):
        return None, [Problem("a node is a mapping with at least `name:`", source, 1)]
    node = check.node(raw, index, defaults, _file_schema())
    if check.problems and node is not None:
        check.try_backends([node], defaults)
    return node, [replace(p, line=p.line - 1 if p.line else p.line) for p in check.problems]


class _FileCheck:
    """One pass over a parsed file that collects every problem before giving a verdict."""

    def __init__(self, locate: _Locator, overrides: Overrides) -> None:
        self.locate, self.overrides = locate, overrides
        self.problems: list[Problem] = _check_overrides(overrides)
        self.problems += [locate(loc, "duplicate key (the later value would win silently)")
                          for loc in _duplicate_keys(locate.root)]
        #: backends to build once if the file has problems: (kind, settings, node)
        self.trials: list[tuple[str, dict[str, Any], NodeConfig]] = []
        #: what to build `defaults.backend` with on trial; None = it cannot be
        self.defaults_trial: dict[str, Any] | None = {}

    def run(self) -> Config:
        models = _file_schema()
        data = {} if self.locate.data is None else self.locate.data
        top, bad = self.validate(models.FileModel, data, ())
        if top is None:  # not even a mapping
            _raise_if(self.problems)
        defaults, endpoints_guessed = self.defaults(top, models)
        nodes: list[NodeConfig] = []
        if "nodes" in bad:
            pass  # `nodes:` is not a list of at least one node: nothing to resolve
        elif top.nodes is None:  # a file with only `defaults:` gets the generated node list
            nodes, problems = _generated_nodes(defaults)
            self.problems += problems
        else:
            if self.overrides.nodes is not None:
                self.problems.append(self.nodes_flag_refused(len(top.nodes)))
            for index, raw in enumerate(top.nodes):
                node = self.node(raw, index, defaults, models)
                if node is not None:
                    nodes.append(node)
        backend_lines = self.backend_lines(("defaults", "backend"))
        for node in nodes:
            if endpoints_guessed:
                node.unchecked = node.unchecked | {"ipmi", "redfish", "console"}
            if node.backend_from == "defaults.backend":  # its problems point at the defaults
                node.source = self.locate.source
                node.lines.update(backend_lines)
        self.problems += check_nodes(nodes)
        if self.problems:
            self.try_backends(nodes, defaults)
        _raise_if(self.problems)
        return Config(nodes, self.locate.source, defaults)

    def validate(self, model: Any, raw: Any, loc: tuple[Any, ...]) -> tuple[Any, set[Any]]:
        """`raw` as `model`, or (when it has problems, recorded here) the model of what is
        left without the keys that had them; None if even that fails. Also the bad keys."""
        try:
            return model.model_validate(raw), set()
        except ValidationError as exc:
            errors = exc.errors()
        self.problems += [self.locate((*loc, *e["loc"]), message(e)) for e in errors]
        bad = {e["loc"][0] for e in errors if e["loc"]}
        if not isinstance(raw, dict) or not bad:
            return None, bad
        try:
            return model.model_validate({k: v for k, v in raw.items() if k not in bad}), bad
        except ValidationError:
            return None, bad

    def defaults(self, top: Any, models: Any) -> tuple[Defaults, bool]:
        """The file's defaults under the flags; and whether derived endpoints are guesses."""
        parsed, bad = models.DefaultsModel(), set()
        if "defaults" in top.model_fields_set:
            parsed, bad = self.validate(models.DefaultsModel, top.defaults, ("defaults",))
            if parsed is None:
                parsed, bad = models.DefaultsModel(), {"*"}
        values = parsed.model_dump(exclude_none=True,
                                   exclude={"backend", "redfish_tls", "faults"})
        values["faults"] = self.faults(parsed.faults, ("defaults", "faults"))
        defaults = Defaults().updated(**values)
        if parsed.redfish_tls is not None:
            defaults = replace(defaults, redfish_tls=tls_config(parsed.redfish_tls, None))
        if parsed.backend is not None:
            settings = dict(parsed.backend.model_extra or {})
            self.defaults_trial = self.backend_settings(parsed.backend.type, settings,
                                                        ("defaults", "backend"))
            defaults = replace(defaults, backend=parsed.backend.type, backend_settings=settings,
                               backend_from="defaults.backend")
        elif bad & {"backend", "*"}:  # refused: nodes that would inherit it are not tried
            self.defaults_trial = None
            defaults = replace(defaults, backend_from="defaults.backend")
        flag = self.overrides.given()
        kind = flag.pop("backend", None)
        defaults = defaults.updated(**flag)
        if kind is not None and kind != defaults.backend:  # the file's settings are for another
            defaults = replace(defaults, backend=kind, backend_settings={},
                               backend_from="--backend")
            if not self.problems_of("--backend"):  # a known type: does it need settings?
                self.problems += flag_backend_problems(kind)
            self.defaults_trial = None  # the flag's problems are reported with the flags
        return defaults, bool(bad & (_ENDPOINT_DEFAULTS | {"*"}))

    def faults(self, raw: dict[str, Any] | None, loc: tuple[Any, ...]) -> dict[str, Any] | None:
        """A `faults:` mapping checked (bmc/faults.py): its values; problems recorded here."""
        if raw is None:
            return None
        from bmc.faults import parse

        values, found = parse(raw)
        self.problems += [self.locate((*loc, key) if key else loc, text) for key, text in found]
        return values

    def problems_of(self, field_name: str) -> list[Problem]:
        return [p for p in self.problems if p.field == field_name]

    def backend_lines(self, loc: tuple[Any, ...]) -> dict[str, int]:
        """The line of a `backend:` and of each of its keys, as NodeConfig.lines has them."""
        lines = {"backend": self.locate.line(loc)}
        raw = self.locate.value(loc)
        for key in raw if isinstance(raw, dict) else ():
            lines[f"backend.{key}"] = self.locate.line((*loc, key))
        return {k: v for k, v in lines.items() if v is not None}

    def backend_settings(self, kind: str, settings: dict[str, Any],
                         loc: tuple[Any, ...]) -> dict[str, Any] | None:
        """Check `settings` against backend `kind`'s schema; the settings to build it with on
        trial (without refused ones, which take their defaults), None if it cannot be."""
        found = check_settings(kind, settings)
        self.problems += [self.locate((*loc, *where), text) for where, text in found]
        return trial_settings(kind, settings, found)

    def nodes_flag_refused(self, count: int) -> Problem:
        line = self.locate.line(("nodes",))
        return Problem(f"refused: {self.locate.source} lists its own nodes ({count} at line "
                       f"{line}); --nodes N only sets how many nodes are generated for a config "
                       "without a `nodes:` list", field="--nodes")

    def node(self, raw: Any, index: int, defaults: Defaults, models: Any) -> NodeConfig | None:
        loc = ("nodes", index)
        spec, bad = self.validate(models.NodeModel, raw, loc)
        if spec is None and isinstance(raw, dict) and "name" in bad:
            # a bad or missing name: the rest of the node is still checked against the others
            rest = {k: v for k, v in raw.items() if k not in bad}
            try:
                spec = models.NodeModel.model_validate({**rest, "name": "stand-in"})
            except ValidationError:
                return None
            name = raw.get("name")
            spec.name = name if isinstance(name, str) else f"nodes[{index}]"
        if spec is None:
            return None
        node, problems = _file_node(spec, index, defaults, self.locate)
        self.problems += problems
        if defaults.faults or spec.faults is not None:
            node.faults = build_faults(defaults.faults,
                                       self.faults(spec.faults, (*loc, "faults")))
        node.unchecked = frozenset(bad & _CROSS_CHECKED)
        if spec.backend is not None:  # its own: checked here (an inherited one is, once)
            node.lines.update(self.backend_lines((*loc, "backend")))
            trial = self.backend_settings(node.backend, node.backend_settings, (*loc, "backend"))
            if trial is not None:
                self.trials.append((node.backend, trial, node))
        elif "backend" in bad:  # refused: not built on trial
            node.backend_from = None
        return node

    def try_backends(self, nodes: list[NodeConfig], defaults: Defaults) -> None:
        """Build each backend whose settings passed once, for what only its constructor checks."""
        trials = list(self.trials)
        inherit = next((n for n in nodes if n.backend_from == "defaults.backend"), None)
        if inherit is not None and self.defaults_trial is not None:
            trials.append((defaults.backend, self.defaults_trial, inherit))
        for kind, settings, node in trials:
            for where, text in try_backend(kind, settings, node.name):
                self.problems.append(node.problem(_join_loc(("backend", *where)), text))


def _file_node(spec: Any, index: int, defaults: Defaults,
               locate: _Locator) -> tuple[NodeConfig, list[Problem]]:
    lines = {"": locate.line(("nodes", index))}
    for name in _NODE_FIELDS:
        lines[name] = locate.line(("nodes", index, *name.split(".")))
    lines = {k: v for k, v in lines.items() if v is not None}
    ipmi, redfish, problems = _endpoints(defaults, index, spec.name,
                                         {"ipmi": spec.ipmi, "redfish": spec.redfish},
                                         locate.source, lines)
    if spec.users is None:
        users = [UserConfig(defaults.username, defaults.password)]
    else:
        users = [UserConfig(u.name, u.password, parse_privilege(u.privilege))
                 for u in spec.users]
    own = spec.ipmi
    limit = own.session_limit if own and own.session_limit is not None else None
    idle = own.idle_timeout if own and own.idle_timeout is not None else None
    sol_port = own.sol_port if own else None
    password_auth = bool(own and own.password_auth)
    tls = defaults.redfish_tls
    if spec.redfish is not None and spec.redfish.tls is not None:
        tls = tls_config(spec.redfish.tls, defaults.redfish_tls)
    console = spec.console
    websocket, ws_problems = _websocket(defaults, index, spec.name, console and console.websocket,
                                        locate.source, lines)
    problems += ws_problems
    if spec.backend is not None:
        backend = spec.backend.type, dict(spec.backend.model_extra or {}), None
    else:
        backend = defaults.backend, dict(defaults.backend_settings), defaults.backend_from
    node = NodeConfig(spec.name, ipmi, redfish, users, backend=backend[0],
                      backend_settings=backend[1], backend_from=backend[2],
                      console=ConsoleConfig(
                          log=console and console.log, websocket=websocket,
                          buffer_size=(console and console.buffer_size) or 64 * 1024,
                          novnc_url=console and console.novnc_url),
                      identity=spec.identity.model_dump(exclude_none=True)
                      if spec.identity else {},
                      sensors=spec.sensors,
                      ipmi_session_limit=limit or defaults.ipmi_session_limit,
                      ipmi_idle_timeout=idle or defaults.ipmi_idle_timeout,
                      ipmi_sol_port=sol_port, ipmi_password_auth=password_auth,
                      redfish_tls=tls, source=locate.source, lines=lines)
    return node, problems



def tls_config(given: Any, inherited: TlsConfig | None) -> TlsConfig | None:
    """`tls: false` -> None; `tls: true` -> the defaults' HTTPS, else a made certificate."""
    if not given.enabled:
        return None
    if not given.model_fields_set - {"enabled"}:  # `tls: true`
        return inherited or TlsConfig()
    return TlsConfig(cert=given.cert, key=given.key, names=tuple(given.names),
                     redirect_http=given.redirect_http)


def _strerror(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers) and the plain data, from one parse."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return root, data


def _duplicate_keys(node: yaml.Node | None, loc: tuple[Any, ...] = ()) -> Iterator[tuple]:
    """The locations of mapping keys given twice (PyYAML would keep the last one silently)."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and name in seen:
                yield (*loc, name)
            seen.add(name)
            yield from _duplicate_keys(value, (*loc, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*loc, index))


class _Locator:
    """Turns a location in the data (a pydantic `loc`) into a Problem with file and line."""

    def __init__(self, source: str, root: yaml.Node | None, data: Any) -> None:
        self.source, self.root, self.data = source, root, data

    def line(self, loc: tuple[Any, ...]) -> int | None:
        """The line of the deepest part of `loc` found in the YAML (a key's own line if known)."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                # the last match: with a duplicate key, PyYAML keeps the later value too
                pairs = [(k, v) for k, v in node.value
                         if isinstance(k, yaml.ScalarNode) and k.value == part]
                if not pairs:
                    break
                key, node = pairs[-1]
                line = key.start_mark.line + 1
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                    and 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def value(self, loc: tuple[Any, ...]) -> Any:
        """The parsed value at `loc`, or None."""
        value = self.data
        for part in loc:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                return None
        return value

    def __call__(self, loc: tuple[Any, ...], message: str) -> Problem:
        node, rest = None, tuple(loc)
        if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
            name = self._node_name(loc[1])
            if name is not None:
                node, rest = name, tuple(loc[2:])
        field_name = _join_loc(rest) or None
        return Problem(message, self.source, self.line(tuple(loc)), node, field_name)

    def _node_name(self, index: int) -> str | None:
        nodes = self.data.get("nodes") if isinstance(self.data, dict) else None
        if isinstance(nodes, list) and 0 <= index < len(nodes) and isinstance(nodes[index], dict):
            name = nodes[index].get("name")
            return name if isinstance(name, str) else None
        return None


class _AddedNodeLocator(_Locator):
    """The one node of `load_node`: first in its document, node `index` to the checks (its
    generated ports and addresses are the `index`-th)."""

    def __init__(self, source: str, root: yaml.Node | None, data: Any, index: int) -> None:
        super().__init__(source, root, data)
        self.index = index

    def _here(self, loc: tuple[Any, ...]) -> tuple[Any, ...]:
        return ("nodes", 0, *loc[2:]) if tuple(loc[:2]) == ("nodes", self.index) else loc

    def line(self, loc: tuple[Any, ...]) -> int | None:
        return super().line(self._here(loc))

    def value(self, loc: tuple[Any, ...]) -> Any:
        return super().value(self._here(loc))

    def _node_name(self, index: int) -> str | None:
        return super()._node_name(0 if index == self.index else index)


def _join_loc(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def message(error: dict[str, Any]) -> str:
    """pydantic's message, reworded where it would puzzle someone editing YAML."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind in ("model_type", "dict_type"):
        return f"must be a mapping (key: value), got {value_kind(error.get('input'))}"
    text = error["msg"]
    if kind.endswith("_type"):
        text += f", got {value_kind(error.get('input'))}"
    return text


#: what a certificate can name: a DNS name (wildcards too) or an IPv4/IPv6 address
_TLS_NAME = re.compile(r"[A-Za-z0-9*]([A-Za-z0-9.*-]{0,252})|[0-9A-Fa-f:.]{2,45}")


@functools.cache
def _file_schema() -> Any:
    """The pydantic models of the YAML file: the top level, `defaults:` and a node, each
    validated on its own (`_FileCheck`). A function so that they are built only once, when
    a file is first read."""
    from types import SimpleNamespace

    from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

    # strict: YAML turns `password: 0123` into an int; refuse it rather than guess
    closed = ConfigDict(extra="forbid", strict=True)

    class EndpointModel(BaseModel):
        model_config = closed
        address: str | None = None
        port: int | None = None

        _address = field_validator("address")(_optional(check_address))
        _port = field_validator("port")(_optional(check_port))

    class TlsModel(BaseModel):
        model_config = closed
        enabled: bool = True
        cert: str | None = Field(default=None, min_length=1)
        key: str | None = Field(default=None, min_length=1)
        names: list[str] = Field(default_factory=list)
        redirect_http: bool = True

        @field_validator("names")
        @classmethod
        def _names(cls, names: list[str]) -> list[str]:
            for name in names:
                if not _TLS_NAME.fullmatch(name):
                    raise ValueError(f"{name!r} is not a DNS name or an IP address")
            return names

        @model_validator(mode="after")
        def _pair(self) -> TlsModel:
            if (self.cert is None) != (self.key is None):
                raise ValueError("cert and key go together (give both, or neither for a "
                                 "certificate the emulator makes)")
            for what, path in (("cert", self.cert), ("key", self.key)):
                if path is not None and not os.path.isfile(path):
                    raise ValueError(f"{what}: {path}: no such file")
            return self

    def _tls_shorthand(value: Any) -> Any:
        # `tls: true` / `tls: false` are short for the mapping (one schema, one error each)
        return {"enabled": value} if isinstance(value, bool) else value

    class RedfishEndpointModel(EndpointModel):
        #: true: HTTPS with a made certificate; a mapping: HTTPS as it says; false: plain HTTP
        tls: TlsModel | None = None

        _tls = field_validator("tls", mode="before")(classmethod(
            lambda cls, value: _tls_shorthand(value)))

    class IpmiEndpointModel(EndpointModel):
        session_limit: int | None = None
        idle_timeout: float | None = None
        sol_port: int | None = None
        password_auth: bool | None = None

        _limit = field_validator("session_limit")(_optional(check_session_limit))
        _sol_port = field_validator("sol_port")(_optional(check_port))
        _idle = field_validator("idle_timeout")(_optional(check_idle_timeout))

    class ConsoleModel(BaseModel):
        model_config = closed
        log: str | None = None
        buffer_size: int | None = None
        websocket: EndpointModel | None = None
        novnc_url: str | None = None

        _buffer = field_validator("buffer_size")(_optional(check_buffer_size))
        _url = field_validator("novnc_url")(_optional(check_url))

    class UserModel(BaseModel):
        model_config = closed
        name: str
        password: str
        privilege: str = "ADMINISTRATOR"

        _name = field_validator("name")(_plain(check_username))
        _password = field_validator("password")(_plain(check_password))
        _privilege = field_validator("privilege")(_plain(check_privilege))

    class IdentityModel(BaseModel):
        model_config = closed
        vendor: str = "generic"
        manufacturer: str | None = None
        product: str | None = None
        serial: str | None = None
        firmware_version: str | None = None
        manufacturer_id: int | None = Field(default=None, ge=0, le=0xFFFFF)  # 20 bits
        product_id: int | None = Field(default=None, ge=0, le=0xFFFF)

        _vendor = field_validator("vendor")(_plain(check_vendor))

    class BackendModel(BaseModel):
        # open: the keys other than `type` are the backend's own settings, checked against
        # the schema of the backend's constructor (bmc/backend_settings.py)
        model_config = ConfigDict(extra="allow", strict=True)
        type: str

        _type = field_validator("type")(_plain(check_backend_type))

    class NodeModel(BaseModel):
        model_config = closed
        name: str
        backend: BackendModel | None = None  # None: `defaults.backend`, else the default
        ipmi: IpmiEndpointModel | None = None
        redfish: RedfishEndpointModel | None = None
        console: ConsoleModel | None = None
        identity: IdentityModel | None = None
        sensors: list[dict[str, Any]] | None = None
        faults: dict[str, Any] | None = None  # checked by bmc.faults.parse, key by key
        users: list[UserModel] | None = Field(default=None, min_length=1,
                                              max_length=MAX_USERS_PER_NODE)

        _name = field_validator("name")(_plain(check_node_name))
        _sensors = field_validator("sensors")(_optional(check_sensor_profile))

        @field_validator("users")
        @classmethod
        def _unique_users(cls, users: list[UserModel] | None) -> list[UserModel] | None:
            names = [u.name for u in users or []]
            duplicates = sorted({n for n in names if names.count(n) > 1})
            if duplicates:
                raise ValueError(f"user {duplicates[0]!r} is listed twice")
            return users

    class DefaultsModel(BaseModel):
        model_config = closed
        bind: str | None = None
        username: str | None = None
        password: str | None = None
        ipmi_port_base: int | None = None
        redfish_port_base: int | None = None
        console_port_base: int | None = None
        ipmi_session_limit: int | None = None
        ipmi_idle_timeout: float | None = None
        address_base: str | None = None
        backend: BackendModel | None = None
        state_dir: str | None = Field(default=None, min_length=1)
        state_sync: Literal["normal", "full"] | None = None
        redfish_event_destinations: list[str] | None = None
        redfish_session_user_limit: int | None = None
        redfish_tls: TlsModel | None = None
        faults: dict[str, Any] | None = None

        _tls = field_validator("redfish_tls", mode="before")(classmethod(
            lambda cls, value: _tls_shorthand(value)))

        _bind = field_validator("bind")(_optional(check_address))
        _address_base = field_validator("address_base")(_optional(check_address_base))
        _limit = field_validator("ipmi_session_limit")(_optional(check_session_limit))
        _idle = field_validator("ipmi_idle_timeout")(_optional(check_idle_timeout))
        _username = field_validator("username")(_optional(check_username))
        _password = field_validator("password")(_optional(check_password))
        _ports = field_validator("ipmi_port_base", "redfish_port_base",
                                 "console_port_base")(_optional(check_port))
        _networks = field_validator("redfish_event_destinations")(_optional(check_networks))
        _user_limit = field_validator("redfish_session_user_limit")(
            _optional(check_redfish_user_limit))

    class FileModel(BaseModel):
        model_config = closed
        defaults: Any = None  # a DefaultsModel, and each node a NodeModel, validated alone
        nodes: list[Any] | None = Field(default=None, min_length=1)

    return SimpleNamespace(FileModel=FileModel, DefaultsModel=DefaultsModel, NodeModel=NodeModel)


def _plain(check: Any) -> Any:
    """A pydantic validator (classmethod) that runs one of the checks above."""
    return classmethod(lambda cls, value: check(value))


def _optional(check: Any) -> Any:
    return classmethod(lambda cls, value: value if value is None else check(value))
