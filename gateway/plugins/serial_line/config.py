"""Config model of the ASCII serial-line source (``serial_line``: one reader per line)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.plugins.serial_port import SerialSettings


class SerialLineSource(SerialSettings):
    type: Literal["serial_line"]
    # No line at all for this long marks the reader offline (points bad).
    # Off by default: a checkpoint reader is silent between taps.
    silence_s: float | None = Field(default=None, ge=1, le=86400)
    # Lines accepted per second (token bucket, bursts up to max_burst_lines); lines over
    # the rate are dropped unread and counted (overruns), so a flooding reader cannot
    # starve the other sources. A person taps a checkpoint every few seconds at most.
    max_lines_per_s: float = Field(default=10.0, ge=0.1, le=10_000)
    max_burst_lines: int = Field(default=30, ge=1, le=100_000)
