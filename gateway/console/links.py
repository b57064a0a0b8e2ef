"""Acknowledgement links: the signed link a notification carries, opened and acted on.

A GET shows the alarm and one Acknowledge button and changes nothing (chat
apps fetch links to preview them); a POST acknowledges once per link (the
link's nonce is spent, and given back when no gateway was reached). Without a
login the link works only where the site allows it (``link_without_login``).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from pydantic import ValidationError

from gateway.alerting import ack_link
from gateway.console.store import Session, User
from gateway.console.web_support import (
    LINK_ACTOR,
    TEMPLATES,
    Act,
    ActionIn,
    Console,
    Csrf,
    LoginNeeded,
    _who,
    when,
)


def add_links(app: FastAPI, c: Console, *, csrf: Csrf, act: Act) -> None:
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
