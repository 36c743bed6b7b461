"""HTTPS side by side: bmc-emulator (`serve --tls`) and sushy-emulator (`--ssl-certificate`).

    python -m bench.https [--seconds 5] [--concurrency 16]

Both serve one system with one certificate signed by one CA (made here), on 127.0.0.1, server
and client pinned to different CPUs. Each is measured these ways, with the same client (wrk
when installed, one thread; else a Python client):
GET of the System over plain HTTP and over HTTPS with kept-alive connections, and over HTTPS
with a new connection (a full TLS handshake) for every request; also the RSS after the runs.
The figures are requests/s, p50 and p99, and our ratio to the peer. sushy-emulator runs with
no authentication (its Basic auth checks bcrypt per request); ours checks Basic auth on every
request, so the comparison favours the peer.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import httpload, install, peers
from bench.measure import system_path
from bench.probes import PASSWORD, USERNAME, http_status
from bench.targets import compile_checkout, our_env
from bench.util import HOST, REPO, Proc, free_ports, pinned, poll_until, rss_mib, start, two_cpus

MODES = ("http keep-alive", "https keep-alive", "https new connection")


@dataclass
class Figures:
    server: str
    mode: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@contextlib.contextmanager
def _serving(cmd: list[str], log: Path, port: int, tls: ssl.SSLContext | None,
             env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[Proc]:
    proc = start(cmd, log, env=env, cwd=cwd)
    try:
        if not poll_until(lambda: http_status(HOST, port, "/redfish/v1", tls=tls) == 200 or None,
                          time.monotonic() + 60, interval=0.1):
            raise RuntimeError(f"{cmd[0]} did not answer on {port}: {proc.log_tail(10)}")
        yield proc
    finally:
        proc.stop(timeout=10)


def _measure(server: str, proc: Proc, urls: dict[str, str], auth: tuple[str, str] | None,
             client: ssl.SSLContext, args: argparse.Namespace) -> list[Figures]:
    """The modes against one server (`urls`: a System on "http" and on "https", if it has)."""
    figures = []
    cpus = two_cpus()
    for mode in MODES:
        target = urls.get(mode.split()[0])
        if target is None:
            continue
        with _pinned_apart(proc.pid, cpus):
            fresh = mode.endswith("new connection")
            if httpload.have_wrk():  # a C client: the Python one tops out near 2,000 req/s
                result = httpload.wrk(target, concurrency=args.concurrency,
                                      seconds=args.seconds, auth=auth, close=fresh)
            else:
                result = httpload.python_load(target, concurrency=args.concurrency,
                                              seconds=args.seconds, auth=auth,
                                              max_requests=200_000, tls=client, fresh=fresh)
        figures.append(Figures(server, mode, result.rps, result.p50_ms, result.p99_ms,
                               result.errors))
    return figures


@contextlib.contextmanager
def _pinned_apart(pid: int, cpus: tuple[int, int] | None) -> Iterator[None]:
    """The server on one CPU, this client (its threads start later) on the other."""
    if cpus is None:
        yield
        return
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[1]})
    try:
        with pinned(pid, cpus[0]):
            yield
    finally:
        os.sched_setaffinity(0, mine)


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[Figures], dict[str, float | None]]:
    from redfish.tls import CertificateAuthority

    authority = CertificateAuthority(workdir / "ca")
    cert, key = authority.server_certificate([HOST, "localhost"])
    client = ssl.create_default_context(cafile=str(authority.ensure()))
    figures: list[Figures] = []
    rss: dict[str, float | None] = {}

    # us: the same certificate given, so both servers do the same TLS work; a node on HTTPS
    # and one on plain HTTP (an HTTPS port answers plain HTTP with a redirect, not the System)
    compile_checkout()
    taken: set[int] = set()
    ipmi_port, port = free_ports("udp", 2, taken), free_ports("tcp", 2, taken)
    config = workdir / "us.yaml"
    config.write_text(
        f"defaults: {{bind: {HOST}, ipmi_port_base: {ipmi_port}, redfish_port_base: {port}, "
        f"backend: {{type: memory}}}}\n"
        f"nodes:\n  - name: secure\n    redfish: {{tls: {{cert: {cert}, key: {key}}}}}\n"
        f"  - name: plain\n")
    cmd = [sys.executable, "-m", "bmc.cli", "serve", "--config", str(config),
           "--log-level", "warning"]
    with _serving(cmd, workdir / "us.log", port, client, env=our_env(), cwd=REPO) as proc:
        urls = {"https": f"https://{HOST}:{port}/redfish/v1/Systems/secure",
                "http": f"http://{HOST}:{port + 1}/redfish/v1/Systems/plain"}
        figures += _measure("bmc-emulator", proc, urls, (USERNAME, PASSWORD), client, args)
        rss["bmc-emulator"] = rss_mib(proc.pid)

    problem = install.missing_python_peer("sushy-tools")
    if problem:
        print(f"bench.https: sushy-emulator not measured: {problem}", file=sys.stderr)
        return figures, rss
    port = free_ports("tcp")
    config = peers.write_sushy_config(workdir)
    cmd = [str(install.venv_bin("sushy-emulator")), "--config", str(config), "-i", HOST,
           "-p", str(port), "--fake", "--ssl-certificate", str(cert), "--ssl-key", str(key)]
    # sushy-emulator's one port speaks HTTPS only: its plain-HTTP figure is not measured
    with _serving(cmd, workdir / "sushy.log", port, client) as proc:
        path = system_path(HOST, port, None, client) or "/redfish/v1/Systems"
        figures += _measure("sushy-emulator", proc, {"https": f"https://{HOST}:{port}{path}"},
                            None, client, args)
        rss["sushy-emulator"] = rss_mib(proc.pid)
    return figures, rss


def report(figures: list[Figures], rss: dict[str, float | None]) -> None:
    print(f"client: {'wrk' if httpload.have_wrk() else 'python'}")
    print(f"{'server':<16}{'mode':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for f in figures:
        print(f"{f.server:<16}{f.mode:<22}{f.rps:>9.0f}{f.p50_ms:>9.2f}{f.p99_ms:>9.2f}"
              f"{f.errors:>8}")
    ours = {f.mode: f for f in figures if f.server == "bmc-emulator"}
    theirs = {f.mode: f for f in figures if f.server == "sushy-emulator"}
    for mode in MODES:
        if mode in ours and mode in theirs and theirs[mode].rps:
            print(f"ratio {mode}: {ours[mode].rps / theirs[mode].rps:.1f}x the requests/s")
    if "http keep-alive" in ours and "https keep-alive" in ours and ours["http keep-alive"].rps:
        print(f"our HTTPS keep-alive costs "
              f"{1 - ours['https keep-alive'].rps / ours['http keep-alive'].rps:.0%} of HTTP's "
              "requests/s")
    for server, mib in rss.items():
        print(f"RSS {server}: {mib if mib is None else round(mib)} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.https", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="per mode (default 5)")
    parser.add_argument("--concurrency", type=int, default=16, help="connections (default 16)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-https-") as tmp:
        figures, rss = run(args, Path(tmp))
    report(figures, rss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
