"""The password of a BMC behind a proxy backend: named in the config, never written in it.

A proxy backend's settings say where its password is (`password_env`: an environment
variable, or `password_file`: a file), not what it is, so a config file can be shared and
logged. The password is read at each use (a rotated file is picked up without a restart) and
never kept in an attribute, a repr or a log line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from backends.base import BackendError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class PasswordSource:
    """Where a password is: exactly one of an environment variable or a file."""

    env: str | None = None
    file: str | None = None

    @classmethod
    def from_settings(cls, password_env: str | None, password_file: str | None
                      ) -> PasswordSource:
        """Check the two settings (ValueError/TypeError for the config to report)."""
        if (password_env is None) == (password_file is None):
            raise ValueError("exactly one of password_env (an environment variable's name) "
                             "or password_file (a file's path) is required")
        if password_env is not None:
            if not isinstance(password_env, str) or not _ENV_NAME.fullmatch(password_env):
                raise ValueError(f"password_env: {password_env!r} is not an environment "
                                 "variable name")
            if password_env not in os.environ:
                raise ValueError(f"password_env: the environment variable {password_env} "
                                 "is not set")
            return cls(env=password_env)
        if not isinstance(password_file, str) or not password_file:
            raise TypeError("password_file: must be a file's path")
        if not Path(password_file).is_file():
            raise ValueError(f"password_file: {password_file} is not a file")
        return cls(file=password_file)

    def read(self) -> str:
        """The password now; BackendError (naming where, never what) if it cannot be read."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise BackendError(f"the environment variable {self.env} (password_env) "
                                   "is not set")
            return value
        assert self.file is not None
        try:
            text = Path(self.file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not text"
            raise BackendError(f"cannot read password_file {self.file}: {reason}") from None
        # one line: editors and `echo` add a newline the password does not contain
        return text.removesuffix("\n").removesuffix("\r")

    def __str__(self) -> str:
        return f"${self.env}" if self.env is not None else f"file {self.file}"
