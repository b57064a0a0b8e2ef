"""Credentials never appear in logs, ``gateway check`` output, errors or health details.

One helper (gateway/redact.py) masks the password of a URL's user info and
secret query parameters; the gateway warns once when a password or token
would cross the network without TLS.
"""

from __future__ import annotations

import io
import logging
import socket
from pathlib import Path

import pytest

from gateway.config import InfluxSinkConfig, SiteConfig
from gateway.errors import SinkError
from gateway.plugins.influx.sink import InfluxSink
from gateway.redact import (
    RedactingFilter,
    plaintext_secret_warnings,
    redact_text,
    redact_url,
)
from tests.integration.delivery_support import make_delivery, running, wait_until
from tests.unit.test_config_errors import GOOD_SITE
from tests.unit.test_yaml_limits import run_cli

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://admin:s3cr3t-Pa55@influx.lan:8086", "http://admin:***@influx.lan:8086"),
        ("https://admin:s3cr3t-Pa55@[::1]:8086/x", "https://admin:***@[::1]:8086/x"),
        ("http://s3cr3t-Pa55@influx.lan/", "http://***@influx.lan/"),
        ("http://h:8086/write?db=x&u=me&p=s3cr3t-Pa55", "http://h:8086/write?db=x&u=me&p=***"),
        (
            "https://oapi.dingtalk.com/robot/send?access_token=s3cr3t-Pa55",
            "https://oapi.dingtalk.com/robot/send?access_token=***",
        ),
        ("https://h/hook?Token=s3cr3t-Pa55&x=1", "https://h/hook?Token=***&x=1"),
        ("mqtt://gw:s3cr3t-Pa55@broker:1883", "mqtt://gw:***@broker:1883"),
        ("http://localhost:8086", "http://localhost:8086"),
        ("http://[::1", "http://[::1"),
        ("http://a:s3cr3t-Pa55@[::1", "http://a:***@[::1"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_finds_urls_and_secret_fields() -> None:
    text = (
        f"ConnectError('http://u:{SECRET}@h:1/ping') {{'password': '{SECRET}'}}"
        f" token={SECRET} check username/password"
    )
    out = redact_text(text)
    assert SECRET not in out
    assert "http://u:***@h:1/ping" in out and "check username/password" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("mode", ["v1", "v2"])
async def test_influx_errors_do_not_show_the_password(mode: str) -> None:
    # Nothing listens on the port: a real connection refusal.
    url = f"http://admin:{SECRET}@127.0.0.1:{_free_port()}"
    cfg = InfluxSinkConfig(url=url, mode=mode, database="d", bucket="b", timeout_s=1)
    with pytest.raises(SinkError) as info:
        async with InfluxSink(cfg, "park"):
            pass
    assert SECRET not in str(info.value)
    assert "admin:***@127.0.0.1" in str(info.value)


async def test_sink_outage_log_and_health_detail_are_redacted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://admin:{SECRET}@127.0.0.1:{_free_port()}"
    d = make_delivery(tmp_path / "ob.sqlite", influx={"url": url, "mode": "v1", "database": "d"})
    caplog.set_level(logging.DEBUG)
    async with running(d):
        await wait_until(lambda: bool(d.stats().sinks["influx"].last_error), 20, "an outage")
    detail = d.stats().sinks["influx"].last_error or ""
    assert "admin:***@127.0.0.1" in detail and SECRET not in detail
    assert "cannot deliver" in caplog.text and SECRET not in caplog.text


def test_log_filter_redacts_every_record() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("test_redaction.filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("connecting to %s", f"http://u:{SECRET}@h:8086")
        try:
            raise OSError(f"refused: https://h/send?access_token={SECRET}")
        except OSError:
            log.exception("webhook failed")
        saved = logging.raiseExceptions
        logging.raiseExceptions = False  # keep logging's own error report off stderr
        try:
            log.warning("%d", "not a number")  # a malformed call must not raise here
        finally:
            logging.raiseExceptions = saved
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "connecting to http://u:***@h:8086" in out
    assert "access_token=***" in out and "Traceback" in out
    assert SECRET not in out


def _site(tmp_path: Path, sinks: str) -> Path:
    (tmp_path / "profiles").mkdir(exist_ok=True)
    path = tmp_path / "site.yaml"
    path.write_text(GOOD_SITE + sinks)
    return path


def test_gateway_check_shows_sinks_redacted_and_warns_once(tmp_path: Path) -> None:
    path = _site(
        tmp_path,
        "sinks:\n"
        f"  influx: {{url: 'http://admin:{SECRET}@192.0.2.10:8086', bucket: b}}\n"
        f"  mqtt: {{host: 192.0.2.11, username: gw, password: '{SECRET}'}}\n",
    )
    res = run_cli("check", str(path))
    assert res.returncode == 0, res.stderr
    assert SECRET not in res.stdout + res.stderr
    assert "sink influx: http://admin:***@192.0.2.10:8086" in res.stdout
    assert "sink mqtt: 192.0.2.11:1883" in res.stdout
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings == [
        "warning: sinks.influx: a password is sent to http://admin:***@192.0.2.10:8086"
        " without TLS (use https://)",
        "warning: sinks.mqtt: a password is sent to 192.0.2.11:1883 without TLS"
        " (set sinks.mqtt.tls)",
    ]


def _cfg(tmp_path: Path, sinks: str) -> SiteConfig:
    from gateway.loader import load_site

    return load_site(_site(tmp_path, sinks)).config


@pytest.mark.parametrize(
    ("sinks", "expect"),
    [
        ("sinks: {influx: {url: 'https://a:x@h', bucket: b}}\n", []),
        ("sinks: {influx: {url: 'http://h:8086', bucket: b}}\n", []),
        ("sinks: {influx: {url: 'http://localhost:8086', bucket: b, token: t}}\n", []),
        ("sinks: {influx: {url: 'http://127.0.0.1:8086', bucket: b, token: t}}\n", []),
        (
            "sinks: {influx: {url: 'http://h:8086', bucket: b, token: t}}\n",
            ["sinks.influx: a token is sent to http://h:8086 without TLS (use https://)"],
        ),
        (
            "sinks: {influx: {url: 'http://h:8086', mode: v1, database: d, username: u,"
            " password: p}}\n",
            ["sinks.influx: a password is sent to http://h:8086 without TLS (use https://)"],
        ),
        ("sinks: {mqtt: {host: h, username: u, password: p, tls: {}}}\n", []),
        ("sinks: {mqtt: {host: h, username: u}}\n", []),
        (
            "alerting:\n  channels:\n"
            "    - {name: w, type: webhook, url: 'http://h/send?access_token=t'}\n"
            "    - {name: s, type: webhook, url: 'http://h/x', secret: k}\n"
            "    - {name: e, type: email, host: mx, sender: a@b, security: none,"
            " username: u, password: p}\n"
            "    - {name: ok, type: email, host: mx, sender: a@b, username: u, password: p}\n",
            [
                "alerting.channels[w]: a token is sent to http://h/send?access_token=***"
                " without TLS (use https://)",
                "alerting.channels[e]: a password is sent to mx:25 without TLS"
                " (security: starttls or ssl)",
            ],
        ),
    ],
)
def test_plaintext_secret_warnings(tmp_path: Path, sinks: str, expect: list[str]) -> None:
    assert plaintext_secret_warnings(_cfg(tmp_path, sinks)) == expect


def test_gateway_run_logs_no_secret_and_warns_once(tmp_path: Path) -> None:
    # 192.0.2.10 is TEST-NET-1: never answers, so the sink times out and logs its outage.
    path = _site(
        tmp_path,
        "sinks:\n"
        f"  influx: {{url: 'http://admin:{SECRET}@192.0.2.10:8086', mode: v1, database: d,"
        " timeout_s: 0.5, retry_min_s: 0.1, retry_max_s: 0.2}\n"
        f"outbox: {{path: '{tmp_path / 'outbox.sqlite'}'}}\n",
    )
    res = run_cli("run", str(path), "--duration", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    assert SECRET not in res.stdout + res.stderr
    assert res.stderr.count("without TLS") == 1
    assert "sink influx: cannot deliver: influx http://admin:***@192.0.2.10:8086" in res.stderr
