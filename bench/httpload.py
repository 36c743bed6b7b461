"""HTTP GET load at a fixed concurrency: wrk when installed, else a bounded Python client.

Both keep their connections alive (HTTP/1.1) and report requests/s and latency percentiles.
"""

from __future__ import annotations

import base64
import http.client
import re
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.util import percentile, run


@dataclass(frozen=True)
class LoadResult:
    tool: str
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers, socket errors and timeouts


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def load(url: str, *, concurrency: int, seconds: float, auth: tuple[str, str] | None,
         max_requests: int = 200_000) -> LoadResult:
    if have_wrk():
        return wrk(url, concurrency=concurrency, seconds=seconds, auth=auth)
    return python_load(url, concurrency=concurrency, seconds=seconds, auth=auth,
                       max_requests=max_requests)


# -- wrk ----------------------------------------------------------------------------------------
def _lua(auth: tuple[str, str] | None, close: bool = False) -> str:
    """wrk's Lua script: a Basic Authorization header on every request (or none), and
    `Connection: close` with `close` (wrk then opens a new connection per request)."""
    script = "-- no authentication\n"
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        script = f'wrk.headers["Authorization"] = "Basic {token}"\n'
    if close:
        script += 'wrk.headers["Connection"] = "close"\n'
    return script


def wrk(url: str, *, concurrency: int, seconds: float, auth: tuple[str, str] | None,
        close: bool = False) -> LoadResult:
    """One wrk run: one thread (the other core is the server's), `concurrency` connections
    (`close`: a new one per request; over https:// a TLS handshake each, unverified)."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "auth.lua"
        script.write_text(_lua(auth, close))
        cmd = ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{max(1, round(seconds))}s",
               "--timeout", "5s", "--latency", "-s", str(script), url]
        try:
            result = run(cmd, timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            return LoadResult("wrk", 0, 0.0, float("nan"), float("nan"), 1)
    return parse_wrk(result.stdout)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(out: str) -> LoadResult:
    """The figures of wrk's `--latency` output."""
    def grab(pattern: str) -> str | None:
        match = re.search(pattern, out, re.MULTILINE)
        return match.group(1) if match else None

    requests = int(grab(r"^\s*(\d+) requests in") or 0)
    rps = float(grab(r"^Requests/sec:\s+([\d.]+)") or 0.0)
    p50 = _ms(grab(r"^\s+50%\s+(\S+)") or "")
    p99 = _ms(grab(r"^\s+99%\s+(\S+)") or "")
    errors = int(grab(r"Non-2xx or 3xx responses:\s+(\d+)") or 0)
    socket_errors = grab(r"Socket errors: (.*)$")
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors))
    return LoadResult("wrk", requests, rps, p50, p99, errors)


# -- the Python fallback ------------------------------------------------------------------------
def python_load(url: str, *, concurrency: int, seconds: float, auth: tuple[str, str] | None,
                max_requests: int, tls: ssl.SSLContext | None = None,
                fresh: bool = False) -> LoadResult:
    """`concurrency` threads, each with one kept-alive connection, bounded in time and count
    (`fresh`: a new connection, and so a new TLS handshake, for every request).

    Less exact than wrk (the client shares the GIL and a core with itself), but needs nothing.
    An https:// URL needs `tls` (the client's context: what it trusts).
    """
    match = re.fullmatch(r"(https?)://([^/:]+):(\d+)(/.*)", url)
    if not match:
        raise ValueError(f"not an http(s)://host:port/path URL: {url}")
    scheme, host, port, path = (match.group(1), match.group(2), int(match.group(3)),
                                match.group(4))
    if scheme == "https" and tls is None:
        raise ValueError(f"{url}: an https URL needs the client's TLS context")

    def connect() -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=5, context=tls)
        return http.client.HTTPConnection(host, port, timeout=5)

    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode()
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        conn = connect()
        mine: list[float] = []
        failed = 0
        while time.monotonic() < deadline and len(mine) * concurrency < max_requests:
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = 200 <= response.status < 400
            except (OSError, http.client.HTTPException):
                ok = False
            if fresh or not ok:
                conn.close()
                conn = connect()
            if ok:
                mine.append((time.perf_counter() - t0) * 1000)
            else:
                failed += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 10)
    elapsed = time.monotonic() - started
    if not latencies:
        return LoadResult("python", 0, 0.0, float("nan"), float("nan"), errors[0])
    return LoadResult("python", len(latencies), len(latencies) / elapsed,
                      percentile(latencies, 50), percentile(latencies, 99), errors[0])
