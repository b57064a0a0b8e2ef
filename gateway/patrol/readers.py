"""What checkpoint readers report besides known cards: their health and unknown cards.

A reader goes offline (its port went away or fell silent) and back online;
its source counts garbage lines and lines dropped over its rate, reported at
most once per ``garbage_report_s`` (a flood of dropped lines is an alarm:
taps may be among them). Unknown cards are aggregated per reader: ONE alarm
per reader (``patrol/unknown_card/<reader>``), whatever the number of cards.
The first unknown card of a burst raises it at once; the cards after it are
counted and re-raise the same alarm with the burst's count and the last few
card ids at most every ``unknown_card_report_s``; a reader quiet for that
long ends the burst.
"""

from __future__ import annotations

from gateway.patrol.findings import UNKNOWN_GUARD, Finding, FindingType, PatrolOutput
from gateway.patrol.mixin import NS, EngineMixin
from gateway.patrol.state import ReaderHealth, UnknownCards


class ReaderWatch(EngineMixin):
    """Reader health and unknown-card bursts (a part of ``PatrolEngine``)."""

    def reader_status(
        self, device: str, ok: bool, detail: str = "", *, ts_ns: int | None = None
    ) -> list[PatrolOutput]:
        """The app's word on a reader's port: ``ok=False`` when it went away or is silent."""
        out = self._set_reader(device, ok, detail, self.clock.now_ns() if ts_ns is None else ts_ns)
        if out:
            self._save()
        return out

    def reader_frame_errors(self, device: str, total: int) -> list[PatrolOutput]:
        """The source's running count of garbage lines; reported at most once per interval."""
        text = "reader {device} sent {new} unreadable line(s)"
        return self._reader_tally(device, total, FindingType.READER_GARBAGE, text)

    def reader_overflow(self, device: str, total: int) -> list[PatrolOutput]:
        """The source's running count of lines dropped over its rate: one alarm per reader line.

        Dropped lines were never read, so taps may be among them: an alarm, not a
        record, re-raised with the new count at most once per ``garbage_report_s``.
        """
        return self._reader_tally(
            device,
            total,
            FindingType.READER_FLOOD,
            "reader {device} floods its line: {new} line(s) dropped unread over its rate"
            " ({total} in all); taps may be among them",
        )

    def _reader_tally(
        self, device: str, total: int, ftype: FindingType, text: str
    ) -> list[PatrolOutput]:
        h = self._s.readers.setdefault(device, ReaderHealth())
        flood = ftype is FindingType.READER_FLOOD
        now = self.clock.now_ns()
        new = (h.dropped if flood else h.garbage).due(
            total, now, int(self.config.garbage_report_s * NS)
        )
        if new <= 0:
            return []
        self._count("dropped_lines" if flood else "garbage_lines", new)
        cps = self._checkpoints_of(device)
        f = Finding(
            ftype,
            now,
            text.format(device=device, new=new, total=total),
            "medium",
            checkpoint=cps[0] if len(cps) == 1 else None,
            device=device,
            alarm=flood,
            alarm_key=f"patrol/reader_flood/{device}" if flood else None,
            alarm_action="pulse" if flood else None,
            data={"count": int(new), "total": int(total), "checkpoints": ",".join(cps)},
        )
        self._save()
        return [f]

    def _set_reader(self, device: str, ok: bool, detail: str, ts: int) -> list[PatrolOutput]:
        h = self._s.readers.setdefault(device, ReaderHealth())
        if h.ok == ok:
            h.detail = detail if not ok else h.detail
            return []
        h.ok = ok
        h.detail = detail
        h.since_ns = ts
        cps = self._checkpoints_of(device)
        where = ", ".join(cps) if cps else "no known checkpoint"
        if not ok:
            self._count("reader_offline")
            return [
                Finding(
                    FindingType.READER_OFFLINE,
                    ts,
                    f"checkpoint reader {device} ({where}) offline: {detail}",
                    "medium",
                    checkpoint=cps[0] if len(cps) == 1 else None,
                    device=device,
                    data={"detail": detail, "checkpoints": ",".join(cps)},
                )
            ]
        return [
            Finding(
                FindingType.READER_ONLINE,
                ts,
                f"checkpoint reader {device} ({where}) back online",
                "info",
                checkpoint=cps[0] if len(cps) == 1 else None,
                device=device,
                data={"checkpoints": ",".join(cps)},
            )
        ]

    def _unknown_ns(self) -> int:
        return int(self.config.unknown_card_report_s * NS)

    def _unknown_due(self, now: int) -> list[PatrolOutput]:
        """Report the cards counted since the last report; end bursts that went quiet."""
        out: list[PatrolOutput] = []
        every = self._unknown_ns()
        for reader, u in sorted(self._s.unknown.items()):
            if u.report_ns is not None and now - u.report_ns < every:
                continue
            if u.count > u.reported:
                out.append(self._unknown_report(reader, u, now))
            elif now - u.last_ns >= every:
                del self._s.unknown[reader]
        return out

    def _unknown_report(self, reader: str, u: UnknownCards, ts: int) -> Finding:
        """The reader's one unknown-card alarm, raised again with the burst's count so far."""
        new = u.count - u.reported
        u.reported, u.report_ns = u.count, ts
        cp_id = u.checkpoint or reader
        if u.count == 1:
            msg = f"1 unknown card tap at {cp_id} (reader {reader}): {u.cards[-1]}"
        else:
            msg = (
                f"{u.count} unknown card taps at {cp_id} (reader {reader})"
                f" since {self._local(u.first_ns, '%H:%M:%S')}; last: {', '.join(u.cards)}"
            )
        return Finding(
            FindingType.UNKNOWN_CARD,
            ts,
            msg,
            "high",
            checkpoint=cp_id,
            guard=UNKNOWN_GUARD,
            device=u.device,
            alarm=True,
            alarm_key=f"patrol/unknown_card/{reader}",
            alarm_action="pulse",
            data={
                "card": u.cards[-1],
                "cards": ",".join(u.cards),
                "reader": reader,
                "count": int(u.count),
                "new": int(new),
                "since_ns": int(u.first_ns),
            },
        )
