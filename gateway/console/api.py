"""The console's JSON API (``/api/...``) and the one way every action reaches a gateway.

``make_act`` builds ``act``: one action for one user, checked for the role
it needs, sent as a signed command through the broker link, audited, and
answered with the gateway's reply or the HTTP error that says why not (404
unknown alarm, 409 refused, 422 bad input, 503 broker down, 504 no answer).
The pages and the acknowledgement links act through it too. ``make_reload``
builds ``reload`` the same way for an admin's config reload of one gateway,
and also waits (bounded) for the outcome the gateway publishes on ``events``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from gateway.console.auth import COMMAND_ROLE, add_user, hash_password
from gateway.console.mqtt_link import NoReply, Unavailable
from gateway.console.store import Session
from gateway.console.web_support import (
    Act,
    ActionIn,
    ApiUser,
    Console,
    Csrf,
    Need,
    Reload,
    ReloadIn,
    TokenIn,
    UserIn,
    UserPatch,
)
from gateway.errors import CommandError, ConsoleError


def make_act(c: Console, need: Need) -> Act:
    """``act`` over ``c``: the pages, the links and the API all send actions through it."""

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

        reply = await _sent(
            c.link.command(
                body.site,
                body.action,
                body.alarm_id,
                name,
                duration=body.duration,
                reason=body.reason,
                comment=body.comment,
            ),
            record,
        )
        record(True)
        return reply

    return act


async def _sent(
    command: Coroutine[Any, Any, dict[str, Any]], record: Callable[[bool, str], None]
) -> dict[str, Any]:
    """The gateway's reply to ``command``, or (recorded) the HTTPException that says why not."""
    try:
        reply = await command
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
    return reply


def outcome_text(outcome: dict[str, Any] | None) -> str:
    """One line for a reload's outcome (audit, the page's message)."""
    if outcome is None:
        return "accepted; no outcome seen yet (see the gateway's log)"
    if outcome.get("kind") == "config.rejected":
        return f"rejected, the running config stays: {outcome.get('error')}"
    return f"applied {str(outcome.get('hash'))[:12]}: {outcome.get('summary')}"


def make_reload(c: Console, need: Need) -> Reload:
    """``reload``: an admin asks one site's gateway to read its config again (a signed
    ``reload`` command); the gateway's reply and the outcome it then publishes on ``events``."""

    async def reload(s: Session, site: str) -> dict[str, Any]:
        need(s, "admin")
        if site not in c.state.gateways:
            raise HTTPException(404, f"no gateway seen at site {site!r}")
        name = s.user.name

        def record(ok: bool, detail: str | None = None) -> None:
            c.store.audit(c.clock.now_ns(), name, "reload", ok, site=site, detail=detail)

        # Counted before sending: the outcome may arrive before the reply.
        seen = c.state.gateways[site].config_seen
        reply = await _sent(c.link.command(site, "reload", None, name), record)
        outcome = await c.state.next_config(site, seen, c.link.reply_timeout_s)
        rejected = outcome is not None and outcome.get("kind") == "config.rejected"
        record(not rejected, outcome_text(outcome))
        return {"site": site, "reply": reply, "outcome": outcome}

    return reload


def add_api(app: FastAPI, c: Console, *, csrf: Csrf, need: Need, act: Act, reload: Reload) -> None:
    @app.post("/api/actions", tags=["alarms"])
    async def api_action(request: Request, s: ApiUser, body: ActionIn) -> dict[str, Any]:
        """Acknowledge, shelve (duration + reason), unshelve, reset, out of service, in service.

        Runs as the logged-in user (the alarm records ``<user> via <console>``)
        and returns the gateway's reply."""
        csrf(s, request.headers.get("x-csrf-token"))
        return await act(s, body)

    @app.post("/api/reload", tags=["sites"])
    async def api_reload(request: Request, s: ApiUser, body: ReloadIn) -> dict[str, Any]:
        """Admin: the site's gateway reads its config again (a signed ``reload`` command).

        Returns the gateway's reply and ``outcome``: its ``config.applied`` (hash,
        ``summary``, what changed) or ``config.rejected`` (``error``, the config in force
        stays) event, or null when none came within the reply timeout."""
        csrf(s, request.headers.get("x-csrf-token"))
        return await reload(s, body.site)

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
