"""Fixtures of the integration tests: the loopback receivers of tests/integration/receivers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.servers import InfluxDB1, Mosquitto
from tests.integration.receivers import Mailbox, WebhookReceiver, smtp_on_loopback
from tests.integration.test_alerting_e2e import L2_AFTER_S, L3_AFTER_S, site_yaml


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    with smtp_on_loopback(box) as port:
        yield box, port


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    w = WebhookReceiver()
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def one_level_site(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    webhook: WebhookReceiver,
    mailbox: tuple[Mailbox, int],
) -> Path:
    """The end-to-end site, told at level 1 only (no escalation during the test)."""
    path = site_yaml(tmp_path, mosquitto, influxdb1, mailbox[1], webhook.port)
    levels = f"[{{after_s: 0}}, {{after_s: {L2_AFTER_S}}}, {{after_s: {L3_AFTER_S}}}]"
    path.write_text(path.read_text().replace(levels, "[{after_s: 0}]"))
    return path
