"""The gateway's own /healthz and /metrics over a real socket: a real gateway polling a
simulator and delivering to real Mosquitto, scraped and parsed with prometheus-client's
parser; /healthz turns 503 while another process holds the outbox's write lock (the
outbox cannot commit) and back to 200 once it lets go."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from gateway.local_http_config import LocalHttpConfig
from tests.fixtures.servers import Mosquitto
from tests.integration.console_support import running_gateway, site_yaml, wait
from tests.simproc import free_port, running_sim

SITE = "metrics-park"


def scrape(base: str) -> dict[str, Any]:
    """``/metrics`` parsed: family name -> {(labels...): value} (sample names kept apart)."""
    r = httpx.get(f"{base}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[str, Any] = {}
    for fam in text_string_to_metric_families(r.text):
        series = out.setdefault(fam.name, {"type": fam.type})
        for s in fam.samples:
            series[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def value(fams: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    return float(fams[family][(sample, *sorted(labels.items()))])


def answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=5).status_code in (200, 503)
    except httpx.TransportError:
        return False


@pytest.mark.timeout(180)
def test_metrics_scraped_and_parsed_and_healthz_follows_the_outbox(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    site = site_yaml(tmp_path, SITE, mosquitto)
    port = free_port()
    with site.open("a") as f:
        f.write(f"local_http: {{listen: '127.0.0.1:{port}', stall_s: 3}}\n")
    base = f"http://127.0.0.1:{port}"
    with running_sim(site, {}), running_gateway(site) as gw:
        wait(lambda: answers(base), 60, "the local endpoint listening")
        first = scrape(base)
        for family, kind in {
            "fsg_polls": "counter",
            "fsg_poll_errors": "counter",
            "fsg_poll_latency_seconds": "summary",
            "fsg_device_online": "gauge",
            "fsg_outbox_backlog": "gauge",
            "fsg_outbox_oldest_age_seconds": "gauge",
            "fsg_outbox_evictions": "counter",
            "fsg_sink_connected": "gauge",
            "fsg_alarms": "gauge",
            "fsg_notifications_sent": "counter",
            "fsg_notifications_failed": "counter",
            "fsg_loop_lag_max_seconds": "gauge",
            "fsg_clock_steps": "counter",
            "fsg_samples": "counter",
            "fsg_healthy": "gauge",
        }.items():
            assert first.get(family, {}).get("type") == kind, (family, sorted(first))
        assert ("fsg_outbox_backlog", ("sink", "mqtt")) in first["fsg_outbox_backlog"]
        assert ("fsg_poll_errors_total", ("device", "leak-1"), ("kind", "timeouts")) in first[
            "fsg_poll_errors"
        ]
        assert value(first, "fsg_clock_steps", "fsg_clock_steps_total") == 0

        # Values move: polls and their latency sum grow, the latched leakage alarm is counted.
        def moved() -> dict[str, Any] | None:
            now = scrape(base)
            polls = value(now, "fsg_polls", "fsg_polls_total", device="leak-1")
            alarms = value(now, "fsg_alarms", "fsg_alarms", state="unacknowledged")
            before = value(first, "fsg_polls", "fsg_polls_total", device="leak-1")
            return now if polls > before and alarms >= 1 else None

        later = wait(moved, 60, "polls counted and the leakage alarm in fsg_alarms")
        assert value(
            later, "fsg_poll_latency_seconds", "fsg_poll_latency_seconds_sum", device="leak-1"
        ) > value(
            first, "fsg_poll_latency_seconds", "fsg_poll_latency_seconds_sum", device="leak-1"
        )
        assert value(later, "fsg_device_online", "fsg_device_online", device="leak-1") == 1
        assert value(later, "fsg_samples", "fsg_samples_total") > value(
            first, "fsg_samples", "fsg_samples_total"
        )

        ok = httpx.get(f"{base}/healthz", timeout=10)
        assert (ok.status_code, ok.text) == (200, "ok\n")
        assert httpx.get(f"{base}/nope", timeout=10).status_code == 404
        assert httpx.post(f"{base}/healthz", timeout=10).status_code == 405

        # Another process takes the outbox's write lock: the gateway cannot commit, so
        # /healthz says so (and why) once that lasted stall_s; the gateway keeps running.
        lock = sqlite3.connect(tmp_path / SITE / "outbox.sqlite", timeout=10, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")

            def unhealthy() -> httpx.Response | None:
                r = httpx.get(f"{base}/healthz", timeout=10)
                return r if r.status_code == 503 else None

            bad = wait(unhealthy, 60, "/healthz 503 while the outbox cannot commit")
            assert "outbox not committing" in bad.text and "polling" not in bad.text
            assert value(scrape(base), "fsg_healthy", "fsg_healthy") == 0
            assert gw.poll() is None
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        wait(
            lambda: httpx.get(f"{base}/healthz", timeout=10).status_code == 200,
            60,
            "/healthz 200 again once the outbox commits",
        )
        assert value(scrape(base), "fsg_healthy", "fsg_healthy") == 1


def test_local_http_settings_are_checked() -> None:
    assert LocalHttpConfig().listen == "127.0.0.1:9180"
    assert LocalHttpConfig(listen="[::1]:9100").host_port() == ("::1", 9100)
    for bad in ("9180", "localhost:", "host:99999", ":80"):
        with pytest.raises(ValidationError, match="HOST:PORT"):
            LocalHttpConfig(listen=bad)
    with pytest.raises(ValidationError):
        LocalHttpConfig(stall_s=0.5)
    with pytest.raises(ValidationError):
        LocalHttpConfig(port=1)  # type: ignore[call-arg]
