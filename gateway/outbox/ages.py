"""How long each sink's oldest undelivered record has waited, on the real monotonic clock.

Backlog age is the gateway's own health: a real duration, neither stepped with
the wall clock nor sped up by a replay, so it is kept apart from the records'
wall-clock stamps.
"""

from __future__ import annotations

from gateway.model import Clock


class HeadAges:
    """The real read time of each sink's head record, and its age now."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._head_read: dict[str, tuple[int, float]] = {}

    def real_time_of(self, ts_ns: int, wall_ns: int, real_s: float) -> float:
        """When a record stamped ``ts_ns`` was read, on the real monotonic clock.

        Taken from its wall age now, so only a wall-clock step between the read and
        this call can skew it; in a replay the site's time is scaled back to real time.
        """
        return real_s - max(0, wall_ns - ts_ns) / 1e9 / self._clock.speed

    def seen(self, sink: str, ts_ns: int, read_s: float) -> None:
        """The sink's head is now the record stamped ``ts_ns``, read at ``read_s``."""
        self._head_read[sink] = (ts_ns, read_s)

    def age_s(self, sink: str, head: int | None, wall_ns: int, real_s: float) -> float:
        """The real time the sink's oldest undelivered record has waited since its read.

        A head read back from the file is timed from its wall age when first seen.
        """
        if head is None:
            return 0.0
        got = self._head_read.get(sink)
        if got is None or got[0] != head:
            got = self._head_read[sink] = (head, self.real_time_of(head, wall_ns, real_s))
        return max(0.0, real_s - got[1])
