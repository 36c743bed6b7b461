"""A real OpenSSH server on loopback for tests: its own host key, client key and config.

    with Sshd(tmp_path / "sshd") as sshd:               # logs in the current user (root)
        sshd.port, sshd.client_key, sshd.known_hosts, sshd.user
    Sshd(dir, users=["0b1c...-uuid"], force_command="python3 sos.py")   # Metal SOS style

Debian's `openssh-server` (`/usr/sbin/sshd -D -e -f CONFIG`) on 127.0.0.1 and a free port,
everything else in `directory`. `users` are log-in names that need not exist on this machine
(an Equinix Metal SOS login is the device's UUID, 36 characters: more than `useradd` takes):
sshd then runs in a mount namespace of its own where a copy of /etc/passwd with those users
(uid 0, this test's key) is bind-mounted over the real one, so the machine is not touched.
The same copy gives the test user `login_shell` (/bin/sh): sshd runs every command through
the login shell, and a developer's bash with `pyenv init` in ~/.bashrc costs 0.5 s a command.
Running sshd needs root (its privilege separation); `skip_unless_root()` says so otherwise.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.util import free_ports

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
START_TIMEOUT = 10.0


def skip_unless_root() -> None:
    """Skip where sshd cannot run: only root can start it with privilege separation."""
    if os.geteuid() != 0:
        pytest.skip("sshd on loopback needs root (privilege separation, /run/sshd)")
    if not Path(SSHD).exists():  # scripts/test.sh installs openssh-server
        pytest.fail(f"{SSHD} is missing: apt-get install openssh-server")


def keygen(path: Path, comment: str = "bmc-emulator-test") -> Path:
    """A new passphrase-less ed25519 key pair at `path` (+ .pub); returns `path`."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", str(path)], check=True)
    return path


class Sshd:
    """One sshd process; `start()`/`stop()` or a `with` block."""

    def __init__(self, directory: Path, *, users: Sequence[str] = (),
                 force_command: str | None = None, extra_config: str = "",
                 login_shell: str | None = "/bin/sh") -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra_users = list(users)
        self.user = self.extra_users[0] if self.extra_users else getpass.getuser()
        self.force_command = force_command
        self.login_shell = login_shell
        self.extra_config = extra_config
        self.port = 0
        self.host_key = keygen(self.dir / "host_ed25519", "test-sshd-host")
        self.client_key = keygen(self.dir / "client_ed25519")
        (self.dir / "authorized_keys").write_text((self.dir / "client_ed25519.pub").read_text())
        self.known_hosts = self.dir / "known_hosts"
        self.log_path = self.dir / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host_public_key(self) -> str:
        return " ".join((self.dir / "host_ed25519.pub").read_text().split()[:2])

    # -- start / stop ---------------------------------------------------------------------
    def start(self) -> Sshd:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation dir
        for attempt in range(3):  # another process may take the free port before sshd binds
            self.port = free_ports("tcp", 1)
            self._write_config()
            self.known_hosts.write_text(f"[{HOST}]:{self.port} {self.host_public_key}\n")
            self.process = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL,
                                            stderr=open(self.log_path, "ab"))  # noqa: SIM115
            if self._wait_listening():
                return self
            self.stop()
            if "Address already in use" not in self.log() or attempt == 2:
                raise RuntimeError(f"sshd did not start:\n{self.log()}")
        raise AssertionError("unreachable")

    def _command(self) -> list[str]:
        sshd = [SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")]
        if not self.extra_users and self.login_shell is None:
            return sshd
        passwd = self.dir / "passwd"
        lines = []
        for line in Path("/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if self.login_shell and len(fields) == 7 and fields[0] == self.user:
                fields[6] = self.login_shell  # not the user's bash with its slow ~/.bashrc
            lines.append(":".join(fields))
        lines += [f"{name}:x:0:0:test user:{self.dir}:{self.login_shell or '/bin/sh'}"
                  for name in self.extra_users]
        passwd.write_text("\n".join(lines) + "\n")
        # the copy of /etc/passwd is seen by this sshd (and its sessions) only
        script = 'mount --bind "$1" /etc/passwd && shift && exec "$@"'
        return [shutil.which("unshare") or "unshare", "--mount", "--propagation", "private",
                "sh", "-c", script, "sh", str(passwd), *sshd]

    def _write_config(self) -> None:
        config = [
            f"Port {self.port}",
            f"ListenAddress {HOST}",
            f"HostKey {self.host_key}",
            f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            "StrictModes no",  # the test's temporary directories are not root-owned 0755
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "UseDNS no",
            "MaxStartups 64",
            "MaxSessions 64",
            "LogLevel VERBOSE",
            f"AllowUsers {' '.join([self.user, *self.extra_users[1:]])}",
        ]
        if self.force_command:
            config.append(f"ForceCommand {self.force_command}")
        (self.dir / "sshd_config").write_text("\n".join(config) + "\n" + self.extra_config)

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()  # sshd's sessions keep running: the tests end them
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def sessions(self) -> list[int]:
        """The pids of sshd's session processes (its children: one per connection)."""
        if self.process is None:
            return []
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    # the field after the parenthesised command name: state, then the ppid
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(stat[1]) == self.process.pid:
                        children.append(int(entry.name))
        return children

    def kill_sessions(self) -> int:
        """End every open session abruptly (the connection drops); how many there were."""
        pids = self.sessions()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def backend_settings(self) -> dict[str, Any]:
        """The `ssh` backend's connection settings that log in here as `user`."""
        return {"host": HOST, "port": self.port, "user": self.user,
                "key": str(self.client_key), "known_hosts": str(self.known_hosts)}

    def ssh_command(self, *command: str) -> list[str]:
        """An OpenSSH client command line that logs in here as `user`."""
        return ["ssh", "-p", str(self.port), "-i", str(self.client_key),
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", f"{self.user}@{HOST}", *command]

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
