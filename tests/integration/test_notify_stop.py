"""A notification in flight when the gateway stops or dies: sent once, or resent marked.

Real gateway and simulator processes, a real Mosquitto and InfluxDB, an SMTP
server (aiosmtpd) and a local HTTP receiver standing in for the group-chat
robot (tests/integration/receivers.py). The receiver can hold its answer, so
the gateway is stopped (SIGTERM) while the POST is open. For the "maybe
sent" case the gateway kills itself with SIGKILL right after the POST was
answered and before it recorded that, through the test-only crash point
``GATEWAY_CRASH_AT=notification-sent`` (gateway/crashpoints.py): the
restarted gateway sends it again, marked as a possible duplicate.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.alerting.store import AlertStore
from gateway.crashpoints import ENV as CRASH_ENV
from tests.integration.receivers import Mailbox, WebhookReceiver
from tests.integration.test_alarm_crash import start_gateway
from tests.integration.test_alerting_e2e import stop, wait
from tests.simproc import running_sim
from tests.sitebuilder import Doc, write_site

# How long the receiver holds its answer after SIGTERM while the gateway has not exited.
HOLD_AFTER_TERM_S = 2.0


def queue_settled(tmp: Path) -> bool:
    store = AlertStore(tmp / "alarms.sqlite")
    try:
        counts = store.counts()
    finally:
        store.close()
    return bool(counts) and set(counts) == {"sent"}


def stop_then_restart(
    site: Path,
    env: dict[str, str],
    first: Callable[[subprocess.Popen[str]], None],
    then: Callable[[], None],
) -> tuple[int | None, str]:
    """Run the gateway with ``env`` through ``first`` (which ends it), then again through ``then``.

    Returns the first run's exit code and the second run's stderr.
    """
    with running_sim(site, {}):
        gw = start_gateway(site, env)
        try:
            first(gw)
        finally:
            err = stop(gw)
        code = gw.returncode
        assert code in (0, -signal.SIGKILL), err
        gw = start_gateway(site, {})
        try:
            then()
        finally:
            err = stop(gw)
    return code, err


@pytest.mark.timeout(150)
def test_sigterm_during_a_webhook_post_lets_it_finish_and_never_sends_it_twice(
    tmp_path: Path, one_level_site: Path, webhook: WebhookReceiver, mailbox: tuple[Mailbox, int]
) -> None:
    box, site = mailbox[0], one_level_site
    webhook.release.clear()  # the robot answers only when the test says so

    def sigterm_mid_post(gw: subprocess.Popen[str]) -> None:
        assert webhook.entered.wait(60), "the alarm's webhook POST"
        gw.send_signal(signal.SIGTERM)
        # Answer once the gateway exited (it cut the POST) or after a while (it waits).
        deadline = time.monotonic() + HOLD_AFTER_TERM_S
        while gw.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        webhook.release.set()
        gw.wait(30)
        assert len(webhook.posts) == 1

    def settled() -> None:
        wait(lambda: queue_settled(tmp_path), 30, "every notification marked sent")
        wait(lambda: len(box.to("wang@park.example")) == 1, 30, "the e-mail")

    code, err = stop_then_restart(site, {}, sigterm_mid_post, settled)
    assert code == 0
    assert "Traceback" not in err, err
    assert len(webhook.posts) == 1, webhook.posts
    assert len(box.to("wang@park.example")) == 1


@pytest.mark.timeout(150)
def test_sigkill_after_a_post_before_it_was_recorded_resends_it_marked_possible_duplicate(
    tmp_path: Path, one_level_doc: Doc, webhook: WebhookReceiver
) -> None:
    one_level_doc["alerting"]["routes"][0]["channels"] = ["chat"]
    site = write_site(tmp_path, one_level_doc)

    def resent() -> None:
        wait(lambda: len(webhook.posts) >= 2, 30, "the resend after the restart")
        wait(lambda: queue_settled(tmp_path), 30, "every notification marked sent")

    env = {CRASH_ENV: "notification-sent"}
    code, err = stop_then_restart(site, env, lambda gw: gw.wait(60), resent)
    assert code == -signal.SIGKILL
    assert "Traceback" not in err, err
    first, again = webhook.posts
    assert "X-Gateway-Possible-Duplicate" not in webhook.headers[0]
    assert webhook.headers[1]["X-Gateway-Possible-Duplicate"] == "true"
    # A person reading the robot's message sees it too.
    assert again["markdown"]["title"].startswith("(possible duplicate)")
    assert "possible duplicate" not in first["markdown"]["title"]
