"""The console's HTTP side (FastAPI): phone-sized pages, server-sent events and a JSON API.

Pages (server-rendered Jinja2, a little JavaScript, no build step): active
alarms (unacknowledged first, then by severity and age), one alarm with its
timeline and its buttons (reset and out of service ask to confirm), devices
by area, gateways with their health, users (admin), audit (supervisor).
``/stream`` is a server-sent event stream: a change re-renders the page's
live part in place; a heartbeat every few seconds lets the page show a red
banner when the stream or the console's broker connection is lost, so a
stale page never looks live.

The JSON API (``/api/...``, OpenAPI at ``/docs`` and ``/openapi.json``) does
everything the pages do, with a session cookie plus ``X-CSRF-Token`` or with
``Authorization: Bearer <token>``. Status codes: 401 not logged in, 403 role
or CSRF, 404 unknown alarm, 409 refused by the gateway, 422 bad input, 429
login limit, 503 broker down, 504 the gateway did not answer.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.alerting import ack_link
from gateway.console.auth import (
    COMMAND_ROLE,
    SESSION_COOKIE,
    Auth,
    LoginLimited,
    LoginRefused,
    add_user,
    hash_password,
)
from gateway.console.mqtt_link import MqttLink, NoReply, Unavailable
from gateway.console.state import ConsoleState
from gateway.console.store import ROLES, ConsoleStore, Session, User
from gateway.errors import CommandError, ConsoleError
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


# ---------------------------------------------------------------------- the app


def create_app(c: Console) -> FastAPI:
    app = FastAPI(
        title="Facility safety gateway console",
        description="On-call console: alarms of one site or many, acted on through MQTT commands.",
        version="1",
    )
    app.state.console = c

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        resp: Response = await call_next(request)
        # Nothing here may be framed (click-jacking an Acknowledge button) or cached.
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    @app.exception_handler(LoginNeeded)
    async def _to_login(request: Request, exc: LoginNeeded) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)

    def csrf(s: Session, sent: str | None) -> None:
        if not c.auth.csrf_ok(s, sent):
            raise HTTPException(403, "CSRF token missing or wrong: reload the page")

    def need(s: Session, role: str) -> None:
        if not s.user.may(role):
            raise HTTPException(403, f"{s.user.name} is {s.user.role}; this needs {role}")

    def render(request: Request, s: Session | None, name: str, **ctx: Any) -> HTMLResponse:
        ctx.update(
            since=lambda ns: since(c.state, ns),
            me=s,
            state=c.state,
            now_s=c.clock.now_ns() / 1e9,
            roles=ROLES,
            command_role=COMMAND_ROLE,
            heartbeat_ms=int(c.heartbeat_s * 1000),
        )
        partial = request.headers.get("x-partial") == "1"
        template = f"_{name}.html" if partial else "page.html"
        return TEMPLATES.TemplateResponse(request, template, {"fragment": f"_{name}.html", **ctx})

    def alarm_view(
        request: Request,
        s: Session,
        site: str,
        alarm_id: str,
        *,
        msg: str | None = None,
        err: str | None = None,
        confirm: ActionIn | None = None,
    ) -> HTMLResponse:
        a = c.state.alarm(site, alarm_id)
        if a is None:
            raise HTTPException(404, f"no alarm {alarm_id!r} at site {site!r}")
        timeline = c.state.timeline(site, alarm_id)[::-1]
        return render(
            request, s, "alarm", a=a, timeline=timeline, msg=msg, err=err, confirm=confirm
        )

    # ------------------------------------------------------------------ login

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return TEMPLATES.TemplateResponse(
            request, "login.html", {"next": _safe_next(next), "error": None, "me": None}
        )

    @app.post("/login", include_in_schema=False)
    async def login(
        request: Request,
        username: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        client = request.client.host if request.client else "?"
        try:
            # argon2 takes tens of ms of CPU: off the event loop that serves the live pages.
            sid, s = await asyncio.to_thread(c.auth.login, username, password, client)
        except (LoginRefused, LoginLimited) as exc:
            code = 429 if isinstance(exc, LoginLimited) else 401
            c.store.audit(c.clock.now_ns(), username[:64], "login", False, detail=str(exc))
            return TEMPLATES.TemplateResponse(
                request,
                "login.html",
                {"next": _safe_next(next), "error": str(exc), "me": None},
                status_code=code,
            )
        c.store.audit(c.clock.now_ns(), s.user.name, "login", True)
        resp = RedirectResponse(_safe_next(next), status_code=303)
        resp.set_cookie(
            SESSION_COOKIE,
            sid,
            max_age=int(c.auth.session_s),
            httponly=True,
            samesite="strict",
            secure=c.secure_cookies,
        )
        return resp

    @app.post("/logout", include_in_schema=False)
    async def logout(
        request: Request, s: PageUser, csrf_token: Annotated[str, Form(alias="csrf")] = ""
    ) -> Response:
        csrf(s, csrf_token)
        c.store.drop_session(request.cookies.get(SESSION_COOKIE, ""))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    # ------------------------------------------------------------------ pages

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def alarms_page(
        request: Request, s: PageUser, site: str | None = None, area: str | None = None
    ) -> HTMLResponse:
        return render(
            request,
            s,
            "alarms",
            alarms=c.state.active_alarms(site or None, area or None),
            site=site or "",
            area=area or "",
        )

    @app.get("/alarm", response_class=HTMLResponse, include_in_schema=False)
    async def alarm_page(
        request: Request,
        s: PageUser,
        site: str,
        id: str,
        result: str | None = None,
    ) -> HTMLResponse:
        msg, err = c.recall(s.user.name, result)
        return alarm_view(request, s, site, id, msg=msg, err=err)

    @app.post("/alarm", response_class=HTMLResponse, include_in_schema=False)
    async def alarm_action(
        request: Request,
        s: PageUser,
        site: Annotated[str, Form(max_length=64)],
        alarm_id: Annotated[str, Form(max_length=256)],
        action: Annotated[Action, Form()],
        csrf_token: Annotated[str, Form(alias="csrf")] = "",
        duration: Annotated[str, Form(max_length=32)] = "",
        reason: Annotated[str, Form(max_length=200)] = "",
        comment: Annotated[str, Form(max_length=500)] = "",
        confirm: Annotated[str, Form()] = "",
    ) -> Response:
        csrf(s, csrf_token)
        body = ActionIn(
            site=site,
            alarm_id=alarm_id,
            action=action,
            duration=duration or None,
            reason=reason or None,
            comment=comment or None,
        )
        if action in CONFIRM and confirm != "yes":
            return alarm_view(request, s, site, alarm_id, confirm=body)
        try:
            reply = await act(s, body)
            q = {"result": c.remember(s.user.name, True, f"{action}: {reply.get('state', 'done')}")}
        except HTTPException as exc:
            q = {"result": c.remember(s.user.name, False, str(exc.detail))}
        return RedirectResponse(alarm_url(site, alarm_id) + "&" + urlencode(q), status_code=303)

    @app.get("/devices", response_class=HTMLResponse, include_in_schema=False)
    async def devices_page(request: Request, s: PageUser, site: str | None = None) -> HTMLResponse:
        c.state.sweep()
        return render(
            request, s, "devices", by_area=c.state.devices_by_area(site or None), site=site or ""
        )

    def patrol_view(site: str | None) -> dict[str, Any]:
        board = c.state.patrol.view(site or None)
        # Overdue also from the retained alarms: they survive a console restart, events do not.
        for a in c.state.active_alarms(site or None):
            if a.last.get("rule") == "patrol_overdue" and a.last.get("active"):
                entry = board.setdefault(a.site, c.state.patrol.view(a.site)[a.site])
                entry["overdue_alarm"] = a.as_json()
        return board

    @app.get("/patrol", response_class=HTMLResponse, include_in_schema=False)
    async def patrol_page(request: Request, s: PageUser, site: str | None = None) -> HTMLResponse:
        return render(request, s, "patrol", board=patrol_view(site), site=site or "")

    @app.get("/api/patrol", tags=["sites"])
    async def api_patrol(s: ApiUser, site: str | None = None) -> dict[str, Any]:
        """Per site: rounds in progress, the last tap per checkpoint, overdue."""
        return patrol_view(site)

    @app.get("/gateways", response_class=HTMLResponse, include_in_schema=False)
    async def gateways_page(request: Request, s: PageUser) -> HTMLResponse:
        return render(
            request, s, "gateways", gateways=sorted(c.state.gateways.values(), key=lambda g: g.site)
        )

    @app.get("/users", response_class=HTMLResponse, include_in_schema=False)
    async def users_page(request: Request, s: PageUser, result: str | None = None) -> HTMLResponse:
        need(s, "admin")
        msg, err = c.recall(s.user.name, result)
        return render(request, s, "users", users=c.store.users(), msg=msg or err)

    @app.post("/users", include_in_schema=False)
    async def users_add(
        s: PageUser,
        name: Annotated[str, Form(max_length=64)],
        role: Annotated[Literal["viewer", "operator", "supervisor", "admin"], Form()],
        password: Annotated[str, Form(max_length=1024)],
        csrf_token: Annotated[str, Form(alias="csrf")] = "",
    ) -> Response:
        csrf(s, csrf_token)
        need(s, "admin")
        try:
            add_user(c.store, name, role, password, c.clock)
            msg, ok = f"added {name} ({role})", True
            c.store.audit(c.clock.now_ns(), s.user.name, "user_add", True, detail=f"{name} {role}")
        except ConsoleError as exc:
            msg, ok = str(exc), False
        token = c.remember(s.user.name, ok, msg)
        return RedirectResponse("/users?" + urlencode({"result": token}), status_code=303)

    @app.get("/audit", response_class=HTMLResponse, include_in_schema=False)
    async def audit_page(request: Request, s: PageUser) -> HTMLResponse:
        need(s, "supervisor")
        return render(request, s, "audit", rows=c.store.audit_log())

    @app.get("/stream", include_in_schema=False)
    async def stream(request: Request, s: PageUser) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            version = -1
            while True:
                c.state.sweep()  # a device whose readings stopped turns stale without a message
                data = {
                    "version": c.state.version,
                    "broker": c.state.broker_connected,
                    "broker_since_ns": c.state.broker_since_ns,
                }
                kind = "change" if c.state.version != version else "heartbeat"
                version = c.state.version
                yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
                if c.auth.session(request.cookies.get(SESSION_COOKIE)) is None and not s.via_token:
                    yield "event: logout\ndata: {}\n\n"
                    return
                await c.state.wait_changed(version, c.heartbeat_s)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # ------------------------------------------------------------------ acknowledgement links

    def link_claims(t: str) -> ack_link.LinkClaims:
        if c.link_key is None:
            raise HTTPException(404, "acknowledgement links are not set up on this console")
        try:
            return ack_link.verify(c.link_key, t, c.clock.now_ns() / 1e9)
        except ack_link.LinkError as exc:
            raise HTTPException(403, str(exc)) from None

    def link_page(
        request: Request,
        s: Session | None,
        claims: ack_link.LinkClaims,
        t: str,
        *,
        msg: str | None = None,
        err: str | None = None,
        code: int = 200,
    ) -> HTMLResponse:
        a = c.state.alarm(claims.site, claims.alarm_id)
        ctx = {"me": s, "a": a, "claims": claims, "t": t, "msg": msg, "err": err}
        ctx["expires"] = when(claims.expires_s * 1_000_000_000)
        return TEMPLATES.TemplateResponse(request, "ack.html", ctx, status_code=code)

    @app.get("/ack", response_class=HTMLResponse, include_in_schema=False)
    async def link_open(
        request: Request,
        t: Annotated[str, Query(max_length=ack_link.MAX_TOKEN_CHARS)] = "",
        hop: int = 0,
    ) -> Response:
        """A notification's link: the alarm and one Acknowledge button (a GET changes nothing:
        chat apps fetch links to preview them)."""
        claims = link_claims(t)
        s = _who(request)
        if s is None and not c.link_without_login:
            if not hop:
                # A tap in a chat app is a cross-site navigation, which carries no
                # SameSite=Strict session cookie; one same-site hop does, so a phone
                # that is logged in goes straight to the button.
                again = "/ack?" + urlencode({"t": t, "hop": 1})
                return HTMLResponse(
                    Markup(
                        '<!doctype html><meta http-equiv="refresh" content="0;url={}">'
                        '<a href="{}">Open the alarm</a>'
                    ).format(again, again)
                )
            raise LoginNeeded()
        used = c.store.link_spent(claims.nonce)
        return link_page(request, s, claims, t, err="this link was used already" if used else None)

    @app.post("/ack", response_class=HTMLResponse, include_in_schema=False)
    async def link_ack(
        request: Request,
        t: Annotated[str, Form(max_length=ack_link.MAX_TOKEN_CHARS)],
        csrf_token: Annotated[str, Form(alias="csrf")] = "",
    ) -> Response:
        claims = link_claims(t)
        s = _who(request)
        if s is not None:
            csrf(s, csrf_token)
        elif c.link_without_login:
            s = Session(User(LINK_ACTOR, "operator", ""), "", via_token=True)
        else:
            raise HTTPException(401, "log in first, then open the link again")
        a = c.state.alarm(claims.site, claims.alarm_id)
        raised = None if a is None else a.raised_ns
        if None not in (claims.raised_ns, raised) and raised != claims.raised_ns:
            why = "this link is for an earlier activation of the alarm: open the alarm itself"
            return link_page(request, s, claims, t, err=why, code=409)
        to = ", ".join(claims.to)
        try:
            body = ActionIn(
                site=claims.site,
                alarm_id=claims.alarm_id,
                action="ack",
                comment=f"notification link to {to}" if to else "notification link",
            )
        except ValidationError:
            raise HTTPException(403, "not an acknowledgement link") from None
        if not c.store.spend_link(claims.nonce, claims.expires_s, c.clock.now_ns() / 1e9):
            return link_page(request, s, claims, t, err="this link was used already", code=409)
        try:
            reply = await act(s, body)
        except HTTPException as exc:
            if exc.status_code in (503, 504):
                c.store.unspend_link(claims.nonce)  # nothing reached a gateway: may try again
            return link_page(request, s, claims, t, err=str(exc.detail), code=exc.status_code)
        done = f"acknowledged by {reply.get('actor') or s.user.name}"
        return link_page(request, s, claims, t, msg=done)

    # ------------------------------------------------------------------ JSON API

    async def act(s: Session, body: ActionIn) -> dict[str, Any]:
        """Send one action for ``s``'s user; the gateway's reply, or HTTPException."""
        need(s, COMMAND_ROLE[body.action])
        if c.state.alarm(body.site, body.alarm_id) is None:
            raise HTTPException(404, f"no alarm {body.alarm_id!r} at site {body.site!r}")
        name = s.user.name

        def record(ok: bool, detail: str | None = None) -> None:
            c.store.audit(
                c.clock.now_ns(),
                name,
                body.action,
                ok,
                site=body.site,
                alarm_id=body.alarm_id,
                detail=detail,
            )

        try:
            reply = await c.link.command(
                body.site,
                body.action,
                body.alarm_id,
                name,
                duration=body.duration,
                reason=body.reason,
                comment=body.comment,
            )
        except CommandError as exc:
            record(False, str(exc))
            raise HTTPException(422, str(exc)) from None
        except (Unavailable, NoReply) as exc:
            record(False, str(exc))
            raise HTTPException(503 if isinstance(exc, Unavailable) else 504, str(exc)) from None
        if not reply.get("ok"):
            why = str(reply.get("message") or reply.get("error") or "refused")
            record(False, why)
            raise HTTPException(409, why)
        record(True)
        return reply

    @app.post("/api/actions", tags=["alarms"])
    async def api_action(request: Request, s: ApiUser, body: ActionIn) -> dict[str, Any]:
        """Acknowledge, shelve (duration + reason), unshelve, reset, out of service, in service.

        Runs as the logged-in user (the alarm records ``<user> via <console>``)
        and returns the gateway's reply."""
        csrf(s, request.headers.get("x-csrf-token"))
        return await act(s, body)

    @app.get("/api/alarms", tags=["alarms"])
    async def api_alarms(
        s: ApiUser, site: str | None = None, area: str | None = None
    ) -> list[dict[str, Any]]:
        """Alarms that are not normal: unacknowledged first, then by severity and age."""
        return [a.as_json() for a in c.state.active_alarms(site, area)]

    @app.get("/api/alarm", tags=["alarms"])
    async def api_alarm(s: ApiUser, site: str, id: str) -> dict[str, Any]:
        """One alarm: its last transition and the timeline this console has seen."""
        a = c.state.alarm(site, id)
        if a is None:
            raise HTTPException(404, f"no alarm {id!r} at site {site!r}")
        return {**a.as_json(), "last": a.last, "timeline": c.state.timeline(site, id)}

    @app.get("/api/devices", tags=["sites"])
    async def api_devices(s: ApiUser, site: str | None = None) -> list[dict[str, Any]]:
        """Devices with availability, condition (online, stale, offline), last reading age
        and the poll error counters of their latest health record."""
        c.state.sweep()
        return [
            {
                "site": d.site,
                "device": d.device,
                "online": d.online,
                "area": d.area,
                "changed_ns": d.changed_ns,
                "condition": d.condition,
                "last_sample_age_s": c.state.age_s(d.sample_ns),
                "interval_s": d.interval_s,
                "counters": d.counters,
                "health_ns": d.health_ns,
            }
            for devs in c.state.devices_by_area(site).values()
            for d in devs
        ]

    @app.get("/api/gateways", tags=["sites"])
    async def api_gateways(s: ApiUser) -> list[dict[str, Any]]:
        return [
            {
                "site": g.site,
                "status": g.status,
                "status_ns": g.status_ns,
                "health": g.health,
                "health_ns": g.health_ns,
            }
            for g in sorted(c.state.gateways.values(), key=lambda g: g.site)
        ]

    @app.get("/api/status", tags=["sites"])
    async def api_status(s: ApiUser) -> dict[str, Any]:
        """Whether this console is connected to the broker (else everything may be stale)."""
        return {
            "broker_connected": c.state.broker_connected,
            "broker_since_ns": c.state.broker_since_ns,
            "version": c.state.version,
            "sites": c.state.sites(),
            "ignored_messages": c.state.ignored,
        }

    @app.get("/api/me", tags=["users"])
    async def api_me(s: ApiUser) -> dict[str, Any]:
        return {"name": s.user.name, "role": s.user.role, "csrf": s.csrf or None}

    @app.post("/api/tokens", tags=["users"])
    async def api_token(request: Request, s: ApiUser, body: TokenIn) -> dict[str, Any]:
        """A new API token for yourself (shown once)."""
        csrf(s, request.headers.get("x-csrf-token"))
        token = c.auth.new_token(s.user, body.label, body.ttl_s)
        c.store.audit(c.clock.now_ns(), s.user.name, "token_add", True, detail=body.label)
        return {"token": token, "user": s.user.name, "label": body.label}

    @app.post("/api/users", tags=["users"], status_code=201)
    async def api_user_add(request: Request, s: ApiUser, body: UserIn) -> dict[str, Any]:
        csrf(s, request.headers.get("x-csrf-token"))
        need(s, "admin")
        try:
            add_user(c.store, body.name, body.role, body.password, c.clock)
        except ConsoleError as exc:
            raise HTTPException(422, str(exc)) from None
        c.store.audit(
            c.clock.now_ns(), s.user.name, "user_add", True, detail=f"{body.name} {body.role}"
        )
        return {"name": body.name, "role": body.role}

    @app.patch("/api/users/{name}", tags=["users"])
    async def api_user_change(
        request: Request, s: ApiUser, name: str, body: UserPatch
    ) -> dict[str, Any]:
        """Change a user's role, password, or disable them (their sessions and tokens end)."""
        csrf(s, request.headers.get("x-csrf-token"))
        need(s, "admin")
        if name == s.user.name and (body.disabled or body.role not in (None, "admin")):
            raise HTTPException(422, "an admin cannot disable or demote themselves")
        try:
            c.store.set_user(
                name,
                role=body.role,
                disabled=body.disabled,
                pw_hash=None if body.password is None else hash_password(body.password),
            )
        except ConsoleError as exc:
            raise HTTPException(404 if "no user" in str(exc) else 422, str(exc)) from None
        changes = body.model_dump(exclude_none=True, exclude={"password"})
        if body.password is not None:
            changes["password"] = "changed"
        c.store.audit(
            c.clock.now_ns(), s.user.name, "user_change", True, detail=f"{name} {changes}"
        )
        user = c.store.user(name)
        assert user is not None
        return {"name": user.name, "role": user.role, "disabled": user.disabled}

    @app.get("/api/audit", tags=["users"])
    async def api_audit(s: ApiUser, limit: int = 200) -> list[dict[str, Any]]:
        need(s, "supervisor")
        return c.store.audit_log(max(1, min(limit, 1000)))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/stream":
            return JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
        return TEMPLATES.TemplateResponse(
            request,
            "error.html",
            {"code": exc.status_code, "detail": exc.detail, "me": None},
            status_code=exc.status_code,
        )

    return app
