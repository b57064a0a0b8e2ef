"""The console's own SQLite: users, sessions, API tokens, login failures and the audit log.

Secrets are never stored: a session id or API token is kept as its SHA-256,
a password as its argon2 hash (``auth``). Every write is one short
transaction; the file is WAL so a second console process (``gateway console
users add``) can write while the server runs. Times are wall-clock ns from
the injected clock.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import ConsoleError

ROLES = ("viewer", "operator", "supervisor", "admin")
# Audit rows kept; past this the oldest go (an on-call console must not fill its disk).
AUDIT_KEEP = 100_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, pw_hash TEXT NOT NULL,
    created_ns INTEGER NOT NULL, disabled INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY, user TEXT NOT NULL, csrf TEXT NOT NULL,
    created_ns INTEGER NOT NULL, expires_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id_hash TEXT PRIMARY KEY, user TEXT NOT NULL, label TEXT NOT NULL,
    created_ns INTEGER NOT NULL, expires_ns INTEGER);
CREATE TABLE IF NOT EXISTS login_failures (who TEXT NOT NULL, ts_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS login_failures_who ON login_failures (who, ts_ns);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, user TEXT NOT NULL,
    action TEXT NOT NULL, site TEXT, alarm_id TEXT, ok INTEGER NOT NULL, detail TEXT);
CREATE TABLE IF NOT EXISTS spent_links (nonce TEXT PRIMARY KEY, expires_s INTEGER NOT NULL);
"""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class User:
    name: str
    role: str
    pw_hash: str
    disabled: bool = False

    def may(self, role: str) -> bool:
        """True when this user's role is ``role`` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    via_token: bool = False


class ConsoleStore:
    """Thread-safe access to the console database (one connection, one lock)."""

    def __init__(self, path: Path | str) -> None:
        try:
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA busy_timeout=5000")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConsoleError(f"console database {path}: {exc}") from exc
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _q(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ users

    def add_user(self, name: str, role: str, pw_hash: str, now_ns: int) -> None:
        if role not in ROLES:
            raise ConsoleError(f"role {role!r} is not one of {', '.join(ROLES)}")
        try:
            self._q("INSERT INTO users VALUES (?, ?, ?, ?, 0)", (name, role, pw_hash, now_ns))
        except sqlite3.IntegrityError:
            raise ConsoleError(f"user {name!r} exists already") from None

    def set_user(
        self,
        name: str,
        *,
        role: str | None = None,
        pw_hash: str | None = None,
        disabled: bool | None = None,
    ) -> None:
        if self.user(name) is None:
            raise ConsoleError(f"no user {name!r}")
        if role is not None:
            if role not in ROLES:
                raise ConsoleError(f"role {role!r} is not one of {', '.join(ROLES)}")
            self._q("UPDATE users SET role = ? WHERE name = ?", (role, name))
        if pw_hash is not None:
            self._q("UPDATE users SET pw_hash = ? WHERE name = ?", (pw_hash, name))
        if disabled is not None:
            self._q("UPDATE users SET disabled = ? WHERE name = ?", (int(disabled), name))
            if disabled:  # a disabled user's sessions and tokens end at once
                self._q("DELETE FROM sessions WHERE user = ?", (name,))
                self._q("DELETE FROM tokens WHERE user = ?", (name,))

    def user(self, name: str) -> User | None:
        rows = self._q("SELECT name, role, pw_hash, disabled FROM users WHERE name = ?", (name,))
        return User(rows[0][0], rows[0][1], rows[0][2], bool(rows[0][3])) if rows else None

    def users(self) -> list[User]:
        rows = self._q("SELECT name, role, pw_hash, disabled FROM users ORDER BY name")
        return [User(r[0], r[1], r[2], bool(r[3])) for r in rows]

    # ------------------------------------------------------------------ sessions and tokens

    def add_session(self, sid: str, user: str, csrf: str, now_ns: int, expires_ns: int) -> None:
        self._q("DELETE FROM sessions WHERE expires_ns <= ?", (now_ns,))
        self._q(
            "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
            (digest(sid), user, csrf, now_ns, expires_ns),
        )

    def session(self, sid: str, now_ns: int) -> Session | None:
        rows = self._q(
            "SELECT user, csrf FROM sessions WHERE id_hash = ? AND expires_ns > ?",
            (digest(sid), now_ns),
        )
        return self._live(rows[0][0], rows[0][1], False) if rows else None

    def drop_session(self, sid: str) -> None:
        self._q("DELETE FROM sessions WHERE id_hash = ?", (digest(sid),))

    def add_token(
        self, token: str, user: str, label: str, now_ns: int, expires_ns: int | None
    ) -> None:
        self._q(
            "INSERT INTO tokens VALUES (?, ?, ?, ?, ?)",
            (digest(token), user, label, now_ns, expires_ns),
        )

    def token(self, token: str, now_ns: int) -> Session | None:
        rows = self._q(
            "SELECT user FROM tokens WHERE id_hash = ? AND (expires_ns IS NULL OR expires_ns > ?)",
            (digest(token), now_ns),
        )
        return self._live(rows[0][0], "", True) if rows else None

    def _live(self, name: str, csrf: str, via_token: bool) -> Session | None:
        user = self.user(name)
        if user is None or user.disabled:
            return None
        return Session(user, csrf, via_token)

    # ------------------------------------------------------------------ acknowledgement links

    def spend_link(self, nonce: str, expires_s: int, now_s: float) -> bool:
        """Mark a link's nonce used; False if it was used already (a replay).

        Kept until the link expires: past that the signature check refuses it anyway."""
        with self.lock:
            self.db.execute("DELETE FROM spent_links WHERE expires_s < ?", (int(now_s),))
            cur = self.db.execute(
                "INSERT OR IGNORE INTO spent_links VALUES (?, ?)", (nonce, expires_s)
            )
            return cur.rowcount == 1

    def link_spent(self, nonce: str) -> bool:
        return bool(self._q("SELECT 1 FROM spent_links WHERE nonce = ?", (nonce,)))

    def unspend_link(self, nonce: str) -> None:
        """The acknowledgement never reached a gateway (broker down, no reply): may try again."""
        self._q("DELETE FROM spent_links WHERE nonce = ?", (nonce,))

    # ------------------------------------------------------------------ login limits

    def login_failed(self, who: str, now_ns: int) -> None:
        self._q("INSERT INTO login_failures VALUES (?, ?)", (who, now_ns))

    def failures_since(self, who: str, since_ns: int) -> int:
        self._q("DELETE FROM login_failures WHERE ts_ns < ?", (since_ns,))
        rows = self._q(
            "SELECT count(*) FROM login_failures WHERE who = ? AND ts_ns >= ?", (who, since_ns)
        )
        return int(rows[0][0])

    # ------------------------------------------------------------------ audit

    def audit(
        self,
        ts_ns: int,
        user: str,
        action: str,
        ok: bool,
        *,
        site: str | None = None,
        alarm_id: str | None = None,
        detail: str | None = None,
    ) -> None:
        self._q(
            "INSERT INTO audit (ts_ns, user, action, site, alarm_id, ok, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ts_ns, user, action, site, alarm_id, int(ok), detail),
        )
        self._q("DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?", (AUDIT_KEEP,))

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._q(
            "SELECT ts_ns, user, action, site, alarm_id, ok, detail FROM audit"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        keys = ("ts_ns", "user", "action", "site", "alarm_id", "ok", "detail")
        return [{**dict(zip(keys, r, strict=True)), "ok": bool(r[5])} for r in rows]
