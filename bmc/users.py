"""BMC user accounts, shared by IPMI (user IDs, privilege levels) and Redfish (accounts, roles)."""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass
from enum import IntEnum


class Privilege(IntEnum):
    """IPMI privilege levels (IPMI 2.0 table 22-28); Redfish roles map onto them."""

    CALLBACK = 1
    USER = 2
    OPERATOR = 3
    ADMINISTRATOR = 4
    OEM = 5
    NO_ACCESS = 0x0F

    @property
    def redfish_role(self) -> str:
        return {
            Privilege.ADMINISTRATOR: "Administrator",
            Privilege.OPERATOR: "Operator",
        }.get(self, "ReadOnly")

    @classmethod
    def from_redfish_role(cls, role: str) -> Privilege:
        roles = {"Administrator": cls.ADMINISTRATOR, "Operator": cls.OPERATOR, "ReadOnly": cls.USER}
        try:
            return roles[role]
        except KeyError:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(roles)}") from None


#: IPMI user slots per channel; ID 1 is the reserved anonymous/null user (kept disabled)
MAX_USERS = 16
#: IPMI 2.0 passwords are at most 20 bytes
MAX_PASSWORD_BYTES = 20


@dataclass
class User:
    user_id: int
    name: str
    password: str
    privilege: Privilege = Privilege.ADMINISTRATOR
    enabled: bool = True

    def password_bytes(self) -> bytes:
        return self.password.encode()


class UserStore:
    """The user table of one BMC. Thread-safe; both front ends read and change it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[int, User] = {}

    def add(self, name: str, password: str, privilege: Privilege = Privilege.ADMINISTRATOR,
            user_id: int | None = None, enabled: bool = True) -> User:
        if not name:
            raise ValueError("a user needs a name: anonymous users are not allowed")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise ValueError(f"password longer than {MAX_PASSWORD_BYTES} bytes")
        with self._lock:
            if self._find(name) is not None:
                raise ValueError(f"user {name!r} exists")
            if user_id is None:
                free = [i for i in range(2, MAX_USERS + 1) if i not in self._users]
                if not free:
                    raise ValueError("no free user slot")
                user_id = free[0]
            if not 2 <= user_id <= MAX_USERS:
                raise ValueError(f"user id must be 2..{MAX_USERS}")
            user = User(user_id, name, password, privilege, enabled)
            self._users[user_id] = user
            return user

    def _find(self, name: str) -> User | None:
        return next((u for u in self._users.values() if u.name == name), None)

    def by_name(self, name: str) -> User | None:
        """The enabled-or-not user called `name`; never matches an empty (null) name."""
        if not name:
            return None
        with self._lock:
            return self._find(name)

    def by_id(self, user_id: int) -> User | None:
        with self._lock:
            return self._users.get(user_id)

    def all(self) -> list[User]:
        with self._lock:
            return sorted(self._users.values(), key=lambda u: u.user_id)

    def remove(self, user_id: int) -> None:
        with self._lock:
            self._users.pop(user_id, None)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if `name`/`password` match an enabled account (constant-time compare)."""
        user = self.by_name(name)
        if user is None or not user.enabled:
            return None
        if not hmac.compare_digest(user.password.encode(), password.encode()):
            return None
        return user
