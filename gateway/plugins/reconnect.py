"""When a polling source may try to open its link again, and its one warning per outage.

The Modbus and M-Bus sources open their link at the start of a poll. After a
failed open the next attempt waits ``reconnect_min_s``, doubling up to
``reconnect_max_s`` (the delay resets once the link opens), and a poll due in
between finds the link closed without trying, so a dead converter costs the
line nothing. An outage is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from gateway.errors import ConnectError
from gateway.plugins.base import SourceConfig


class LinkRetry:
    """The back-off and the outage log of one source's link."""

    def __init__(self, cfg: SourceConfig, log: logging.Logger) -> None:
        self._cfg = cfg
        self._log = log  # the source's own logger, so its lines keep their name
        self._delay = cfg.reconnect_min_s
        self._next = 0.0
        # Whether the outage in progress has been logged (a failed open, or lost()).
        self.down = False

    async def open(
        self, open_link: Callable[[], Awaitable[None]], now: float, again: str
    ) -> bool | ConnectError:
        """Open the link if an attempt is due: True when open, the error when it
        failed, False when the back-off says not yet. ``again`` is logged when
        the link opens after a logged outage."""
        if now < self._next:
            return False
        try:
            await open_link()
        except ConnectError as exc:
            if not self.down:
                self._log.warning(
                    "%s; retrying with back-off up to %g s", exc, self._cfg.reconnect_max_s
                )
                self.down = True
            self._next = now + self._delay
            self._delay = min(self._delay * 2, self._cfg.reconnect_max_s)
            return exc
        if self.down:
            self._log.warning("%s", again)
        self.down = False
        self._delay = self._cfg.reconnect_min_s
        return True

    def lost(self) -> None:
        """The open link failed mid-use and the source has said so: the next
        failed open is part of the same outage, and the reopen ends it."""
        self.down = True
