"""Fixtures of the integration tests: the loopback receivers of tests/integration/receivers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.servers import InfluxDB1, Mosquitto
from tests.integration.receivers import Mailbox, WebhookReceiver, smtp_on_loopback
from tests.integration.test_alerting_e2e import site_doc
from tests.sitebuilder import Doc, write_site


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
def one_level_doc(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    webhook: WebhookReceiver,
    mailbox: tuple[Mailbox, int],
) -> Doc:
    """The end-to-end site, told at level 1 only (no escalation during the test), as data."""
    doc = site_doc(tmp_path, mosquitto, influxdb1, mailbox[1], webhook.port)
    doc["alerting"]["routes"][0]["escalation"] = [{"after_s": 0}]
    return doc


@pytest.fixture
def one_level_site(tmp_path: Path, one_level_doc: Doc) -> Path:
    """``one_level_doc`` written as the site file."""
    return write_site(tmp_path, one_level_doc)
