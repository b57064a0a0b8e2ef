"""Signed acknowledgement links (gateway/alerting/ack_link.py): what verifies and what does not."""

from __future__ import annotations

import pytest

from gateway.alerting import ack_link
from gateway.alerting.ack_link import LinkError

KEY = "k" * 40
NOW = 1_800_000_000.0


def token(**kw: object) -> str:
    args: dict[str, object] = {"raised_ns": 5, "to": ["wang"], "now_s": NOW, "ttl_s": 3600}
    args.update(kw)
    return ack_link.sign(KEY, "park", "leakage:lk-1:leak_ch1:hihi", **args)  # type: ignore[arg-type]


def test_a_genuine_link_names_its_alarm_until_it_expires() -> None:
    t = token()
    c = ack_link.verify(KEY, t, NOW + 3599)
    assert (c.site, c.alarm_id, c.raised_ns, c.to) == (
        "park", "leakage:lk-1:leak_ch1:hihi", 5, ("wang",)
    )  # fmt: skip
    assert token().split(".")[0] != t.split(".")[0]  # a fresh nonce each time
    with pytest.raises(LinkError, match="expired"):
        ack_link.verify(KEY, t, NOW + 3600)
    assert ack_link.link("https://c.example/", t) == f"https://c.example/ack?t={t}"


@pytest.mark.parametrize(
    "bad",
    [
        lambda t: t.replace(".", ".A", 1),
        lambda t: ("B" if t[0] != "B" else "C") + t[1:],
        lambda t: t.split(".")[0],
        lambda t: t + ".x",
        lambda t: "",
        lambda t: "x" * 5000,
        lambda t: "!!!.???",
    ],
)
def test_an_altered_or_malformed_link_is_refused(bad: object) -> None:
    with pytest.raises(LinkError):
        ack_link.verify(KEY, bad(token()), NOW)  # type: ignore[operator]


def test_another_keys_link_is_refused() -> None:
    other = ack_link.sign("o" * 40, "park", "a", raised_ns=None, to=[], now_s=NOW, ttl_s=60)
    with pytest.raises(LinkError, match="signature"):
        ack_link.verify(KEY, other, NOW)


def test_a_short_or_unexpanded_key_is_a_config_error() -> None:
    for bad in ("short", "${FSG_LINK_KEY}"):
        with pytest.raises(ValueError, match="link_key"):
            ack_link.check_key(bad)
    assert ack_link.check_key(None) is None
