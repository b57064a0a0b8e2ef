"""Console users, sessions, tokens and the login limit, on a fake clock and a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.console.auth import (
    LOGIN_MAX_FAILURES,
    LOGIN_WINDOW_S,
    Auth,
    LoginLimited,
    LoginRefused,
    add_user,
)
from gateway.console.store import ConsoleStore
from gateway.errors import ConsoleError
from gateway.model import FakeClock

PW = "correct horse battery"


@pytest.fixture
def auth(tmp_path: Path) -> Auth:
    clock = FakeClock()
    store = ConsoleStore(tmp_path / "console.sqlite")
    add_user(store, "wang", "operator", PW, clock)
    add_user(store, "vera", "viewer", PW, clock)
    return Auth(store, clock, session_s=3600)


def test_password_is_hashed_with_argon2_and_checked(auth: Auth) -> None:
    user = auth.store.user("wang")
    assert user is not None and user.pw_hash.startswith("$argon2id$") and PW not in user.pw_hash
    sid, session = auth.login("wang", PW, "10.0.0.1")
    assert auth.session(sid) == session and session.user.name == "wang"
    with pytest.raises(LoginRefused, match="wrong user name or password"):
        auth.login("wang", "not it at all", "10.0.0.1")
    with pytest.raises(LoginRefused, match="wrong user name or password"):  # same words
        auth.login("nobody", PW, "10.0.0.1")


def test_sessions_expire_and_are_stored_hashed(auth: Auth) -> None:
    sid, _ = auth.login("wang", PW, "a")
    rows = auth.store._q("SELECT id_hash FROM sessions")
    assert rows and sid not in str(rows)
    assert isinstance(auth.clock, FakeClock)
    auth.clock.advance(3601)
    assert auth.session(sid) is None


def test_login_is_limited_per_name_and_per_address(auth: Auth) -> None:
    for _ in range(LOGIN_MAX_FAILURES):
        with pytest.raises(LoginRefused):
            auth.login("wang", "guess guess", "10.0.0.9")
    # The right password does not help while the limit holds, from any address for this name...
    with pytest.raises(LoginLimited):
        auth.login("wang", PW, "10.0.0.2")
    # ...nor for another name from the address that guessed.
    with pytest.raises(LoginLimited):
        auth.login("vera", PW, "10.0.0.9")
    auth.login("vera", PW, "10.0.0.2")
    assert isinstance(auth.clock, FakeClock)
    auth.clock.advance(LOGIN_WINDOW_S + 1)
    auth.login("wang", PW, "10.0.0.9")


def test_disabled_user_loses_sessions_and_tokens(auth: Auth) -> None:
    sid, session = auth.login("wang", PW, "a")
    token = auth.new_token(session.user, "script", None)
    assert auth.bearer(f"Bearer {token}") is not None
    auth.store.set_user("wang", disabled=True)
    assert auth.session(sid) is None and auth.bearer(f"Bearer {token}") is None
    with pytest.raises(LoginRefused):
        auth.login("wang", PW, "b")


def test_tokens_expire_and_need_no_csrf(auth: Auth) -> None:
    _, session = auth.login("wang", PW, "a")
    token = auth.new_token(session.user, "cron", 60)
    via = auth.bearer(f"Bearer {token}")
    assert via is not None and via.via_token and auth.csrf_ok(via, None)
    assert not auth.csrf_ok(session, None) and not auth.csrf_ok(session, "x" * 43)
    assert auth.csrf_ok(session, session.csrf)
    assert isinstance(auth.clock, FakeClock)
    auth.clock.advance(61)
    assert auth.bearer(f"Bearer {token}") is None


def test_roles_include_the_ones_below(auth: Auth) -> None:
    wang = auth.store.user("wang")
    assert wang is not None and wang.may("viewer") and wang.may("operator")
    assert not wang.may("supervisor") and not wang.may("admin")


@pytest.mark.parametrize(
    ("name", "role", "password", "message"),
    [
        ("li", "janitor", PW, "role 'janitor'"),
        ("li", "operator", "short", "at least 8"),
        ("li wang", "operator", PW, "user name"),
        ("-li", "operator", PW, "user name"),
        ("wang", "operator", PW, "exists already"),
    ],
)
def test_bad_users_are_refused_and_change_nothing(
    auth: Auth, name: str, role: str, password: str, message: str
) -> None:
    before = auth.store.users()
    with pytest.raises(ConsoleError, match=message):
        add_user(auth.store, name, role, password, auth.clock)
    assert auth.store.users() == before
