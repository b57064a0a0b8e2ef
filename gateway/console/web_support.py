"""What every route of the console shares: the Console, the templates, who is asking.

``Console`` holds the console's state, store, auth and broker link (and the
one-shot results a page shows after its redirect); ``TEMPLATES`` are the
Jinja2 pages with their filters (``when``, ``ago``, ``alarm_url``). A
request's user is its bearer token or its session cookie (``ApiUser``: 401
without one; ``PageUser``: redirect to the login page). The request models
(``ActionIn``...) and the types of the helpers ``create_app`` hands to the
route modules (``pages``, ``links``, ``api``) are here too.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from pydantic import BaseModel, ConfigDict, Field

from gateway.console.auth import SESSION_COOKIE, Auth
from gateway.console.mqtt_link import MqttLink
from gateway.console.state import ConsoleState
from gateway.console.store import ConsoleStore, Session
from gateway.model import Clock

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
Action = Literal["ack", "shelve", "unshelve", "reset", "out_of_service", "in_service"]
CONFIRM = ("reset", "out_of_service")
RESULTS_KEPT = 1000
# Who an acknowledgement by link without a login is recorded as (``<this> via console``).
LINK_ACTOR = "signed-link"


@dataclass
class Console:
    state: ConsoleState
    store: ConsoleStore
    auth: Auth
    link: MqttLink
    clock: Clock
    secure_cookies: bool = False
    heartbeat_s: float = 5.0
    # The outcome of a page's action, shown once after the redirect. Kept here, not in
    # the URL, so a crafted link cannot make the console "say" something (bounded).
    results: OrderedDict[str, tuple[str, bool, str]] = field(default_factory=OrderedDict)
    # Acknowledgement links in notifications: the gateways' alerting.link_key, and
    # whether a valid link acknowledges without a login (the site's console settings).
    link_key: str | None = None
    link_without_login: bool = False

    def remember(self, user: str, ok: bool, text: str) -> str:
        token = secrets.token_urlsafe(12)
        self.results[token] = (user, ok, text)
        while len(self.results) > RESULTS_KEPT:
            self.results.popitem(last=False)
        return token

    def recall(self, user: str, token: str | None) -> tuple[str | None, str | None]:
        """(message, error) of the result ``token`` if it is ``user``'s; once."""
        if token is None or (got := self.results.get(token)) is None or got[0] != user:
            return None, None
        del self.results[token]
        return (got[2], None) if got[1] else (None, got[2])


class ActionIn(BaseModel):
    """One action on one alarm (the JSON body of ``POST /api/actions``)."""

    model_config = ConfigDict(extra="forbid")
    site: str = Field(min_length=1, max_length=64)
    alarm_id: str = Field(min_length=1, max_length=256)
    action: Action
    duration: str | float | None = Field(
        default=None, description="shelve / out of service: 2h, 30m"
    )
    reason: str | None = Field(default=None, max_length=200)
    comment: str | None = Field(default=None, max_length=500)


class ReloadIn(BaseModel):
    """A config reload of one site's gateway (the JSON body of ``POST /api/reload``)."""

    model_config = ConfigDict(extra="forbid")
    site: str = Field(min_length=1, max_length=64)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=64)
    ttl_s: float | None = Field(default=None, gt=0, le=366 * 86400)


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    role: Literal["viewer", "operator", "supervisor", "admin"]
    password: str = Field(min_length=8, max_length=1024)


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["viewer", "operator", "supervisor", "admin"] | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class LoginNeeded(Exception):
    """A page asked for by someone not logged in: redirect to the login page."""


# ---------------------------------------------------------------------- formatting


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def when(ns: Any) -> str:
    if not isinstance(ns, int):
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def since(state: ConsoleState, ns: int | None) -> Markup:
    """How long ago, in a span the page's script keeps counting."""
    text = ago(state.age_s(ns))
    if ns is None:
        return Markup(escape(text))
    return Markup('<span class="ago" data-ns="{}">{}</span>').format(int(ns), text)


TEMPLATES.env.filters["when"] = when
TEMPLATES.env.globals["ago"] = ago


def _safe_next(target: str | None) -> str:
    """Only a path on this console (no ``//host`` or scheme): no open redirect after login."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def alarm_url(site: str, alarm_id: str) -> str:
    return "/alarm?" + urlencode({"site": site, "id": alarm_id})


TEMPLATES.env.globals["alarm_url"] = alarm_url


# ---------------------------------------------------------------------- who is asking


def _who(request: Request) -> Session | None:
    c: Console = request.app.state.console
    return c.auth.bearer(request.headers.get("authorization")) or c.auth.session(
        request.cookies.get(SESSION_COOKIE)
    )


def api_user(request: Request) -> Session:
    s = _who(request)
    if s is None:
        raise HTTPException(
            401,
            "log in, or send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return s


def page_user(request: Request) -> Session:
    s = _who(request)
    if s is None:
        raise LoginNeeded()
    return s


ApiUser = Annotated[Session, Depends(api_user)]
PageUser = Annotated[Session, Depends(page_user)]

# The helpers create_app (web.py) builds over one Console and hands to the route modules.
Csrf = Callable[[Session, str | None], None]
Need = Callable[[Session, str], None]
Render = Callable[..., HTMLResponse]
AlarmView = Callable[..., HTMLResponse]
Act = Callable[[Session, ActionIn], Awaitable[dict[str, Any]]]
Reload = Callable[[Session, str], Awaitable[dict[str, Any]]]
