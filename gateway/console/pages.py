"""The console's pages: login and logout, alarms, one alarm, devices, patrol, gateways,
users, audit, and the server-sent event stream that keeps a page live.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from gateway.console.api import outcome_text
from gateway.console.auth import SESSION_COOKIE, LoginLimited, LoginRefused, add_user
from gateway.console.web_support import (
    CONFIRM,
    TEMPLATES,
    Act,
    Action,
    ActionIn,
    AlarmView,
    ApiUser,
    Console,
    Csrf,
    Need,
    PageUser,
    Reload,
    Render,
    _safe_next,
    alarm_url,
)
from gateway.errors import ConsoleError


def add_pages(
    app: FastAPI,
    c: Console,
    *,
    csrf: Csrf,
    need: Need,
    render: Render,
    alarm_view: AlarmView,
    act: Act,
    reload: Reload,
) -> None:
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
    async def gateways_page(
        request: Request, s: PageUser, result: str | None = None
    ) -> HTMLResponse:
        msg, err = c.recall(s.user.name, result)
        gateways = sorted(c.state.gateways.values(), key=lambda g: g.site)
        return render(request, s, "gateways", gateways=gateways, msg=msg, err=err)

    @app.post("/gateways/reload", include_in_schema=False)
    async def gateways_reload(
        s: PageUser,
        site: Annotated[str, Form(max_length=64)],
        csrf_token: Annotated[str, Form(alias="csrf")] = "",
    ) -> Response:
        csrf(s, csrf_token)
        try:  # reload() refuses anyone but an admin (403, shown on the error page)
            outcome = (await reload(s, site))["outcome"]
            ok = outcome is None or outcome.get("kind") != "config.rejected"
            token = c.remember(s.user.name, ok, f"reload {site}: {outcome_text(outcome)}")
        except HTTPException as exc:
            if exc.status_code == 403:
                raise
            token = c.remember(s.user.name, False, f"reload {site}: {exc.detail}")
        return RedirectResponse("/gateways?" + urlencode({"result": token}), status_code=303)

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
