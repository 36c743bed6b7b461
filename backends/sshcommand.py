"""Run one shell command with a deadline: on a host over SSH (pooled connection) or locally.

Used by the `ssh` backend (a command per power action). Each command gets the whole
`timeout` (connecting included); a command that overruns is abandoned (over SSH: its channel
is closed; locally: its whole process group is killed) and reported as BackendError, so a
hung `virsh` never holds a node's worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass

from backends import sshloop
from backends.base import BackendError
from backends.sshloop import SshTarget


@dataclass(frozen=True)
class Result:
    status: int
    stdout: str
    stderr: str


def run_remote(target: SshTarget, command: str, timeout: float) -> Result:
    """`command` on `target` over the pooled SSH connection."""
    return sshloop.run(_run_remote(target, command, timeout), timeout + 1, f"ssh {target}")


async def _run_remote(target: SshTarget, command: str, timeout: float) -> Result:
    try:
        conn = await asyncio.wait_for(sshloop.pool.get(target), timeout)
    except Exception as exc:
        raise BackendError(f"ssh {target}: cannot connect: {sshloop.ssh_error(exc)}") from None
    try:
        done = await asyncio.wait_for(conn.run(command, check=False), timeout)
    except TimeoutError:
        raise BackendError(f"ssh {target}: {command!r} did not finish within {timeout:g} s"
                           ) from None
    except Exception as exc:  # the connection broke under us: the next command reconnects
        sshloop.pool.drop(target, conn)
        raise BackendError(f"ssh {target}: {command!r} failed: {sshloop.ssh_error(exc)}"
                           ) from None
    status = done.exit_status if done.exit_status is not None else 255  # killed by a signal
    return Result(status, _text(done.stdout), _text(done.stderr))


def run_local(command: str, timeout: float, env: dict[str, str] | None = None) -> Result:
    """`command` through /bin/sh here; its process group is killed if it overruns."""
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, env={**os.environ, **(env or {})})
    except OSError as exc:
        raise BackendError(f"cannot run {command!r}: {exc.strerror}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a daemon it left may hold
            proc.communicate(timeout=1)                       # the pipes open: not our wait
        proc.wait()
        raise BackendError(f"{command!r} did not finish within {timeout:g} s") from None
    return Result(proc.returncode, _text(out), _text(err))


def _text(data: object) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return str(data)
