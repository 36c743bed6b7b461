"""The `bmc-emulator` command.

Kept light: heavy modules (pydantic, yaml, the protocol servers) are imported inside the
commands that need them, so `--help` and the default `serve` start fast.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import click

from bmc import __version__

LOG_LEVELS = ("debug", "info", "warning", "error")
EXIT_CONFIG = 2  # like a usage error: nothing was started
EXIT_STARTUP = 1


# no_args_is_help=False: a bare `bmc-emulator` is a usage error (exit 2) whose message ends
# with the hint "Try 'bmc-emulator --help' for help." (click names the first help option)
@click.group(context_settings={"help_option_names": ["--help", "-h"]}, no_args_is_help=False)
@click.version_option(__version__, prog_name="bmc-emulator")
def main() -> None:
    """Emulate BMCs that answer IPMI-over-LAN and Redfish for simulated servers."""


@main.command()
@click.option("--config", "config_file", type=click.Path(path_type=Path), metavar="FILE",
              help="YAML config (nodes, backends, endpoints, users). Default: built-in.")
@click.option("--nodes", type=click.IntRange(min=1), metavar="N",
              help="Number of generated nodes node-0..; refused with a config that lists its "
                   "own nodes.  [default: 3]")
@click.option("--backend", metavar="TYPE",
              help="Backend of every node that names none (generated nodes, and a config's "
                   "nodes without `backend:`): process, memory, or a plug-in's type.  "
                   "[default: the config's defaults.backend, else process]")
@click.option("--bind", metavar="ADDR", help="Default listen address.  [default: 127.0.0.1]")
@click.option("--address-base", metavar="ADDR",
              help="Give node i its own IPv4 address ADDR+i, every node on the same ports "
                   "(the port bases themselves), e.g. 127.0.1.1 with --ipmi-port-base 623.")
@click.option("--ipmi-port-base", type=click.IntRange(1, 65535), metavar="PORT",
              help="IPMI UDP port of the first node; node i gets PORT+i.  [default: 6230]")
@click.option("--redfish-port-base", type=click.IntRange(1, 65535), metavar="PORT",
              help="Redfish TCP port of the first node; node i gets PORT+i.  [default: 8000]")
@click.option("--console-port-base", type=click.IntRange(1, 65535), metavar="PORT",
              help="WebSocket serial console of the first node; node i gets PORT+i.  "
                   "[default: none, no WebSocket consoles]")
@click.option("--username", envvar="BMC_EMULATOR_USERNAME", show_envvar=True, metavar="NAME",
              help="Default BMC user.  [default: admin]")
@click.option("--password", envvar="BMC_EMULATOR_PASSWORD", show_envvar=True,
              metavar="PASSWORD",
              help="Default BMC password.  [default: password]")
@click.option("--shard", envvar="BMC_EMULATOR_SHARD", show_envvar=True, metavar="I/N|NODES",
              help="Serve only part of the fleet: node k when k mod N = I, or the listed "
                   "node names or indices (comma-separated). Nodes keep their fleet ports.")
@click.option("--state-dir", metavar="DIR", envvar="BMC_EMULATOR_STATE_DIR", show_envvar=True,
              help="Keep what the BMCs must remember (users, boot overrides, SELs, BIOS, "
                   "media, ...: README \"State\") in DIR/state.sqlite3 "
                   "across restarts (even kill -9).  [default: the config's "
                   "defaults.state_dir, else none: state is lost on exit]")
@click.option("--state-sync", type=click.Choice(["normal", "full"]),
              help="How far a change goes before the client's answer: the kernel (normal: "
                   "survives a killed emulator) or the disk (full: survives a power cut, an "
                   "fsync per change).  [default: the config's defaults.state_sync, else "
                   "normal]")
@click.option("--tls", is_flag=True, default=None,
              help="Serve Redfish over HTTPS. Without --tls-cert, certificates are made and "
                   "signed by a lab CA kept in STATE_DIR/tls (else ~/.local/state/bmc-emulator/"
                   "tls): trust its ca.pem.  [default: the config's defaults.redfish_tls]")
@click.option("--tls-cert", type=click.Path(dir_okay=False), metavar="FILE",
              help="Certificate (PEM, chain included) of every HTTPS Redfish service; implies "
                   "--tls, needs --tls-key.")
@click.option("--tls-key", type=click.Path(dir_okay=False), metavar="FILE",
              help="Private key (PEM) of --tls-cert.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False),
              default="info", show_default=True, help="Logging to stderr.")
@click.option("--manage", is_flag=True,
              help="Serve the management API (`bmc-emulator nodes ...`) on the default socket.")
@click.option("--manage-socket", metavar="PATH", envvar="BMC_EMULATOR_SOCKET",
              help="Serve the management API on this Unix socket (implies --manage).")
def serve(config_file: Path | None, nodes: int | None, backend: str | None, bind: str | None,
          address_base: str | None, ipmi_port_base: int | None, redfish_port_base: int | None,
          console_port_base: int | None, username: str | None,
          password: str | None, log_level: str, manage: bool,
          manage_socket: str | None, shard: str | None = None,
          state_dir: str | None = None, state_sync: str | None = None,
          tls: bool | None = None, tls_cert: str | None = None,
          tls_key: str | None = None) -> None:
    """Serve IPMI and Redfish for every node until SIGINT or SIGTERM.

    Flags override the config file's `defaults:`; a node's own settings win over both.
    """
    from bmc.config import ConfigError, Overrides, TlsConfig, default_config, load_config

    logging.basicConfig(stream=sys.stderr, level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = Overrides(nodes=nodes, bind=bind, username=username, password=password,
                          ipmi_port_base=ipmi_port_base, redfish_port_base=redfish_port_base,
                          console_port_base=console_port_base, address_base=address_base,
                          backend=backend, state_dir=state_dir, state_sync=state_sync)
    if (tls_cert is None) != (tls_key is None):
        _fail(["--tls-cert and --tls-key go together"], EXIT_CONFIG)
    if tls or tls_cert:
        overrides = replace(overrides, redfish_tls=TlsConfig(cert=tls_cert, key=tls_key))
    try:
        if config_file is None:
            config = default_config(overrides)
        else:
            config = load_config(config_file, overrides)
    except ConfigError as exc:
        _fail([str(p) for p in exc.problems], EXIT_CONFIG)
    if shard is not None:  # bmc/shard.py: this process's slice of a fleet shared by several
        from bmc.shard import ShardError, select
        try:
            config.nodes = select(config.nodes, shard)
        except ShardError as exc:
            _fail([f"--shard: {exc}"], EXIT_CONFIG)

    from bmc.serve import StartupError, run

    if manage and not manage_socket:
        from bmc.manage import default_socket

        manage_socket = default_socket()
    try:
        status = run(config, manage_socket=manage_socket)
    except ConfigError as exc:  # a backend refused its settings
        _fail([str(p) for p in exc.problems], EXIT_CONFIG)
    except StartupError as exc:
        _fail([str(exc)], EXIT_STARTUP)
    sys.exit(status)


def _fail(messages: list[str], status: int) -> NoReturn:
    for message in messages:
        click.echo(f"error: {message}", err=True)
    sys.exit(status)


def _add_commands() -> None:
    from bmc.agent_config import agent_config  # imports only click: `--help` stays fast
    from bmc.nodes_cli import nodes

    main.add_command(agent_config)
    main.add_command(nodes)


_add_commands()

if __name__ == "__main__":
    main(prog_name="bmc-emulator")
