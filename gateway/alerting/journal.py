"""The alert engine's durable state: alarms, counters, the journal and planned notifications.

``_flush`` writes the changed alarms, the counters and flood state, the new
transitions (the journal) and the notifications they plan in one SQLite
transaction, so a restart neither forgets, repeats nor leaves a saved
transition unpublished; the journal keeps each transition until the outbox
confirms it (``unpublished``, ``confirm_published``). A full disk keeps the
changes in memory and writes them with the next change that fits.
"""

from __future__ import annotations

import logging
import sqlite3

from gateway.alerting.parts import EngineMixin
from gateway.crashpoints import crash_point
from gateway.disk_space import is_disk_full
from gateway.model import AlarmEvent

# The engine's logger: these lines are the engine's, whichever module holds the code.
log = logging.getLogger("gateway.alerting.engine")


class StateJournal(EngineMixin):
    """Persisting the engine's changes (a part of ``AlertEngine``)."""

    # A full disk: why the state cannot be saved, and the transitions not yet
    # journaled and planned for notification (saved with the next change).
    state_error: str | None
    _unsaved: list[AlarmEvent]

    def _flush(self, events: list[AlarmEvent]) -> list[AlarmEvent]:
        """Persist changed alarms and plan notifications in one transaction."""
        store = self.store
        if store is None:
            return events
        if not events and not self.book.dirty and not self._unsaved:
            return events
        todo = self._unsaved + events
        try:
            with store.transaction():
                if self.book.dirty:
                    store.save_alarms(
                        [self.book.alarms[i].to_json_dict() for i in sorted(self.book.dirty)]
                    )
                    store.set_meta("counters", self.book.counters)
                    store.set_meta(
                        "flood",
                        {
                            "in_flood": self.book.in_flood,
                            "recent": list(self.book.flood_recent)[-1000:],
                        },
                    )
                if todo:
                    # With the state, not after it: a crash before the outbox commits
                    # leaves the transition here, and the restart publishes it.
                    store.journal([e.to_json_dict() for e in todo])
                if todo and self.notifier is not None:
                    self.notifier.on_events(todo)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            # A full disk must not stop alarming: the transitions still go to the
            # outboxes (the caller appends them); state, journal and notifications
            # are written with the next change that fits (gateway/disk_space.py
            # makes room).
            if self.state_error is None:
                log.error("alarm state %s cannot be saved: %s; kept in memory", store.path, exc)
            self.state_error = f"alarm state {store.path} cannot be saved: {exc}"
            self._unsaved = todo
            return events
        self.book.dirty.clear()
        self._unsaved = []
        if self.state_error is not None:
            log.warning("alarm state %s saved again", store.path)
            self.state_error = None
        if events:
            crash_point("alarm-state-saved")
        return events

    def unpublished(self) -> tuple[list[AlarmEvent], int]:
        """Journaled transitions the outbox has not confirmed, and the journal head.

        Every public call appends (through its caller) the events it returns
        before the caller yields, so once the outbox has committed what was
        appended so far, everything up to ``journal_head()`` is in it.
        """
        store = self._need_store()
        return [AlarmEvent.from_json_dict(d) for d in store.journaled()], store.journal_head()

    def journal_head(self) -> int:
        return self._need_store().journal_head()

    def confirm_published(self, upto: int) -> None:
        """The outbox committed every transition journaled up to ``upto``."""
        if self.store is not None:
            self.store.confirm_journal(upto)
