"""Rate limits for the command channel: token buckets, and a flood that is logged once.

A ``TokenBucket`` holds up to ``burst`` tokens and gains ``rate`` a second
(monotonic clock); each command takes one. ``Buckets`` keeps one per key
(user, alarm), bounded: past ``max_keys`` it forgets the idle (full) ones,
and when none is idle a new key shares the ``"(overflow)"`` bucket, so many
keys cannot grow memory. ``FloodLog`` turns thousands of refusals into one
line when the flood starts and one summary line per interval while it lasts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("gateway.alerting.commands")


@dataclass
class TokenBucket:
    rate: float
    burst: int
    tokens: float = -1.0
    stamp: float | None = None

    def take(self, now: float) -> bool:
        if self.stamp is None:
            self.tokens = float(self.burst)
        else:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def idle(self, now: float) -> bool:
        """Full again: forgetting it changes nothing."""
        if self.stamp is None:
            return True
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


@dataclass
class Buckets:
    rate: float
    burst: int
    max_keys: int = 10_000
    by_key: dict[str, TokenBucket] = field(default_factory=dict)

    def take(self, key: str, now: float) -> bool:
        bucket = self.by_key.get(key)
        if bucket is None:
            if len(self.by_key) >= self.max_keys:
                for k in [k for k, b in self.by_key.items() if b.idle(now)]:
                    del self.by_key[k]
            if len(self.by_key) >= self.max_keys:
                key = "(overflow)"
            bucket = self.by_key.setdefault(key, TokenBucket(self.rate, self.burst))
        return bucket.take(now)


@dataclass
class FloodLog:
    """Counts what is dropped; logs the start of a flood once and then a summary per interval."""

    what: str
    every_s: float
    total: int = 0
    since: int = 0
    last_summary: float | None = None
    # Whether the current run of refusals was already answered once.
    since_reply: bool = False

    def dropped(self, now: float, detail: str) -> None:
        self.total += 1
        self.since += 1
        if self.last_summary is None:
            self.last_summary = now
            log.warning("command flood: %s (%s); dropping and counting", self.what, detail)
        else:
            self.maybe_summary(now)

    def maybe_summary(self, now: float) -> None:
        if self.last_summary is None or now - self.last_summary < self.every_s:
            return
        if self.since:
            log.warning(
                "command flood: %d %s in the last %.0f s (%d in all)",
                self.since, self.what, now - self.last_summary, self.total,
            )  # fmt: skip
            self.since = 0
            self.last_summary = now
        else:
            log.warning("command flood over: %d %s in all", self.total, self.what)
            self.last_summary = None
            self.total = 0
