"""Signed acknowledgement links: the URL a notification carries to the alarm in the console.

The gateway signs, the console verifies; both hold the same key (the site
file's ``alerting.link_key``, usually ``${FSG_LINK_KEY}``). A link names the
site, the alarm and the activation it was sent for (raised time), the people
it was sent to, when it expires, and a random nonce the console spends when
the link acknowledges, so a link acts once. The token is
``base64url(JSON claims) "." base64url(HMAC-SHA256(key, first part))``: no
third-party format, nothing a tampered byte can get past.

Pure functions and one small settings model: no I/O, the clock is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict

from gateway.errors import GatewayError

# A token longer than this is not one of ours (and is not worth hashing).
MAX_TOKEN_CHARS = 2048
MIN_KEY_CHARS = 32


class LinkError(GatewayError):
    """An acknowledgement link that is malformed, tampered with, expired or already used."""


class ConsoleSiteConfig(BaseModel):
    """``console:`` in the site file: what the console allows for this site."""

    model_config = ConfigDict(extra="forbid")

    # A valid, unexpired, unused link acknowledges without logging in (off: log in first).
    link_ack_without_login: bool = False


@dataclass(frozen=True, slots=True)
class LinkClaims:
    site: str
    alarm_id: str
    raised_ns: int | None
    to: tuple[str, ...]
    expires_s: int
    nonce: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, body: str) -> bytes:
    return hmac.new(key.encode(), body.encode(), hashlib.sha256).digest()


def sign(
    key: str,
    site: str,
    alarm_id: str,
    *,
    raised_ns: int | None,
    to: list[str],
    now_s: float,
    ttl_s: float,
) -> str:
    """A token for one alarm's activation, valid ``ttl_s`` from ``now_s``."""
    claims = {
        "s": site,
        "a": alarm_id,
        "r": raised_ns,
        "t": list(to),
        "e": int(now_s + ttl_s),
        "n": secrets.token_urlsafe(12),
    }
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_b64(_mac(key, body))}"


def link(base_url: str, token: str) -> str:
    """The console URL that shows the alarm and its one-tap Acknowledge button."""
    return f"{base_url.rstrip('/')}/ack?{urlencode({'t': token})}"


def verify(key: str, token: str, now_s: float) -> LinkClaims:
    """The claims of a genuine, unexpired token; ``LinkError`` saying why not otherwise."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise LinkError("not an acknowledgement link")
    body, mac = token.split(".")
    try:
        sent = _unb64(mac)
    except (binascii.Error, ValueError):
        raise LinkError("not an acknowledgement link") from None
    if not hmac.compare_digest(sent, _mac(key, body)):
        raise LinkError("this link's signature is wrong (altered, or from another key)")
    try:
        raw: Any = json.loads(_unb64(body))
        claims = LinkClaims(
            site=str(raw["s"]),
            alarm_id=str(raw["a"]),
            raised_ns=None if raw.get("r") is None else int(raw["r"]),
            to=tuple(str(n) for n in raw.get("t", [])),
            expires_s=int(raw["e"]),
            nonce=str(raw["n"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise LinkError("not an acknowledgement link") from None
    if now_s >= claims.expires_s:
        raise LinkError("this link has expired; open the alarm in the console instead")
    return claims


def check_key(key: str | None) -> str | None:
    """A usable link key, or ``ValueError`` naming what is wrong with it."""
    if key is None:
        return None
    if "${" in key:
        raise ValueError("link_key still holds an unexpanded ${...}; set the variable")
    if len(key) < MIN_KEY_CHARS:
        raise ValueError(
            f"link_key must be at least {MIN_KEY_CHARS} characters; make one with"
            " python3 -c 'import secrets; print(secrets.token_hex(32))'"
        )
    return key
