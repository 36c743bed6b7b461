"""BMC user accounts, shared by IPMI (user IDs, privilege levels) and Redfish (accounts, roles)."""

from __future__ import annotations

import hmac
import threading
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bmc.state import NodeState


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
    """One user slot. `privilege` is the limit on the (single) LAN channel and the Redfish role.

    A slot may exist without a name (IPMI lets a password or privilege be set first); such a
    slot is invisible to lookups by name, `by_id` and `all`, and can never be enabled.
    """

    user_id: int
    name: str
    password: str
    privilege: Privilege = Privilege.ADMINISTRATOR
    enabled: bool = True
    # IPMI per-channel access bits (Set/Get User Access); one LAN channel
    ipmi_messaging: bool = True
    link_auth: bool = False
    callback_only: bool = False
    #: counts password changes: a session opened before one (Redfish, IPMI) has ended
    credentials_epoch: int = 0

    def password_bytes(self) -> bytes:
        return self.password.encode()

    @property
    def may_use_ipmi(self) -> bool:
        """May open an IPMI LAN session: named, enabled, some privilege, IPMI messaging on."""
        return (bool(self.name) and self.enabled and self.ipmi_messaging
                and self.privilege is not Privilege.NO_ACCESS)


class UserStore:
    """The user table of one BMC. Thread-safe; both front ends read and change it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[int, User] = {}
        self._state: NodeState | None = None

    # -- persistence (bmc/state.py): the whole table, saved under the lock after each change --
    def attach(self, state: NodeState) -> None:
        """Keep the table in `state`: a saved table replaces this one (the configured users
        only seed a node whose users were never changed); saved from the first change on
        (nothing is written at start: a large fleet starts without a write per node)."""
        saved = state.get("users", "table")
        with self._lock:
            if saved is not None:
                try:
                    self._users = {int(k): _user_from(v) for k, v in saved.items()}
                except (TypeError, ValueError, KeyError) as exc:
                    raise ValueError(f"saved user table is not readable: {exc}") from exc
            self._state = state

    def _save(self) -> None:
        if self._state is not None:
            self._state.save("users", "table",
                             {str(i): asdict(u) for i, u in self._users.items()})

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
                free = [i for i in range(2, MAX_USERS + 1) if not self._named(i)]
                if not free:
                    raise ValueError("no free user slot")
                user_id = free[0]
            _check_id(user_id)
            if self._named(user_id):
                raise ValueError(f"user id {user_id} is taken")
            user = User(user_id, name, password, privilege, enabled)
            self._users[user_id] = user
            self._save()
            return user

    def _find(self, name: str) -> User | None:
        return next((u for u in self._users.values() if name and u.name == name), None)

    def _named(self, user_id: int) -> bool:
        user = self._users.get(user_id)
        return user is not None and bool(user.name)

    def by_name(self, name: str) -> User | None:
        """The enabled-or-not user called `name`; never matches an empty (null) name."""
        if not name:
            return None
        with self._lock:
            return self._find(name)

    def by_id(self, user_id: int) -> User | None:
        """The named user in slot `user_id` (a slot without a name is no account)."""
        with self._lock:
            user = self._users.get(user_id)
            return user if user is not None and user.name else None

    def all(self) -> list[User]:
        """Every named user, by ID."""
        with self._lock:
            return sorted((u for u in self._users.values() if u.name), key=lambda u: u.user_id)

    # -- IPMI user slots (Set User Name / Password / Access); ID 1 is never changed --------
    def slot(self, user_id: int) -> User | None:
        """The slot `user_id`, named or not; None if it was never set."""
        with self._lock:
            return self._users.get(user_id)

    def _slot_for_change(self, user_id: int) -> User:
        _check_id(user_id)
        user = self._users.get(user_id)
        if user is None:  # IPMI may set a password or privilege before the name
            user = self._users[user_id] = User(user_id, "", "", Privilege.NO_ACCESS, False)
        return user

    def set_name(self, user_id: int, name: str) -> User:
        """Name slot `user_id`; a new slot starts disabled, NO ACCESS. "" clears (and disables)."""
        if len(name.encode()) > 16:
            raise ValueError("user names are at most 16 bytes")
        with self._lock:
            other = self._find(name)
            if other is not None and other.user_id != user_id:
                raise ValueError(f"user {name!r} exists")
            user = self._slot_for_change(user_id)
            user.name = name
            if not name:
                user.enabled = False  # never an enabled null user
            self._save()
            return user

    def set_password(self, user_id: int, password: str) -> User:
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise ValueError(f"password longer than {MAX_PASSWORD_BYTES} bytes")
        with self._lock:
            user = self._slot_for_change(user_id)
            user.password = password
            user.credentials_epoch += 1
            self._save()
            return user

    def set_enabled(self, user_id: int, enabled: bool) -> User:
        with self._lock:
            user = self._slot_for_change(user_id)
            if enabled and not user.name:
                raise ValueError("a user without a name cannot be enabled")
            user.enabled = enabled
            self._save()
            return user

    def set_access(self, user_id: int, *, privilege: Privilege | None = None,
                   ipmi_messaging: bool | None = None, link_auth: bool | None = None,
                   callback_only: bool | None = None) -> User:
        """Change the channel access of slot `user_id`; None leaves a field as it is."""
        with self._lock:
            user = self._slot_for_change(user_id)
            if privilege is not None:
                user.privilege = privilege
            if ipmi_messaging is not None:
                user.ipmi_messaging = ipmi_messaging
            if link_auth is not None:
                user.link_auth = link_auth
            if callback_only is not None:
                user.callback_only = callback_only
            self._save()
            return user

    def remove(self, user_id: int) -> None:
        with self._lock:
            self._users.pop(user_id, None)
            self._save()

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if `name`/`password` match an enabled account (constant-time compare)."""
        user = self.by_name(name)
        if user is None or not user.enabled:
            return None
        if not hmac.compare_digest(user.password.encode(), password.encode()):
            return None
        return user


def _user_from(saved: dict[str, Any]) -> User:
    return User(**{**saved, "privilege": Privilege(saved["privilege"])})


def _check_id(user_id: int) -> None:
    if user_id == 1:
        raise ValueError("user ID 1 is the reserved null user")
    if not 2 <= user_id <= MAX_USERS:
        raise ValueError(f"user id must be 2..{MAX_USERS}")
