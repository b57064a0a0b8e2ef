"""The console's HTTP side (FastAPI): phone-sized pages, server-sent events and a JSON API.

Pages (server-rendered Jinja2, a little JavaScript, no build step): active
alarms (unacknowledged first, then by severity and age), one alarm with its
timeline and its buttons (reset and out of service ask to confirm), devices
by area, gateways with their health and last config reload (admin: a button
that asks one to reload), users (admin), audit (supervisor).
``/stream`` is a server-sent event stream: a change re-renders the page's
live part in place; a heartbeat every few seconds lets the page show a red
banner when the stream or the console's broker connection is lost, so a
stale page never looks live.

The JSON API (``/api/...``, OpenAPI at ``/docs`` and ``/openapi.json``) does
everything the pages do, with a session cookie plus ``X-CSRF-Token`` or with
``Authorization: Bearer <token>``. Status codes: 401 not logged in, 403 role
or CSRF, 404 unknown alarm, 409 refused by the gateway, 422 bad input, 429
login limit, 503 broker down, 504 the gateway did not answer.

``create_app`` builds the app, its error handling and the helpers every
route shares (CSRF, role, rendering); the routes are in ``pages.py``,
``links.py`` (acknowledgement links) and ``api.py``; ``web_support.py``
holds the ``Console``, the templates and who is asking.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from gateway.console.api import add_api, make_act, make_reload
from gateway.console.auth import COMMAND_ROLE
from gateway.console.links import add_links
from gateway.console.pages import add_pages
from gateway.console.store import ROLES, Session
from gateway.console.web_support import TEMPLATES, ActionIn, Console, LoginNeeded, since


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

    act, reload = make_act(c, need), make_reload(c, need)
    add_pages(
        app, c, csrf=csrf, need=need, render=render, alarm_view=alarm_view, act=act, reload=reload
    )
    add_links(app, c, csrf=csrf, act=act)
    add_api(app, c, csrf=csrf, need=need, act=act, reload=reload)

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
