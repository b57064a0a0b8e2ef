"""What the parts of the alert engine share: the site, clock, alarm book, store, notifier.

``AlertEngine`` (``engine.py``) binds rules to devices and dispatches samples
and time; its other parts are mixins in modules of their own: the no-data
detectors (``nodata.py``), the gateway's own health and external alarms
(``health.py``), the state journal (``journal.py``) and operator commands and
views (``operator.py``). ``EngineMixin`` declares what the engine holds and
the helpers it defines, so each part type-checks alone and the engine's own
methods stay where they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.alerting.alarms import AlarmBook
from gateway.alerting.config import AlertingConfig
from gateway.alerting.detector import Detector
from gateway.alerting.notify import Notifier
from gateway.alerting.store import AlertStore
from gateway.config import SiteConfig
from gateway.model import AlarmEvent, Clock


class EngineMixin:
    """The engine's attributes and helpers, as its parts see them (defined in ``AlertEngine``)."""

    config: SiteConfig
    clock: Clock
    cfg: AlertingConfig
    emit: Callable[[list[AlarmEvent]], None] | None
    book: AlarmBook
    store: AlertStore | None
    notifier: Notifier | None
    pending: set[Detector]
    _later: list[AlarmEvent]

    if TYPE_CHECKING:

        def _now(self) -> int: ...

        def _need_store(self) -> AlertStore: ...
