"""The static BMC registration a management platform's local agent reads, from our own config.

Two shapes (see the agent's format): the long `static.hosts` form (every control endpoint, the
SOL endpoint and the VNC endpoint of each server) and the short `bmc_hosts` form (one entry
per control endpoint). Addresses are those the *agent* dials, which are not always those the
emulator binds: inside the lab's Compose network it dials a service name (the emulator's, or
a per-BMC relay name such as `dev-virtualbmc-01`) at the container ports; on the host it dials
127.0.0.1 at the published ports. `View` says which.
"""

from __future__ import annotations

import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click

if TYPE_CHECKING:  # bmc.config is imported when the command runs: `bmc-emulator` stays light
    from bmc.config import Config, NodeConfig, UserConfig

Form = Literal["static", "bmc_hosts"]

IPMI_CAPABILITIES = ["chassis", "sel", "sdr", "fru", "lan"]
REDFISH_CAPABILITIES = ["Systems", "Chassis", "Managers", "SessionService", "EventService"]
SOL_CONFIG = {"baud_rate": 115200, "timeout_seconds": 300}
#: what a template may use: the node's name, its 0-based index and 1-based number
TEMPLATE_FIELDS = frozenset({"name", "index", "number"})


class AgentConfigError(ValueError):
    """The registration cannot be written as asked (a bad template, an unknown address)."""


@dataclass(frozen=True)
class View:
    """Where the agent stands: how it reaches each node. None = what the node's config says.

    An address may be a template (`dev-virtualbmc-{number:02d}`): then every node has its own
    host and the port bases are its ports as they are (like real BMCs, all on 623), instead
    of base + node index.
    """

    address: str | None = None
    ipmi_address: str | None = None
    redfish_address: str | None = None
    ipmi_port_base: int | None = None
    redfish_port_base: int | None = None
    #: noVNC websockify URL of the first node, `ws://HOST:PORT/PATH`; node i gets PORT + i
    #: (or a template with {name}/{index}/{number}, used as it is)
    novnc: str | None = None
    #: the IPMI port the host publishes for the first node (metadata.external_port)
    external_ipmi_port_base: int | None = None
    customer_id: str = "system"
    location: str = "lab"


def _fill(template: str, node: NodeConfig, index: int) -> str:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        unknown = names - TEMPLATE_FIELDS
        if unknown:
            raise AgentConfigError(f"{template!r}: unknown field {sorted(unknown)[0]!r} "
                                   f"(use {{name}}, {{index}} or {{number}})")
        return template.format(name=node.name, index=index, number=index + 1)
    except (ValueError, IndexError, KeyError) as exc:
        if isinstance(exc, AgentConfigError):
            raise
        raise AgentConfigError(f"{template!r} is not a valid template: {exc}") from None


def _is_template(value: str) -> bool:
    return "{" in value


def _host(value: str) -> str:
    return f"[{value}]" if ":" in value else value


def _endpoint(view: View, node: NodeConfig, index: int, proto: str) -> tuple[str, int]:
    """The host and port the agent dials for `proto` ("ipmi"/"redfish") of node `index`."""
    from bmc.config import WILDCARDS

    own = node.ipmi if proto == "ipmi" else node.redfish
    address = getattr(view, f"{proto}_address") or view.address
    base = getattr(view, f"{proto}_port_base")
    if address is None:
        if own.address in WILDCARDS:
            raise AgentConfigError(
                f"node '{node.name}' {proto} listens on {own.address}, every address: say "
                "which one the agent dials (--address, or --ipmi-address/--redfish-address)")
        address = own.address
    if _is_template(address):
        host = _fill(address, node, index)
        return host, base if base is not None else own.port
    return address, base + index if base is not None else own.port


def _admin(node: NodeConfig) -> UserConfig:
    """The user the agent logs in as: the first administrator, else the first user."""
    from bmc.users import Privilege

    return next((u for u in node.users if u.privilege == Privilege.ADMINISTRATOR),
                node.users[0])


def _credentials(node: NodeConfig, secrets: bool) -> dict[str, str]:
    user = _admin(node)
    return {"username": user.name, "password": user.password} if secrets else \
        {"username": user.name}


def _novnc(view: View, node: NodeConfig, index: int) -> str | None:
    if view.novnc is None:
        return None
    if _is_template(view.novnc):
        return _fill(view.novnc, node, index)
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(view.novnc)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise AgentConfigError(f"--novnc {view.novnc!r} is not a ws:// or wss:// URL")
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError as exc:
        raise AgentConfigError(f"--novnc {view.novnc!r}: {exc}") from None
    netloc = f"{_host(parts.hostname)}:{port + index}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/websockify", parts.query, ""))


def _model(node: NodeConfig) -> str:
    from bmc.vendors import PRESETS

    identity = node.identity or {}
    preset = PRESETS.get(identity.get("vendor", "generic"), PRESETS["generic"])
    return str(identity.get("product") or preset.product)


def _has_serial_console(node: NodeConfig) -> bool:
    from backends import create_backend

    # capabilities may depend on the settings (per instance); a constructor never connects
    backend = create_backend(node.backend, dict(node.backend_settings), node.name)
    try:
        return backend.capabilities.serial_console
    finally:
        backend.close()


def _features(node: NodeConfig, vnc: str | None) -> list[str]:
    features = ["power"]
    if _has_serial_console(node):
        features.append("console")
    if vnc:
        features.append("vnc")
    return [*features, "sensors"]


def static_hosts(config: Config, view: View, secrets: bool = True) -> dict[str, Any]:
    """The long form: `{"static": {"hosts": [...]}}`, one host per node."""
    hosts = []
    for index, node in enumerate(config.nodes):
        ipmi_host, ipmi_port = _endpoint(view, node, index, "ipmi")
        rf_host, rf_port = _endpoint(view, node, index, "redfish")
        ipmi = f"{_host(ipmi_host)}:{ipmi_port}"
        tls = node.redfish_tls is not None
        scheme = "https" if tls else "http"
        creds = _credentials(node, secrets)
        vnc = _novnc(view, node, index)
        metadata = {"location": view.location, "model": _model(node)}
        if view.external_ipmi_port_base is not None:
            metadata["external_port"] = str(view.external_ipmi_port_base + index)
        host: dict[str, Any] = {
            "id": node.name,
            "customer_id": view.customer_id,
            "features": _features(node, vnc),
            "metadata": metadata,
            "control_endpoints": [
                {"endpoint": ipmi, "type": "ipmi", **creds,
                 "capabilities": list(IPMI_CAPABILITIES)},
                {"endpoint": f"{scheme}://{_host(rf_host)}:{rf_port}", "type": "redfish",
                 **creds, "capabilities": list(REDFISH_CAPABILITIES),
                 # the format names no CA file: an agent that has not installed the lab CA
                 # (or the site's) can only skip the check
                 "tls": {"enabled": tls, "insecure_skip_verify": True}},
            ],
        }
        if "console" in host["features"]:
            host["sol_endpoint"] = {"type": "ipmi", "endpoint": ipmi, **creds,
                                    "config": dict(SOL_CONFIG)}
        if vnc:
            host["vnc_endpoint"] = {"type": "novnc_proxy", "endpoint": vnc}
        hosts.append(host)
    return {"static": {"hosts": hosts}}


def bmc_hosts(config: Config, view: View, secrets: bool = True) -> dict[str, Any]:
    """The short form: an IPMI entry (id: the node's name) and a Redfish entry (id: name +
    `-redfish`) per node, each with its one control endpoint."""
    entries = []
    for host in static_hosts(config, view, secrets)["static"]["hosts"]:
        for endpoint in host["control_endpoints"]:
            short = {k: v for k, v in endpoint.items() if k in
                     ("endpoint", "type", "username", "password")}
            suffix = "" if endpoint["type"] == "ipmi" else f"-{endpoint['type']}"
            entries.append({"id": host["id"] + suffix, "control_endpoint": short})
    return {"bmc_hosts": entries}


def render(config: Config, view: View, form: Form = "static", secrets: bool = True) -> str:
    """The registration as YAML text (keys in the agent's order)."""
    import yaml

    data = (static_hosts if form == "static" else bmc_hosts)(config, view, secrets)
    header = ("# BMC registration for the local agent, written by `bmc-emulator agent-config`"
              + ("" if secrets else " (--no-secrets: passwords left out)") + "\n")
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


# -- the command ---------------------------------------------------------------------------------
def _env(name: str) -> str:
    return f"BMC_AGENT_{name}"


@click.command("agent-config")
@click.option("--config", "config_file", type=click.Path(path_type=Path), metavar="FILE",
              envvar="BMC_EMULATOR_CONFIG", show_envvar=True,
              help="The emulator's YAML config.  [default: built-in]")
@click.option("--form", type=click.Choice(["static", "bmc_hosts"]), default="static",
              show_default=True, help="static.hosts (long) or bmc_hosts (short).")
@click.option("--address", envvar=_env("ADDRESS"), show_envvar=True, metavar="HOST",
              help="Host the agent dials for every node, e.g. the emulator's service name "
                   "or 127.0.0.1; a template such as 'bmc-{number:02d}' gives each node its own. "
                   "[default: each node's listen address]")
@click.option("--ipmi-address", envvar=_env("IPMI_ADDRESS"), show_envvar=True, metavar="HOST",
              help="Like --address, for IPMI only.")
@click.option("--redfish-address", envvar=_env("REDFISH_ADDRESS"), show_envvar=True,
              metavar="HOST", help="Like --address, for Redfish only.")
@click.option("--ipmi-port-base", type=click.IntRange(1, 65535), envvar=_env("IPMI_PORT_BASE"),
              show_envvar=True, metavar="PORT",
              help="IPMI port the agent dials for the first node; node i: PORT+i (PORT itself "
                   "with a per-node address template).  [default: each node's port]")
@click.option("--redfish-port-base", type=click.IntRange(1, 65535),
              envvar=_env("REDFISH_PORT_BASE"), show_envvar=True, metavar="PORT",
              help="Like --ipmi-port-base, for Redfish.")
@click.option("--novnc", envvar=_env("NOVNC"), show_envvar=True, metavar="URL",
              help="noVNC websockify of the first node, ws://HOST:PORT/websockify; node i "
                   "gets PORT+i (or a template with {name}, {index}, {number}).  "
                   "[default: no VNC endpoint]")
@click.option("--external-ipmi-port-base", type=click.IntRange(1, 65535),
              envvar=_env("EXTERNAL_IPMI_PORT_BASE"), show_envvar=True, metavar="PORT",
              help="IPMI port the host publishes for the first node (metadata.external_port).")
@click.option("--customer-id", default="system", show_default=True, metavar="ID")
@click.option("--location", default="lab", show_default=True, metavar="TEXT")
@click.option("--no-secrets", is_flag=True, help="Leave passwords out.")
def agent_config(config_file: Path | None, form: Form, address: str | None,
                 ipmi_address: str | None, redfish_address: str | None,
                 ipmi_port_base: int | None, redfish_port_base: int | None, novnc: str | None,
                 external_ipmi_port_base: int | None, customer_id: str, location: str,
                 no_secrets: bool) -> None:
    """Print the static BMC registration a local agent reads (YAML), from the config."""
    from bmc.config import ConfigError, default_config, load_config

    try:
        config = default_config() if config_file is None else load_config(config_file)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    view = View(address=address, ipmi_address=ipmi_address, redfish_address=redfish_address,
                ipmi_port_base=ipmi_port_base, redfish_port_base=redfish_port_base,
                novnc=novnc, external_ipmi_port_base=external_ipmi_port_base,
                customer_id=customer_id, location=location)
    try:
        text = render(config, view, form, secrets=not no_secrets)
    except AgentConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(text, nl=False)
