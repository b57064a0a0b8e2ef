"""The notification channels: webhook robots, e-mail and MQTT, one message at a time.

``webhook_body`` builds a robot preset's payload (DingTalk with its signed
URL, WeCom, Feishu, Slack, or the generic JSON); ``send_webhook`` and
``send_email_sync`` deliver one ``Message`` and raise ``NotifyError`` when
the far side did not take it. ``send_through_stop`` sends on any channel and
lets a stop (cancellation) wait for a send in flight, so a page that may
have gone out is recorded as such. A possible duplicate carries the
``X-Gateway-Possible-Duplicate: true`` header (webhook, e-mail).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
import logging
import smtplib
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import httpx

from gateway.alerting.config import EmailChannel, MqttChannel, WebhookChannel
from gateway.alerting.messages import MAX_LINES, Message
from gateway.errors import GatewayError
from gateway.model import Clock

log = logging.getLogger(__name__)

Publish = Callable[[str, dict[str, Any]], Awaitable[None]]
# How long a stop waits for a send in flight (the gateway's shutdown limit is 20 s).
STOP_GRACE_S = 10.0
DUPLICATE_HEADER = "X-Gateway-Possible-Duplicate"


class NotifyError(GatewayError):
    """A channel could not deliver a notification (it stays queued and is retried).

    ``maybe_sent``: the request went out and its answer was lost, so the far
    side may have it; the retry is marked as a possible duplicate.
    """

    def __init__(self, message: str, *, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


def webhook_body(ch: WebhookChannel, msg: Message, now_s: float) -> tuple[str, dict[str, Any]]:
    """URL and JSON body for a channel preset (the robots' documented payload shapes)."""
    url = ch.url
    text = f"{msg.title}\n{msg.text}"
    if ch.preset == "dingtalk":
        if ch.secret:
            ts = str(int(now_s * 1000))
            digest = hmac.new(ch.secret.encode(), f"{ts}\n{ch.secret}".encode(), hashlib.sha256)
            sign = urllib.parse.quote_plus(base64.b64encode(digest.digest()).decode())
            url += ("&" if "?" in url else "?") + f"timestamp={ts}&sign={sign}"
        at = " ".join(f"@{p}" for p in msg.phones)
        md = f"### {msg.title}\n\n" + msg.text.replace("\n", "\n\n") + (f"\n\n{at}" if at else "")
        return url, {
            "msgtype": "markdown",
            "markdown": {"title": msg.title[:64], "text": md},
            "at": {"atMobiles": msg.phones, "isAtAll": False},
        }
    if ch.preset == "wecom":
        return url, {
            "msgtype": "text",
            "text": {"content": text, "mentioned_mobile_list": msg.phones},
        }
    if ch.preset == "feishu":
        # A custom bot mentions people in a text message by their user id (open_id or user_id).
        mentions = " ".join(
            f'<at user_id="{html.escape(p.chat_id)}">{html.escape(n)}</at>'
            for n, p in msg.people
            if p.chat_id
        )
        content = text + (f"\n{mentions}" if mentions else "")
        body: dict[str, Any] = {"msg_type": "text", "content": {"text": content}}
        if ch.secret:
            ts = str(int(now_s))
            key = f"{ts}\n{ch.secret}".encode()
            body["timestamp"] = ts
            body["sign"] = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        return url, body
    if ch.preset == "slack":
        mentions = " ".join(f"<@{p.chat_id}>" for _, p in msg.people if p.chat_id)
        return url, {"text": f"*{msg.title}*\n{msg.text}" + (f"\n{mentions}" if mentions else "")}
    return url, {
        "title": msg.title,
        "text": msg.text,
        "recipients": [n for n, _ in msg.people],
        "alarms": msg.items,
        "possible_duplicate": msg.possible_duplicate,
    }


async def send_webhook(
    client: httpx.AsyncClient, ch: WebhookChannel, msg: Message, now_s: float
) -> None:
    url, body = webhook_body(ch, msg, now_s)
    headers = dict(ch.headers)
    if msg.possible_duplicate:
        headers[DUPLICATE_HEADER] = "true"
    try:
        resp = await client.post(url, json=body, headers=headers, timeout=ch.timeout_s)
    except httpx.HTTPError as exc:
        # Not connected: nothing went out. Anything later: the robot may have it.
        unsent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        raise NotifyError(
            f"webhook {ch.name}: {type(exc).__name__}: {exc}", maybe_sent=not unsent
        ) from exc
    if resp.status_code >= 300:
        raise NotifyError(f"webhook {ch.name}: HTTP {resp.status_code}: {resp.text[:200]}")
    # Group robots answer 200 with an error code in the body when they refuse a message.
    try:
        answer = resp.json()
    except ValueError:
        return
    if isinstance(answer, dict):
        code = answer.get("errcode", answer.get("code", answer.get("StatusCode", 0)))
        if code not in (0, None, "0"):
            detail = answer.get("errmsg") or answer.get("msg") or answer
            raise NotifyError(f"webhook {ch.name}: refused: code {code}: {detail}")


def _ssl_context(ch: EmailChannel) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ch.ca_file)
    if not ch.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def send_email_sync(ch: EmailChannel, msg: Message) -> None:
    """Blocking SMTP send (run it in a worker thread)."""
    to = msg.emails or ch.to
    if not to:
        raise NotifyError(f"email {ch.name}: nobody to send to (no roster e-mail, no 'to')")
    em = EmailMessage()
    em["From"] = ch.sender
    em["To"] = ", ".join(to)
    em["Subject"] = msg.title[:200]
    em["X-Gateway-Alarms"] = ",".join(i["alarm_id"] for i in msg.items[:MAX_LINES])
    if msg.possible_duplicate:
        em[DUPLICATE_HEADER] = "true"
    em.set_content(msg.text)
    for name, data, mime in msg.attachments:
        main, _, sub = mime.partition("/")
        em.add_attachment(data, maintype=main, subtype=sub, filename=name)
    try:
        smtp: smtplib.SMTP
        if ch.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                ch.host, ch.port, timeout=ch.timeout_s, context=_ssl_context(ch)
            )
        else:
            smtp = smtplib.SMTP(ch.host, ch.port, timeout=ch.timeout_s)
        with smtp:
            if ch.security == "starttls":
                smtp.starttls(context=_ssl_context(ch))
            if ch.username is not None and ch.password is not None:
                smtp.login(ch.username, ch.password)
            smtp.send_message(em, to_addrs=to)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise NotifyError(f"email {ch.name}: {type(exc).__name__}: {exc}") from exc


async def send_through_stop(
    client: httpx.AsyncClient,
    ch: MqttChannel | WebhookChannel | EmailChannel,
    msg: Message,
    clock: Clock,
    publish: Publish | None,
) -> tuple[bool, NotifyError | None]:
    """``_send``, which a stop (cancellation) lets finish: (stopping, the failure or None).

    Cut short, a POST or an SMTP dialogue may have reached the far side
    without the gateway knowing, and the restart would send it again. The
    stop cancels again and again (gateway/tasks.py): the wait goes on until
    the send ends or the grace period is over. The caller records the
    outcome, then stops. A send still running then is abandoned, left
    ``sending``: the next start resends it as a possible duplicate.
    """
    send = asyncio.ensure_future(_send(client, ch, msg, clock, publish))
    stopping = False
    try:
        await asyncio.shield(send)
    except asyncio.CancelledError:
        stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(getattr(ch, "timeout_s", STOP_GRACE_S), STOP_GRACE_S)
        while not send.done() and loop.time() < deadline:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({send}, timeout=deadline - loop.time())
        if not send.done():
            send.cancel()
            log.warning("notification channel %s: send not finished at stop", ch.name)
            raise
    except NotifyError as exc:
        return False, exc
    if send.cancelled():
        return stopping, NotifyError(f"{ch.name}: send cancelled", maybe_sent=True)
    failure = send.exception()
    if failure is not None and not isinstance(failure, NotifyError):
        raise failure
    return stopping, failure


async def _send(
    client: httpx.AsyncClient,
    ch: MqttChannel | WebhookChannel | EmailChannel,
    msg: Message,
    clock: Clock,
    publish: Publish | None,
) -> None:
    if isinstance(ch, WebhookChannel):
        await send_webhook(client, ch, msg, clock.now_ns() / 1e9)
    elif isinstance(ch, EmailChannel):
        await asyncio.to_thread(send_email_sync, ch, msg)
    else:
        if publish is None:
            raise NotifyError(f"mqtt {ch.name}: no MQTT publisher is wired")
        payload = {
            "title": msg.title,
            "text": msg.text,
            "recipients": [n for n, _ in msg.people],
            "alarms": msg.items,
            "ts_ns": clock.now_ns(),
            "possible_duplicate": msg.possible_duplicate,
        }
        try:
            await publish(ch.topic, payload)
        except GatewayError as exc:
            raise NotifyError(f"mqtt {ch.name}: {exc}") from exc
