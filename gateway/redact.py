"""Keeping credentials out of everything the gateway prints.

``redact_url`` masks the password in a URL's user info (``user:***@host``), a
lone user info (often a token) and secret query parameters (``access_token``,
InfluxDB 1.x ``p``); ``redact_text`` does the same for every URL and
``password=...``-style field inside free text (exception messages).
``RedactingFilter`` applies it to every log record, so a third-party library
logging a URL cannot leak it either. ``plaintext_secret_warnings`` lists the
places where a password or token would cross the network without TLS.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gateway.validators import is_local_host

if TYPE_CHECKING:
    from gateway.config import SiteConfig

MASK = "***"
_SECRET_PARAM = re.compile(
    r"(p|pass|passwd|password|pwd|token|access_token|auth|authorization|secret|sign|signature"
    r"|key|api_key|apikey)",
    re.IGNORECASE,
)
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# password=x, "token": "x", secret: x (reprs of dicts, key=value log lines).
_FIELD = re.compile(
    r"(?P<key>\b(?:password|passwd|token|secret|api_key|apikey)\b['\"]?\s*[:=]\s*['\"]?)"
    r"(?P<value>[^\s'\",&}]+)",
    re.IGNORECASE,
)


def _mask_query(query: str) -> str:
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        parts.append(f"{name}={MASK}" if eq and _SECRET_PARAM.fullmatch(name) else item)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """``url`` with the password, a lone user info and secret query values masked."""
    head, q, rest = url.partition("?")
    start = head.find("//")
    if start != -1:
        # User info sits between "//" and the last "@" before the path.
        end = head.find("/", start + 2)
        end = len(head) if end == -1 else end
        at = head.rfind("@", start + 2, end)
        if at != -1:
            user, colon, _ = head[start + 2 : at].partition(":")
            # A lone user info is usually a token; a user name before ":" is not secret.
            shown = f"{user}:{MASK}" if colon else MASK
            head = f"{head[: start + 2]}{shown}{head[at:]}"
    if not q:
        return head
    query, hash_, fragment = rest.partition("#")
    return f"{head}?{_mask_query(query)}{hash_}{fragment}"


def redact_text(text: str) -> str:
    """``text`` with every URL redacted and ``password=...``-style values masked."""
    text = _URL.sub(lambda m: redact_url(m.group()), text)
    return _FIELD.sub(lambda m: m["key"] + MASK, text)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts the message and the traceback of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:
            return True  # a malformed log call: the handler reports it as logging does
        clean = redact_text(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def install_log_redaction() -> None:
    """Add the filter to every handler of the root logger (call after logging is set up)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


_local = is_local_host


def plaintext_secret_warnings(cfg: SiteConfig) -> list[str]:
    """Where a password or token would be sent without TLS to another machine."""
    out: list[str] = []
    influx = cfg.sinks.influx
    if influx is not None and influx.enabled:
        url = urlsplit(influx.url)
        what = "a token" if influx.token else "a password"
        has_secret = bool(influx.token or influx.password or url.password)
        if has_secret and url.scheme == "http" and not _local(url.hostname):
            out.append(
                f"sinks.influx: {what} is sent to {redact_url(influx.url)} without TLS"
                " (use https://)"
            )
    mqtt = cfg.sinks.mqtt
    plain_mqtt = mqtt is not None and mqtt.enabled and mqtt.tls is None
    if mqtt is not None and plain_mqtt and mqtt.password and not _local(mqtt.host):
        out.append(
            f"sinks.mqtt: a password is sent to {mqtt.host}:{mqtt.port} without TLS"
            " (set sinks.mqtt.tls)"
        )
    for ch in cfg.alerting.channels if cfg.alerting else []:
        where = f"alerting.channels[{ch.name}]"
        if ch.type == "webhook":
            url = urlsplit(ch.url)
            query_secret = any(
                _SECRET_PARAM.fullmatch(item.partition("=")[0]) for item in url.query.split("&")
            )
            if (query_secret or url.password) and url.scheme == "http" and not _local(url.hostname):
                out.append(
                    f"{where}: a token is sent to {redact_url(ch.url)} without TLS (use https://)"
                )
        elif ch.type == "email" and ch.password and ch.security == "none" and not _local(ch.host):
            out.append(
                f"{where}: a password is sent to {ch.host}:{ch.port} without TLS"
                " (security: starttls or ssl)"
            )
    for src in cfg.sources:
        out.extend(src.secret_warnings())
    return out
