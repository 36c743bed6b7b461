"""The peers at fleet scale: VirtualBMC with one process per BMC, sushy-emulator with N systems.

`python -m bench.peer_scale [--vbmc 1,50,100,200] [--sushy 1,100,1000] [--json FILE]`

- VirtualBMC is IPMI only. vbmcd forks one child per BMC, so N BMCs are N processes here, each
  running VirtualBMC's `VirtualBMC` class (what a vbmcd child runs) on its own UDP port, all
  against one libvirt test:///<file> holding N domains. Ready = every BMC answers Get Channel
  Authentication Capabilities; the sweep is one `ipmitool -I lanplus -C 3 power status` per BMC
  (VirtualBMC has no cipher suite 17), 32 at a time.
- sushy-emulator is Redfish only: one process, N systems of its fake driver
  (SUSHY_EMULATOR_FAKE_SYSTEMS in its config). Figures: start to the first `GET /redfish/v1`
  answered, start to all N systems listed in `GET /redfish/v1/Systems`, and a sweep of one
  `GET /redfish/v1/Systems/<uuid>` per system, 32 clients at a time.

Counts run in increasing order per peer and stop at the first that does not get ready within
the time budget, or whose memory, projected from the last count, would pass the memory limit.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from bench import install
from bench.probes import GET_AUTH_CAPS, PASSWORD, USERNAME, http_json, http_status, ipmitool
from bench.util import HOST, Proc, free_ports, rss_mib, signal_group, start

T = TypeVar("T")

PARALLEL = 32
READY_BUDGET = 120.0  # seconds a count may take to get ready before the peer stops growing
SWEEP_BUDGET = 300.0  # seconds a sweep may take before the rest is counted as errors
MEMORY_LIMIT_MIB = 8 * 1024


@dataclass
class PeerResult:
    peer: str
    protocol: str
    nodes: int
    processes: int
    first_answer_s: float | None = None  # start -> first BMC / service root answered
    ready_s: float | None = None  # start -> every BMC answers / every system listed
    answered: int = 0  # BMCs answering the probe / systems listed
    rss_mib: float | None = None  # summed over the processes (shared pages counted per process)
    pss_mib: float | None = None  # proportional set size summed: shared pages split
    open_fds: int | None = None  # summed over the processes, after the sweep
    sweep_s: float | None = None
    sweep_ok: int = 0
    sweep_errors: int = 0
    first_error: str | None = None
    load_avg: str = ""
    problem: str | None = None

    @property
    def reached(self) -> bool:
        """Every node got ready and answered the whole sweep."""
        return (self.problem is None and self.answered == self.nodes
                and self.sweep_ok == self.nodes and self.sweep_errors == 0)


# -- pure parts: sweeping and deciding whether to go on -----------------------------------------
@dataclass
class Sweep:
    seconds: float
    ok: int
    errors: int
    first_error: str | None


def sweep(items: Sequence[T], call: Callable[[T], str | None], parallel: int = PARALLEL,
          budget: float = SWEEP_BUDGET) -> Sweep:
    """`call` on every item, `parallel` at a time; `call` returns None on success, else why
    not. An exception counts as an error; items not started within `budget` count as errors."""
    deadline = time.monotonic() + budget

    def one(item: T) -> str | None:
        if time.monotonic() > deadline:
            return "not started: sweep budget spent"
        try:
            return call(item)
        except Exception as exc:  # noqa: BLE001 - one node's failure is a figure, not a crash
            return f"{type(exc).__name__}: {exc}"

    t0 = time.monotonic()
    with ThreadPoolExecutor(parallel) as pool:
        outcomes = list(pool.map(one, items))
    seconds = time.monotonic() - t0
    errors = [o for o in outcomes if o is not None]
    return Sweep(seconds, len(outcomes) - len(errors), len(errors), errors[0] if errors else None)


def stop_reason(last: PeerResult, next_nodes: int, limit_mib: float = MEMORY_LIMIT_MIB
                ) -> str | None:
    """Why the next count should not run after `last`, or None to go on."""
    if not last.reached:
        return f"{last.nodes} nodes did not all get ready and answer"
    if last.rss_mib is not None and last.nodes > 0:
        projected = last.rss_mib / last.nodes * next_nodes
        if projected > limit_mib:
            return (f"{next_nodes} nodes would need ~{projected:.0f} MiB RSS "
                    f"(> {limit_mib:.0f} MiB)")
    return None


def largest_reached(results: Sequence[PeerResult], peer: str) -> PeerResult | None:
    done = [r for r in results if r.peer == peer and r.reached]
    return max(done, key=lambda r: r.nodes) if done else None


def parse_counts(text: str) -> list[int]:
    """"1,50,100" -> [1, 50, 100] (sorted, deduplicated); "" -> [] (peer not run)."""
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of counts: {text!r}") from None
    if any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"counts must be >= 1: {text!r}")
    return counts


# -- processes and memory -----------------------------------------------------------------------
def pss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError, ValueError), open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return None


def _memory(pids: Sequence[int]) -> tuple[float | None, float | None]:
    rss = [rss_mib(pid) for pid in pids]
    pss = [pss_mib(pid) for pid in pids]
    if any(v is None for v in rss):
        return None, None
    return sum(v for v in rss if v is not None), (
        None if any(v is None for v in pss) else sum(v for v in pss if v is not None))


def open_fds(pids: Sequence[int]) -> int | None:
    """File descriptors the processes hold now (a leak shows up here before EMFILE does)."""
    try:
        return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)
    except OSError:
        return None


def load_avg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _stop_all(procs: Sequence[Proc]) -> None:
    """SIGTERM every group first, then wait: N sequential 5 s waits would add up."""
    for proc in procs:
        if proc.alive():
            signal_group(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.stop(timeout=5)


# -- VirtualBMC ---------------------------------------------------------------------------------
VBMC_SCRIPT = f"""\
import sys
from virtualbmc.vbmc import VirtualBMC

host, port, uri, domain = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
bmc = VirtualBMC({USERNAME!r}, {PASSWORD!r}, port, host, domain, uri)
bmc.listen(timeout=1)
"""


def domains_xml(count: int) -> str:
    """libvirt test-driver state with `count` shut-off domains bench-0..bench-<count-1>."""
    domains = "".join(
        f"<domain type='test'><name>bench-{i}</name>"
        f"<uuid>{uuid.uuid5(uuid.NAMESPACE_DNS, f'bench-{i}.peer-scale')}</uuid>"
        "<memory>1048576</memory><currentMemory>1048576</currentMemory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type><boot dev='hd'/></os>"
        "<on_poweroff>destroy</on_poweroff><devices></devices></domain>\n"
        for i in range(count))
    return f"<node>\n{domains}</node>\n"


def vbmc_unavailable() -> str | None:
    return install.missing_python_peer("virtualbmc")


def measure_vbmc(nodes: int, workdir: Path, budget: float = READY_BUDGET) -> PeerResult:
    result = PeerResult("VirtualBMC", "IPMI only", nodes, nodes)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "domains.xml").write_text(domains_xml(nodes))
    uri = f"test://{(workdir / 'domains.xml').resolve()}"
    script = workdir / "vbmc_run.py"
    script.write_text(VBMC_SCRIPT)
    base = free_ports("udp", nodes)
    endpoints = [(HOST, base + i) for i in range(nodes)]
    procs: list[Proc] = []
    try:
        t0 = time.monotonic()
        for i, (host, port) in enumerate(endpoints):
            procs.append(start([str(install.venv_python()), str(script), host, str(port), uri,
                                f"bench-{i}"], workdir / f"vbmc-{i}.log"))
        pending = list(endpoints)
        deadline = t0 + budget
        while pending and time.monotonic() < deadline:
            if dead := [p for p in procs if not p.alive()]:
                result.problem = f"{len(dead)} BMC processes exited: {dead[0].log_tail(3)}"
                break
            answered = set(endpoints) - set(pending)
            answered |= _answering(pending)
            if answered and result.first_answer_s is None:
                result.first_answer_s = time.monotonic() - t0
            pending = [ep for ep in endpoints if ep not in answered]
            result.answered = nodes - len(pending)
            if pending:
                time.sleep(0.05)
        if not pending:
            result.ready_s = time.monotonic() - t0
        elif result.problem is None:
            result.problem = f"{len(pending)} of {nodes} BMCs not answering after {budget:.0f} s"
        result.load_avg = load_avg()
        result.rss_mib, result.pss_mib = _memory([p.pid for p in procs])
        if result.problem is None:
            done = sweep(endpoints, _power_status)
            result.sweep_s, result.sweep_ok = done.seconds, done.ok
            result.sweep_errors, result.first_error = done.errors, done.first_error
            result.open_fds = open_fds([p.pid for p in procs])
    finally:
        _stop_all(procs)
    return result


def _answering(endpoints: list[tuple[str, int]], wait: float = 0.25) -> set[tuple[str, int]]:
    """The endpoints that answer Get Channel Authentication Capabilities within `wait`: all
    probed from one socket (as bench.scale does), answers told apart by their source."""
    pending, answered = set(endpoints), set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        for endpoint in endpoints:
            with contextlib.suppress(OSError):  # ICMP unreachable from an earlier send
                sock.sendto(GET_AUTH_CAPS, endpoint)
        deadline = time.monotonic() + wait
        while pending and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, peer = sock.recvfrom(512)
            except TimeoutError:
                break
            except OSError:  # a port with nothing bound yet (ICMP): keep listening
                continue
            if len(data) > 21 and data[3] == 0x07 and data[20] == 0 and peer[:2] in pending:
                pending.discard(peer[:2])
                answered.add(peer[:2])
    return answered


def _power_status(endpoint: tuple[str, int]) -> str | None:
    """One `ipmitool -I lanplus -C 3 -N 1 -R 1 power status`: bench.probes' ipmitool, the same
    run and bounds bench/scale.py's sweep gives our emulator."""
    done = ipmitool(*endpoint, "power", "status", cipher=3, timeout=20)
    if not done.ok or "Chassis Power is" not in done.output:
        lines = done.output.splitlines()
        return f"port {endpoint[1]}: {lines[-1] if lines else 'no output'}"
    return None


# -- sushy-emulator -----------------------------------------------------------------------------
def fake_systems(count: int) -> list[dict[str, object]]:
    """The fake driver's systems: what its default one looks like, `count` times."""
    systems = []
    for i in range(count):
        mac = f"52:54:00:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:{i & 0xff:02x}"
        systems.append({"uuid": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"fake-{i}.peer-scale")),
                        "name": f"fake-{i}", "power_state": "Off", "external_notifier": False,
                        "nics": [{"mac": mac, "ip": f"172.22.{i >> 8 & 0xff}.{i & 0xff}"}]})
    return systems


def sushy_command() -> list[str] | None:
    """sushy-emulator from the peers' venv (as bench/targets.py runs it), else from PATH."""
    venv = install.venv_bin("sushy-emulator")
    if venv.exists():
        return [str(venv)]
    found = shutil.which("sushy-emulator")
    return [found] if found else None


def sushy_unavailable() -> str | None:
    return None if sushy_command() else "sushy-emulator not installed (pip sushy-tools)"


def measure_sushy(nodes: int, workdir: Path, budget: float = READY_BUDGET) -> PeerResult:
    result = PeerResult("sushy-fake", "Redfish only", nodes, 1)
    workdir.mkdir(parents=True, exist_ok=True)
    state = workdir / "sushy-state"
    state.mkdir(exist_ok=True)
    systems = fake_systems(nodes)
    config = workdir / "sushy.conf"
    config.write_text(f"SUSHY_EMULATOR_STATE_DIR = {str(state)!r}\n"
                      "SUSHY_EMULATOR_FAKE_DRIVER = True\n"
                      f"SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}\n")
    port = free_ports("tcp")
    command = sushy_command()
    assert command is not None
    proc = start([*command, "--config", str(config), "-i", HOST, "-p", str(port), "--fake"],
                 workdir / "sushy.log")
    try:
        deadline = proc.started + budget
        while time.monotonic() < deadline and proc.alive():
            if http_status(HOST, port, "/redfish/v1", timeout=2) == 200:
                result.first_answer_s = time.monotonic() - proc.started
                break
            time.sleep(0.02)
        if result.first_answer_s is None:
            result.problem = f"no service root within {budget:.0f} s: {proc.log_tail(3)}"
            return result
        # the fake driver loads its systems into its state (SQLite) on the first use
        listed: set[str] = set()
        while time.monotonic() < deadline and proc.alive():
            remaining = max(1.0, deadline - time.monotonic())
            collection = http_json(HOST, port, "/redfish/v1/Systems", timeout=remaining)
            if collection is not None:
                listed = {m["@odata.id"].rsplit("/", 1)[-1]
                          for m in collection.get("Members", [])}
                if len(listed) >= nodes:
                    result.ready_s = time.monotonic() - proc.started
                    break
            time.sleep(0.1)
        result.answered = len(listed)
        result.load_avg = load_avg()
        result.rss_mib, result.pss_mib = _memory([proc.pid])
        if result.ready_s is None:
            result.problem = (f"{len(listed)} of {nodes} systems listed after {budget:.0f} s"
                              if proc.alive() else f"exited: {proc.log_tail(3)}")
            return result
        done = sweep([str(s["uuid"]) for s in systems], lambda sid: _get_system(port, sid))
        result.sweep_s, result.sweep_ok = done.seconds, done.ok
        result.sweep_errors, result.first_error = done.errors, done.first_error
        result.rss_mib, result.pss_mib = _memory([proc.pid])  # after the sweep: the peak so far
        result.open_fds = open_fds([proc.pid])
    finally:
        proc.stop(timeout=10)
    return result


def _get_system(port: int, system_id: str) -> str | None:
    """One GET System on a new connection; None if it is that System, else what went wrong."""
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        conn.request("GET", f"/redfish/v1/Systems/{system_id}")
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return f"{system_id}: HTTP {response.status} {body[:120]!r}"
        if json.loads(body).get("Id") != system_id:
            return f"{system_id}: another resource answered"
        return None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"{system_id}: {type(exc).__name__}: {exc}"
    finally:
        conn.close()


# -- running and reporting ----------------------------------------------------------------------
def run_peer(name: str, counts: list[int], measure: Callable[[int, Path], PeerResult],
             workdir: Path, log: Callable[[str], None], limit_mib: float = MEMORY_LIMIT_MIB
             ) -> list[PeerResult]:
    results: list[PeerResult] = []
    for nodes in counts:
        if results and (why := stop_reason(results[-1], nodes, limit_mib)):
            log(f"{name}: stopping before {nodes}: {why}")
            break
        log(f"{name}: {nodes} nodes (load average {load_avg()})")
        result = measure(nodes, workdir / f"{name}-{nodes}")
        log(f"{name}: {nodes} nodes: " + row(result))
        results.append(result)
    return results


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def row(r: PeerResult) -> str:
    return (f"first {_fmt(r.first_answer_s)} s, ready {_fmt(r.ready_s)} s, "
            f"answered {r.answered}/{r.nodes}, RSS {_fmt(r.rss_mib, '.0f')} MiB "
            f"(PSS {_fmt(r.pss_mib, '.0f')}), sweep {_fmt(r.sweep_s)} s "
            f"{r.sweep_ok} ok {r.sweep_errors} errors, {r.open_fds} fds open after it"
            + (f" ({r.first_error})" if r.first_error else "")
            + (f"; {r.problem}" if r.problem else ""))


def table(results: Sequence[PeerResult]) -> str:
    head = ("peer", "protocol", "nodes", "procs", "first s", "ready s", "answered",
            "RSS MiB", "PSS MiB", "sweep s", "sweep errors", "fds after", "load avg")
    rows = [head] + [(r.peer, r.protocol, str(r.nodes), str(r.processes),
                      _fmt(r.first_answer_s), _fmt(r.ready_s), f"{r.answered}/{r.nodes}",
                      _fmt(r.rss_mib, ".0f"), _fmt(r.pss_mib, ".0f"), _fmt(r.sweep_s),
                      "-" if r.sweep_s is None else str(r.sweep_errors),
                      "-" if r.open_fds is None else str(r.open_fds), r.load_avg)
                     for r in results]
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
             for cells in rows]
    for peer in dict.fromkeys(r.peer for r in results):
        best = largest_reached(results, peer)
        lines.append(f"{peer}: largest count reached: "
                     + (f"{best.nodes} nodes" if best else "none"))
    problems = [f"{r.peer} {r.nodes}: {r.problem}" for r in results if r.problem]
    return "\n".join(lines + problems)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peer_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vbmc", type=parse_counts, default=parse_counts("1,50,100,200"),
                        metavar="N,N,...", help="VirtualBMC counts ('' to skip)")
    parser.add_argument("--sushy", type=parse_counts, default=parse_counts("1,100,1000"),
                        metavar="N,N,...", help="sushy-emulator fake-driver counts ('' to skip)")
    parser.add_argument("--budget", type=float, default=READY_BUDGET, metavar="S",
                        help=f"seconds a count may take to get ready (default {READY_BUDGET:g})")
    parser.add_argument("--memory-limit", type=float, default=MEMORY_LIMIT_MIB, metavar="MIB",
                        help="stop before a count whose summed RSS, projected from the last "
                        f"count, passes this (default {MEMORY_LIMIT_MIB})")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR and keep it (every peer's log and config)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"peer_scale: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: list[PeerResult] = []
    skipped: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if args.keep:
            workdir = args.keep
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="bmc-peer-scale-")))
        for name, counts, unavailable, measure in (
                ("vbmc", args.vbmc, vbmc_unavailable, measure_vbmc),
                ("sushy", args.sushy, sushy_unavailable, measure_sushy)):
            if not counts:
                continue
            if why := unavailable():
                skipped[name] = why
                log(f"{name}: skipped: {why} (python -m bench installs it)")
                continue
            results += run_peer(name, counts,
                                lambda n, d, m=measure: m(n, d, args.budget), workdir, log,
                                args.memory_limit)
    print(table(results), flush=True)
    print("VirtualBMC serves IPMI only (one process per BMC); sushy-emulator serves Redfish "
          "only (one process, N fake-driver systems).")
    if args.json:
        args.json.write_text(json.dumps({
            "results": [{**asdict(r), "reached": r.reached} for r in results],
            "largest_reached": {peer: best.nodes for peer in dict.fromkeys(r.peer for r in results)
                                if (best := largest_reached(results, peer))},
            "skipped": skipped, "parallel": PARALLEL}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
