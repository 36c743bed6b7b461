"""Run one shell command with a deadline: on a host over SSH (pooled connection) or locally.

Used by the `ssh` backend (a command per power action). Each command gets the whole
`timeout` (connecting included); a command that overruns is reported as BackendError and
killed (over SSH: by coreutils `timeout` on the host, see run_remote; locally: its whole
process group), so a hung `virsh` never holds a node's worker nor lingers on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass

from backends import sshloop
from backends.base import BackendError
from backends.sshloop import SshTarget

#: seconds after our deadline that the host's `timeout` kills an abandoned command
REMOTE_GRACE = 1.0


@dataclass(frozen=True)
class Result:
    status: int
    stdout: str
    stderr: str


def run_remote(target: SshTarget, command: str, timeout: float, kill_remote: bool = True,
               label: str = "the command") -> Result:
    """`command` on `target` over the pooled SSH connection.

    With `kill_remote`, the host runs it under coreutils' `timeout`, which kills the whole
    process group a little after our own deadline: sshd does not signal a command without a
    pty when its channel closes, so an abandoned command would otherwise run on forever.
    """
    wrapped = command
    if kill_remote:
        wrapped = f"timeout -s KILL {timeout + REMOTE_GRACE:g} sh -c {shlex.quote(command)}"
    return sshloop.run(_run_remote(target, wrapped, label, timeout), timeout + 1,
                       f"ssh {target}")


async def _run_remote(target: SshTarget, command: str, shown: str, timeout: float) -> Result:
    """`shown` names the command in errors: its label, never its text (a command line may
    hold a password, and errors reach Redfish clients)."""
    try:
        conn = await asyncio.wait_for(sshloop.pool.get(target), timeout)
    except Exception as exc:
        raise BackendError(f"ssh {target}: cannot connect: {sshloop.ssh_error(exc)}") from None
    process = None
    try:
        process = await asyncio.wait_for(conn.create_process(command, encoding=None), timeout)
        done = await asyncio.wait_for(process.wait(check=False), timeout)
    except TimeoutError:
        if process is not None:
            process.close()
        raise BackendError(f"ssh {target}: {shown} did not finish within {timeout:g} s"
                           ) from None
    except Exception as exc:  # the connection broke under us: the next command reconnects
        sshloop.pool.drop(target, conn)
        raise BackendError(f"ssh {target}: {shown} failed: {sshloop.ssh_error(exc)}"
                           ) from None
    status = done.exit_status
    if status is None or status < 0:  # killed by a signal: report it as a shell would
        status = 128 + _signal_number(done.exit_signal)
    return Result(status, _text(done.stdout), _text(done.stderr))


def _signal_number(exit_signal: object) -> int:
    name = exit_signal[0] if isinstance(exit_signal, tuple) and exit_signal else ""
    try:
        return int(signal.Signals[f"SIG{name}"])
    except KeyError:
        return 127


def child_env() -> dict[str, str]:
    """The environment of a local command: the emulator's, minus its own settings (such as
    BMC_EMULATOR_PASSWORD)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BMC_EMULATOR_")}


def run_local(command: str, timeout: float, label: str = "the command") -> Result:
    """`command` through /bin/sh here; its process group is killed if it overruns."""
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, env=child_env())
    except OSError as exc:
        raise BackendError(f"cannot run {label}: {exc.strerror}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a daemon it left may hold
            proc.communicate(timeout=1)                       # the pipes open: not our wait
        proc.wait()
        raise BackendError(f"local: {label} did not finish within {timeout:g} s") from None
    return Result(proc.returncode, _text(out), _text(err))


def _text(data: object) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return str(data)
