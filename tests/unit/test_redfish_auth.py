"""Redfish session store and credential checks (no HTTP)."""

from __future__ import annotations

from bmc.users import Privilege, UserStore
from redfish.auth import Principal, SessionStore, from_basic, from_token, login


def users() -> UserStore:
    store = UserStore()
    store.add("admin", "password")
    return store


def test_token_opens_its_session_and_is_not_stored() -> None:
    store, sessions = users(), SessionStore()
    user = store.by_name("admin")
    assert user is not None
    session, token = sessions.create(user, "192.0.2.1")
    assert len(token) >= 32
    principal = from_token(store, sessions, token)
    assert principal == Principal(user, session)
    assert principal.role == "Administrator" and principal.has("ConfigureComponents")
    # only a digest is kept: the plain token is nowhere in the store's state
    assert token not in repr(vars(sessions))
    assert from_token(store, sessions, token + "x") is None
    assert sessions.delete(session.id) and not sessions.delete(session.id)
    assert from_token(store, sessions, token) is None


def test_tokens_and_ids_are_unique() -> None:
    store, sessions = users(), SessionStore(limit=1000)
    user = store.by_name("admin")
    assert user is not None
    made = [sessions.create(user) for _ in range(200)]
    assert len({token for _, token in made}) == 200
    assert len({session.id for session, _ in made}) == 200


def test_idle_sessions_expire() -> None:
    now = [1000.0]  # an injected clock: no sleeping, nothing for a loaded machine to break
    store, sessions = users(), SessionStore(timeout=30, clock=lambda: now[0])
    user = store.by_name("admin")
    assert user is not None
    _, token = sessions.create(user)
    now[0] += 29.9
    assert from_token(store, sessions, token) is not None  # and that use restarts the timer
    now[0] += 29.9
    assert from_token(store, sessions, token) is not None
    now[0] += 30.1
    assert from_token(store, sessions, token) is None
    assert sessions.all() == []


def test_limit_drops_the_least_recently_used() -> None:
    store, sessions = users(), SessionStore(limit=3, user_limit=3)
    user = store.by_name("admin")
    assert user is not None
    tokens = [sessions.create(user)[1] for _ in range(3)]
    assert from_token(store, sessions, tokens[0])  # touch the oldest: now the 2nd is LRU
    fourth = sessions.create(user)[1]
    assert len(sessions.all()) == 3
    assert from_token(store, sessions, tokens[1]) is None
    for token in (tokens[0], tokens[2], fourth):
        assert from_token(store, sessions, token) is not None


def test_credentials_follow_the_live_user_store() -> None:
    store = users()
    assert from_basic(store, "admin", "password") is not None
    assert from_basic(store, "admin", "Password") is None
    assert from_basic(store, "", "") is None
    operator = store.add("op", "pw", privilege=Privilege.OPERATOR)
    principal = from_basic(store, "op", "pw")
    assert principal is not None and principal.role == "Operator"
    assert not principal.has("ConfigureManager")
    operator.privilege = Privilege.NO_ACCESS
    assert login(store, "op", "pw") is None
    operator.privilege = Privilege.USER
    principal = from_basic(store, "op", "pw")
    assert principal is not None and principal.role == "ReadOnly"
    assert principal.has("Login") and not principal.has("ConfigureComponents")


def test_session_dies_with_a_disabled_or_renamed_user() -> None:
    store, sessions = users(), SessionStore()
    user = store.by_name("admin")
    assert user is not None
    _, token = sessions.create(user)
    user.enabled = False
    assert from_token(store, sessions, token) is None
    user.enabled = True
    assert from_token(store, sessions, token) is None  # dropped, not just refused
    _, token = sessions.create(user)
    user.name = "root"
    assert from_token(store, sessions, token) is None
