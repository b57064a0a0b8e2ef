"""Who is asking, and may they: passwords, sessions with CSRF tokens, API tokens, login limits.

- Passwords: argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile).
- Browser sessions: a random id in an HttpOnly, SameSite=Strict cookie; the
  store keeps only its hash. Each session has a CSRF token that every
  state-changing request must echo (form field ``csrf`` or header
  ``X-CSRF-Token``), compared in constant time.
- API tokens (``Authorization: Bearer fsg_...``) for scripts: no cookie, so
  no CSRF; same roles as their user.
- Login: at most ``LOGIN_MAX_FAILURES`` failures per user name and per client
  address in ``LOGIN_WINDOW_S``; past that logins are refused (429) until
  the window moves, whether or not the password is right.
- Roles, each including the ones before it: viewer (sees), operator (ack,
  shelve, unshelve), supervisor (reset, out of service, in service), admin
  (users, asking a gateway to reload its config).
"""

from __future__ import annotations

import hmac
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.console.store import ROLES, ConsoleStore, Session, User
from gateway.errors import ConsoleError
from gateway.model import Clock

SESSION_COOKIE = "fsg_session"
SESSION_S = 12 * 3600  # one night shift
LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW_S = 300
# The gate's user pattern (commands carry the name in ``by``): one safe token.
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PASSWORD_MIN = 8
TOKEN_PREFIX = "fsg_"

# Which role each command needs.
COMMAND_ROLE = {
    "ack": "operator",
    "shelve": "operator",
    "unshelve": "operator",
    "reset": "supervisor",
    "out_of_service": "supervisor",
    "in_service": "supervisor",
}

_hasher = PasswordHasher()
# Verified against when the user does not exist, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


class LoginRefused(ConsoleError):
    """Wrong name or password (one message for both)."""


class LoginLimited(ConsoleError):
    """Too many failed logins for this name or address."""


def hash_password(password: str) -> str:
    if len(password) < PASSWORD_MIN:
        raise ConsoleError(f"password must have at least {PASSWORD_MIN} characters")
    return _hasher.hash(password)


def check_name(name: str) -> str:
    if not USER_NAME.fullmatch(name):
        raise ConsoleError(
            f"user name {name!r}: letters, digits, '_', '.', '-' (up to 64), starting with"
            " a letter or digit"
        )
    return name


def add_user(store: ConsoleStore, name: str, role: str, password: str, clock: Clock) -> None:
    if role not in ROLES:
        raise ConsoleError(f"role {role!r} is not one of {', '.join(ROLES)}")
    store.add_user(check_name(name), role, hash_password(password), clock.now_ns())


class Auth:
    """Logins, sessions and tokens over a ``ConsoleStore``, on an injected clock."""

    def __init__(self, store: ConsoleStore, clock: Clock, session_s: float = SESSION_S) -> None:
        self.store = store
        self.clock = clock
        self.session_s = session_s

    def login(self, name: str, password: str, client: str) -> tuple[str, Session]:
        """A new session id and its session, or LoginRefused / LoginLimited."""
        now = self.clock.now_ns()
        since = now - LOGIN_WINDOW_S * 10**9
        for who in (f"user:{name}", f"addr:{client}"):
            if self.store.failures_since(who, since) >= LOGIN_MAX_FAILURES:
                raise LoginLimited("too many failed logins; try again in a few minutes")
        user = self.store.user(name) if USER_NAME.fullmatch(name) else None
        if (
            not _verify(user.pw_hash if user else _DUMMY_HASH, password)
            or user is None
            or (user.disabled)
        ):
            self.store.login_failed(f"user:{name}", now)
            self.store.login_failed(f"addr:{client}", now)
            raise LoginRefused("wrong user name or password")
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.store.add_session(sid, user.name, csrf, now, now + int(self.session_s * 1e9))
        return sid, Session(user, csrf)

    def session(self, sid: str | None) -> Session | None:
        return self.store.session(sid, self.clock.now_ns()) if sid else None

    def bearer(self, header: str | None) -> Session | None:
        if not header or not header.startswith("Bearer "):
            return None
        return self.store.token(header.removeprefix("Bearer ").strip(), self.clock.now_ns())

    def new_token(self, user: User, label: str, ttl_s: float | None) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock.now_ns()
        self.store.add_token(
            token, user.name, label, now, None if ttl_s is None else now + int(ttl_s * 1e9)
        )
        return token

    @staticmethod
    def csrf_ok(session: Session, sent: str | None) -> bool:
        if session.via_token:
            return True
        return bool(sent) and hmac.compare_digest(session.csrf.encode(), (sent or "").encode())


def _verify(pw_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(pw_hash, password)
    except (VerificationError, InvalidHashError):
        return False
