"""Who is calling: Redfish sessions, HTTP Basic auth and role privileges.

Credentials are always checked against the node's live `UserStore` (shared with IPMI), so a
password changed over IPMI works here at once. A session token is kept only as its SHA-256
digest: the plain token exists in the 201 answer and nowhere else, and is never logged.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bmc.lockout import AccountLockout
from bmc.users import Privilege, User, UserStore

if TYPE_CHECKING:
    from bmc.node import Node

log = logging.getLogger(__name__)

#: idle seconds after which a session ends (reported as SessionService.SessionTimeout)
DEFAULT_SESSION_TIMEOUT = 1800
#: sessions per BMC (clients such as sushy open a session per connection and not all of them
#: log out, so a user past its share loses its own least recently used session)
DEFAULT_SESSION_LIMIT = 64
#: one user's share of DEFAULT_SESSION_LIMIT: four busy users fit, none can crowd out the rest
DEFAULT_SESSION_USER_LIMIT = 16


class SessionLimitReached(Exception):
    """Every session slot is held by other users: a login may not evict theirs."""

# Redfish standard roles -> their privileges (DSP0266 "Roles")
ROLE_PRIVILEGES: dict[str, frozenset[str]] = {
    "Administrator": frozenset({"Login", "ConfigureManager", "ConfigureUsers",
                                "ConfigureComponents", "ConfigureSelf"}),
    "Operator": frozenset({"Login", "ConfigureComponents", "ConfigureSelf"}),
    "ReadOnly": frozenset({"Login", "ConfigureSelf"}),
}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass
class Session:
    id: str
    user_id: int
    user_name: str
    client_address: str
    created: float = field(default_factory=time.time)  # wall clock, for CreatedTime
    #: the user's credentials epoch at login: a password change since ends the session
    credentials_epoch: int = 0
    last_used: float = field(default_factory=time.monotonic)


class SessionStore:
    """The open sessions of one BMC. Thread-safe."""

    def __init__(self, timeout: float = DEFAULT_SESSION_TIMEOUT,
                 limit: int = DEFAULT_SESSION_LIMIT,
                 clock: Callable[[], float] = time.monotonic,
                 user_limit: int | None = None) -> None:
        self.timeout = timeout
        self.limit = limit
        #: sessions one user may hold; None: a quarter of `limit` (at least 1)
        self.user_limit = max(1, limit // 4) if user_limit is None else min(user_limit, limit)
        self._clock = clock  # injectable: tests step it instead of sleeping
        self._lock = threading.Lock()
        self._by_digest: dict[bytes, Session] = {}
        self._by_id: dict[str, tuple[bytes, Session]] = {}

    def create(self, user: User, client_address: str = "") -> tuple[Session, str]:
        """A new session for `user` and its token (to hand out once, never to store).

        A user at its share, or with sessions when all slots are taken, loses its own least
        recently used one; a user without any when all slots are taken by others gets
        SessionLimitReached: one user's logins never end another user's sessions.
        """
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._purge(now)
            own = [s for _, s in self._by_id.values() if s.user_id == user.user_id]
            own.sort(key=lambda s: s.last_used)
            while own and (len(own) >= self.user_limit or len(self._by_id) >= self.limit):
                self._drop(own.pop(0).id)
            if len(self._by_id) >= self.limit:
                raise SessionLimitReached()
            session_id = secrets.token_hex(8)
            while session_id in self._by_id:  # a 64-bit clash; cheap to rule out
                session_id = secrets.token_hex(8)
            session = Session(session_id, user.user_id, user.name, client_address,
                              last_used=now, credentials_epoch=user.credentials_epoch)
            digest = _digest(token)
            self._by_digest[digest] = session
            self._by_id[session_id] = (digest, session)
        return session, token

    def by_token(self, token: str) -> Session | None:
        """The live session the token opens, marking it used; None if unknown or expired."""
        now = self._clock()
        with self._lock:
            session = self._by_digest.get(_digest(token))
            if session is None:
                return None
            if now - session.last_used > self.timeout:
                self._drop(session.id)
                return None
            session.last_used = now
            return session

    def get(self, session_id: str) -> Session | None:
        with self._lock:
            self._purge(self._clock())
            pair = self._by_id.get(session_id)
            return pair[1] if pair else None

    def all(self) -> list[Session]:
        with self._lock:
            self._purge(self._clock())
            return sorted((s for _, s in self._by_id.values()), key=lambda s: s.created)

    def delete(self, session_id: str) -> bool:
        with self._lock:
            return self._drop(session_id)

    def _drop(self, session_id: str) -> bool:
        pair = self._by_id.pop(session_id, None)
        if pair is None:
            return False
        self._by_digest.pop(pair[0], None)
        return True

    def _purge(self, now: float) -> None:
        expired = [s.id for _, s in self._by_id.values() if now - s.last_used > self.timeout]
        for session_id in expired:
            self._drop(session_id)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    user: User
    session: Session | None  # None for HTTP Basic

    @property
    def role(self) -> str:
        return self.user.privilege.redfish_role

    def has(self, privilege: str) -> bool:
        return privilege in ROLE_PRIVILEGES.get(self.role, frozenset())


def usable(user: User | None) -> bool:
    """May this account log in at all? (IPMI's NO_ACCESS level locks it out here too.)"""
    return user is not None and user.enabled and user.privilege is not Privilege.NO_ACCESS


def login(users: UserStore, name: str, password: str,
          lockout: AccountLockout | None = None, source: str = "") -> User | None:
    """The account `name`/`password` opens, if it may log in and `source` (the client's
    address) is not locked out of it.

    With `lockout` (the node's, shared with IPMI), failures are counted per source: a source
    locked out of an account is refused whatever the password (so guessing gets nowhere),
    while the account stays usable from elsewhere.
    """
    if lockout is not None and lockout.is_locked(name, source):
        return None
    user = users.authenticate(name, password)
    if lockout is not None:
        if user is not None:
            lockout.succeeded(name, source)
        elif lockout.failed(name, source, known=users.by_name(name) is not None):
            log.warning("%s locked out of account %r after %d failed logins", source or "?",
                        name, lockout.threshold)
    return user if usable(user) else None


def from_token(users: UserStore, sessions: SessionStore, token: str) -> Principal | None:
    session = sessions.by_token(token)
    if session is None:
        return None
    # the account may have been deleted, renamed or disabled (e.g. over IPMI) since login
    user = users.by_id(session.user_id)
    if (not usable(user) or user is None or user.name != session.user_name
            or user.credentials_epoch != session.credentials_epoch):  # password changed
        sessions.delete(session.id)
        return None
    return Principal(user, session)


def from_basic(users: UserStore, name: str, password: str,
               lockout: AccountLockout | None = None, source: str = "") -> Principal | None:
    user = login(users, name, password, lockout, source)
    return Principal(user, None) if user else None


#: the Redfish session store of each node, for the listeners that are not the Redfish app but
#: accept its sessions (the WebSocket console); the app registers a node's store on first use
_SESSION_STORES: weakref.WeakKeyDictionary[Node, SessionStore] = weakref.WeakKeyDictionary()
_SESSION_STORES_LOCK = threading.Lock()


def register_sessions(node: Node, store: SessionStore) -> None:
    with _SESSION_STORES_LOCK:
        _SESSION_STORES[node] = store


def sessions_of(node: Node) -> SessionStore | None:
    """The node's Redfish sessions; None if no Redfish request has been served for it yet
    (then no session exists either)."""
    with _SESSION_STORES_LOCK:
        return _SESSION_STORES.get(node)


def from_token_of(node: Node, token: str) -> Principal | None:
    """The principal a Redfish session token (X-Auth-Token) opens on `node`, or None."""
    store = sessions_of(node)
    return from_token(node.users, store, token) if store is not None and token else None
