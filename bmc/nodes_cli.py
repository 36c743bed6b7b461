"""`bmc-emulator nodes list|show|add|remove|faults`: manage the nodes of a running emulator.

Talks to the management API (`bmc.manage`) of a `bmc-emulator serve --manage` on its Unix
socket, like `vbmc add/delete/list` talks to vbmcd. Imports only click until a command runs.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

EXIT_REFUSED = 2  # a node the emulator would not take (like a refused config)
EXIT_UNREACHABLE = 1


def _socket_option(function: Any) -> Any:
    return click.option("--socket", "socket_path", metavar="PATH", envvar="BMC_EMULATOR_SOCKET",
                        show_envvar=True,
                        help="The emulator's management socket.  [default: as `serve "
                             "--manage`]")(function)


def _call(socket_path: str | None, method: str, url: str, body: str | None = None
          ) -> tuple[int, Any]:
    from bmc.manage import ManagementError, default_socket, request

    try:
        return request(socket_path or default_socket(), method, url, body)
    except ManagementError as exc:
        _fail(exc.problems, EXIT_UNREACHABLE)


def _fail(messages: list[str], status: int) -> NoReturn:
    for message in messages:
        click.echo(f"error: {message}", err=True)
    sys.exit(status)


@click.group()
def nodes() -> None:
    """List, show, add and remove the nodes of a running `bmc-emulator serve --manage`, and
    inject faults into them."""


@nodes.command("list")
@_socket_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_nodes(socket_path: str | None, as_json: bool) -> None:
    """Every node: name, power, backend, where IPMI and Redfish listen."""
    from bmc.manage import API

    _status, body = _call(socket_path, "GET", API)
    rows = body["nodes"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = ("NODE", "POWER", "BACKEND", "IPMI (UDP)", "REDFISH")
    table = [header] + [(n["name"], n["power"], n["backend"], n["ipmi"], n["redfish"])
                        for n in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(str(cell).ljust(width) for cell, width
                             in zip(row, widths, strict=True)).rstrip())


@nodes.command("show")
@_socket_option
@click.argument("name")
def show_node(socket_path: str | None, name: str) -> None:
    """One node, as JSON."""
    from bmc.manage import API

    status, body = _call(socket_path, "GET", f"{API}/{name}")
    if status != 200:
        _fail([body.get("error", f"HTTP {status}")], EXIT_UNREACHABLE)
    click.echo(json.dumps(body, indent=2))


@nodes.command("add")
@_socket_option
@click.argument("file", type=click.File("r"))
def add_node(socket_path: str | None, file: Any) -> None:
    """Add the node FILE describes (`-` for standard input): one entry of a config's `nodes:`
    list, in YAML or JSON, checked as the config is (errors name the line and field)."""
    from bmc.manage import API

    status, body = _call(socket_path, "POST", API, file.read())
    if status != 201:
        where = "" if file.name in ("<stdin>", "-") else f"{file.name}: "
        _fail([f"{where}{problem}" for problem in body.get("errors", [f"HTTP {status}"])],
              EXIT_REFUSED)
    click.echo(f"added {body['name']}: IPMI {body['ipmi']}, Redfish {body['redfish']}")


@nodes.command("remove")
@_socket_option
@click.option("--forget", is_flag=True,
              help="Delete its saved state too (--state-dir); by default it is kept, and a "
                   "node of that name added later gets it back.")
@click.argument("name")
def remove_node(socket_path: str | None, name: str, forget: bool) -> None:
    """Remove a node: its sessions, connections and consoles end, its backend is closed."""
    from bmc.manage import API

    status, body = _call(socket_path, "DELETE",
                         f"{API}/{name}" + ("?forget=1" if forget else ""))
    if status != 204:
        _fail([(body or {}).get("error", f"HTTP {status}")], EXIT_UNREACHABLE)
    click.echo(f"removed {name}" + (" and its saved state" if forget else ""))


def _unreachable(_ctx: Any, _param: Any, value: str | None) -> float | bool | None:
    if value is None:
        return None
    if value == "forever":
        return True
        return True
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither seconds nor 'forever'") from None


@nodes.command("faults")
@_socket_option
@click.argument("name")
@click.option("--latency", metavar="SECONDS",
              help="Answer after SECONDS, or after a random time in a range MIN-MAX "
                   "(e.g. 0.2-1.5), on both protocols.")
@click.option("--ipmi-drop", type=float, metavar="PERCENT",
              help="Drop this percentage of the IPMI datagrams the BMC receives.")
@click.option("--redfish-errors", type=float, metavar="PERCENT",
              help="Answer this percentage of Redfish requests with an error.")
@click.option("--redfish-error-status", type=click.Choice(["500", "503"]),
              help="The status of those errors (503 carries Retry-After).  [default: 503]")
@click.option("--stuck-power", is_flag=True,
              help="Accept power actions but never carry them out.")
@click.option("--unreachable", metavar="SECONDS|forever", callback=_unreachable,
              help="Drop IPMI and close Redfish connections for SECONDS (or until cleared).")
@click.option("--seed", type=int, help="Seed the random drops and errors (reproducible runs).")
@click.option("--clear", is_flag=True, help="Remove every fault of the node.")
def node_faults(socket_path: str | None, name: str, latency: str | None,
                ipmi_drop: float | None, redfish_errors: float | None,
                redfish_error_status: str | None, stuck_power: bool,
                unreachable: float | bool | None,
                seed: int | None, clear: bool) -> None:
    """Inject faults into node NAME, replacing those it has (see README "Fault injection");
    without options, show its faults and what they did."""
    from bmc.manage import API

    given = {"latency": latency, "ipmi_drop": ipmi_drop,
             "redfish_error_rate": redfish_errors,
             "redfish_error_status": int(redfish_error_status) if redfish_error_status else None,
             "stuck_power": stuck_power or None,
             "unreachable": unreachable,
             "seed": seed}
    faults = {key: value for key, value in given.items() if value is not None}
    if clear and faults:
        _fail(["--clear takes no other fault option"], EXIT_REFUSED)
    url = f"{API}/{name}/faults"
    if clear:
        status, body = _call(socket_path, "DELETE", url)
    elif faults:
        status, body = _call(socket_path, "PUT", url, json.dumps(faults))
    else:
        status, body = _call(socket_path, "GET", f"{API}/{name}")
    if status == 400:
        _fail(body.get("errors", [f"HTTP {status}"]), EXIT_REFUSED)
    if status != 200:
        _fail([(body or {}).get("error", f"HTTP {status}")], EXIT_UNREACHABLE)
    shown = {"faults": body.get("faults"), "faults_injected": body.get("faults_injected", {})}
    click.echo(json.dumps(shown, indent=2))
