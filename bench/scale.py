"""Many BMCs in one process: start `serve --nodes N`, check that every one answers, take RSS.

Every node's IPMI endpoint gets a Get Channel Authentication Capabilities probe and every
Redfish endpoint a `GET /redfish/v1`; a sample across the range also gets a full
`ipmitool power status` and an authenticated `GET /redfish/v1/Systems/<node>`. Without ipmitool
the sample's IPMI half is reported as not measured, never as answered.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.probes import GET_AUTH_CAPS, PASSWORD, USERNAME, have_ipmitool, http_status, ipmitool
from bench.targets import our_env
from bench.util import HOST, REPO, free_ports, port_is_free, rss_mib, start

READY = "bmc-emulator ready:"
SAMPLE = 5
#: the fleet-wide sweep: one `power status` and one GET System per node, this many at once
SWEEP_CLIENTS = 32
SWEEP_BUDGET = 900.0  # seconds; the sweep stops there and says how far it got


@dataclass
class ScaleResult:
    nodes: int
    layout: str  # "ports" (one address, port ranges) or "addresses" (one address per node)
    tls: bool = False  # Redfish over HTTPS (`serve --tls`): every probe makes a handshake
    ready_s: float | None = None
    rss_ready_mib: float | None = None
    rss_after_mib: float | None = None
    ipmi_answered: int = 0
    redfish_answered: int = 0
    sample_size: int = 0
    sample_redfish_ok: int = 0
    sample_ipmi_ok: int | None = None  # None: not measured (ipmitool is not installed)
    #: the fleet-wide sweep, if asked for: wall time, nodes swept, errors of each protocol
    sweep_s: float | None = None
    sweep_nodes: int = 0
    sweep_ipmi_errors: int | None = None  # None: not measured (no ipmitool)
    sweep_redfish_errors: int = 0
    problem: str | None = None

    @property
    def all_answer(self) -> bool | None:
        """True if everything measured answered and everything was measured; None if what
        was measured answered but the ipmitool sample could not be taken; else False."""
        answered = (self.problem is None and self.ipmi_answered == self.nodes
                    and self.redfish_answered == self.nodes
                    and self.sample_redfish_ok == self.sample_size
                    and self.sample_ipmi_ok in (None, self.sample_size))
        if not answered:
            return False
        return None if self.sample_ipmi_ok is None else True

    @property
    def sample_text(self) -> str:
        ipmi = "not measured (no ipmitool)" if self.sample_ipmi_ok is None else \
            f"{self.sample_ipmi_ok}/{self.sample_size}"
        return f"Redfish {self.sample_redfish_ok}/{self.sample_size}, ipmitool {ipmi}"

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "all_answer": self.all_answer}


def _endpoints(nodes: int, layout: str) -> tuple[list[str], list[tuple[str, int]],
                                                 list[tuple[str, int]]]:
    """CLI arguments and every node's (address, port) for IPMI and Redfish."""
    if layout == "addresses":
        # 127.<x>.0.1 upward, like real BMCs each on its own address; root may use 623
        for _ in range(50):
            second = random.randint(100, 250)
            ipmi_port = 623 if os.geteuid() == 0 else 1623
            first = f"127.{second}.0.1"
            addresses = [f"127.{second}.{(i + 1) // 256}.{(i + 1) % 256}" for i in range(nodes)]
            probe = [addresses[0], addresses[-1]]
            if all(port_is_free(ipmi_port, "udp", a) and port_is_free(8000, "tcp", a)
                   for a in probe):
                args = ["--address-base", first, "--ipmi-port-base", str(ipmi_port),
                        "--redfish-port-base", "8000"]
                return (args, [(a, ipmi_port) for a in addresses],
                        [(a, 8000) for a in addresses])
        raise RuntimeError("no free 127.x.0.0/16 range for the address layout")
    taken: set[int] = set()
    ipmi_base, redfish_base = free_ports("udp", nodes, taken), free_ports("tcp", nodes, taken)
    args = ["--bind", HOST, "--ipmi-port-base", str(ipmi_base),
            "--redfish-port-base", str(redfish_base)]
    return (args, [(HOST, ipmi_base + i) for i in range(nodes)],
            [(HOST, redfish_base + i) for i in range(nodes)])


def measure(nodes: int, workdir: Path, layout: str = "ports", timeout: float = 90.0,
            sweep: bool = False, tls: bool = False) -> ScaleResult:
    result = ScaleResult(nodes, layout, tls)
    try:
        args, ipmi_eps, redfish_eps = _endpoints(nodes, layout)
    except RuntimeError as exc:
        result.problem = str(exc)
        return result
    workdir.mkdir(parents=True, exist_ok=True)
    # memory servers: the figure is the BMCs' (a process server adds its own program)
    cmd = [sys.executable, "-m", "bmc.cli", "serve", "--nodes", str(nodes), "--backend",
           "memory", *args, "--log-level", "warning"]
    name = f"scale-{layout}-{nodes}{'-tls' if tls else ''}"
    if tls:  # certificates made in a directory of this run (its lab CA verifies them all)
        cmd += ["--tls", "--state-dir", str(workdir / name)]
    proc = start(cmd, workdir / f"{name}.log", env=our_env(), cwd=REPO)
    context = None
    try:
        deadline = proc.started + timeout
        while time.monotonic() < deadline and proc.alive():
            if READY in proc.log_path.read_text(errors="replace"):
                result.ready_s = time.monotonic() - proc.started
                break
            time.sleep(0.02)
        if result.ready_s is None:
            result.problem = f"not ready within {timeout:.0f} s: {proc.log_tail(5)}"
            return result
        result.rss_ready_mib = rss_mib(proc.pid)
        if tls:
            context = ssl.create_default_context(cafile=workdir / name / "tls" / "ca.pem")
        result.ipmi_answered = _ipmi_all(ipmi_eps)
        result.redfish_answered = _redfish_all(redfish_eps, context)
        (result.sample_size, result.sample_redfish_ok,
         result.sample_ipmi_ok) = _sample(ipmi_eps, redfish_eps, context)
        if sweep:
            _sweep(ipmi_eps, redfish_eps, result, context)
        result.rss_after_mib = rss_mib(proc.pid)
    finally:
        proc.stop(timeout=15)
    return result


def _ipmi_all(endpoints: list[tuple[str, int]], tries: int = 4) -> int:
    """How many endpoints answer the probe: all sent from one socket, missing ones resent."""
    pending = set(endpoints)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        for _ in range(tries):
            for i, endpoint in enumerate(sorted(pending)):
                sock.sendto(GET_AUTH_CAPS, endpoint)
                if i % 64 == 63:
                    _collect(sock, pending, 0.0)  # keep the receive buffer from filling up
            _collect(sock, pending, 1.0)
            if not pending:
                break
    return len(endpoints) - len(pending)


def _collect(sock: socket.socket, pending: set[tuple[str, int]], wait: float) -> None:
    deadline = time.monotonic() + wait
    while pending:
        sock.settimeout(max(0.0, deadline - time.monotonic()) or 0.001)
        try:
            data, peer = sock.recvfrom(512)
        except OSError:
            return
        if len(data) > 21 and data[20] == 0:
            pending.discard(peer[:2])


def _redfish_all(endpoints: list[tuple[str, int]], tls: ssl.SSLContext | None = None) -> int:
    with ThreadPoolExecutor(16) as pool:
        statuses = pool.map(lambda ep: http_status(ep[0], ep[1], "/redfish/v1", timeout=10,
                                                   tls=tls), endpoints)
        return sum(1 for status in statuses if status == 200)


def _sample(ipmi_eps: list[tuple[str, int]], redfish_eps: list[tuple[str, int]],
            tls: ssl.SSLContext | None = None) -> tuple[int, int, int | None]:
    """An authenticated GET System and a full ipmitool session on nodes across the range:
    (sample size, Redfish answered, ipmitool answered or None if ipmitool is missing)."""
    n = len(ipmi_eps)
    indexes = sorted({round(i * (n - 1) / (SAMPLE - 1)) for i in range(SAMPLE)}) if n > 1 else [0]
    redfish_ok, ipmi_ok = 0, 0 if have_ipmitool() else None
    for i in indexes:
        host, port = redfish_eps[i]
        redfish_ok += http_status(host, port, f"/redfish/v1/Systems/node-{i}",
                                  (USERNAME, PASSWORD), timeout=10, tls=tls) == 200
        if ipmi_ok is not None:
            with contextlib.suppress(subprocess.SubprocessError):  # a timeout: not answered
                ipmi_ok += ipmitool(*ipmi_eps[i], "power", "status").ok
    return len(indexes), redfish_ok, ipmi_ok


def _sweep(ipmi_eps: list[tuple[str, int]], redfish_eps: list[tuple[str, int]],
           result: ScaleResult, tls: ssl.SSLContext | None = None) -> None:
    """Every node: a full `ipmitool power status` session and an authenticated GET of its
    System, SWEEP_CLIENTS at a time, within SWEEP_BUDGET seconds."""
    with_ipmitool = have_ipmitool()
    began = time.monotonic()
    deadline = began + SWEEP_BUDGET

    def one(index: int) -> tuple[bool, bool | None] | None:
        if time.monotonic() > deadline:
            return None
        host, port = redfish_eps[index]
        redfish = http_status(host, port, f"/redfish/v1/Systems/node-{index}",
                              (USERNAME, PASSWORD), timeout=10, tls=tls) == 200
        ipmi = None
        if with_ipmitool:
            try:
                ipmi = ipmitool(*ipmi_eps[index], "power", "status", timeout=20).ok
            except subprocess.SubprocessError:
                ipmi = False
        return redfish, ipmi

    with ThreadPoolExecutor(SWEEP_CLIENTS) as pool:
        done = [r for r in pool.map(one, range(len(ipmi_eps))) if r is not None]
    result.sweep_s = round(time.monotonic() - began, 1)
    result.sweep_nodes = len(done)
    result.sweep_redfish_errors = sum(1 for redfish, _ in done if not redfish)
    result.sweep_ipmi_errors = (sum(1 for _, ipmi in done if not ipmi) if with_ipmitool
                                else None)


def run_all(counts: list[int], workdir: Path, layouts: list[str],
            log: Callable[[str], None] = print, sweep: bool = False,
            tls: bool = False) -> list[ScaleResult]:
    results = []
    for layout in layouts:
        for nodes in counts:
            result = measure(nodes, workdir, layout, sweep=sweep, tls=tls)
            how = f"{layout}, HTTPS" if tls else layout
            log(f"scale: {nodes} nodes ({how}): ready {result.ready_s or float('nan'):.2f} s, "
                f"RSS {result.rss_after_mib or float('nan'):.0f} MiB, "
                f"IPMI {result.ipmi_answered}/{nodes}, Redfish {result.redfish_answered}/{nodes}"
                + (f", sweep of {result.sweep_nodes} nodes in {result.sweep_s} s "
                   f"(errors: IPMI {result.sweep_ipmi_errors}, Redfish "
                   f"{result.sweep_redfish_errors})" if result.sweep_s is not None else "")
                + (f", {result.problem}" if result.problem else ""))
            results.append(result)
    return results
