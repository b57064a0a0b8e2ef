"""Fixtures of the integration tests: the loopback receivers of tests/integration/receivers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.receivers import Mailbox, WebhookReceiver, smtp_on_loopback


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
