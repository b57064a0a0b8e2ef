"""Test-only crash points: ``GATEWAY_CRASH_AT=<name>`` makes the process SIGKILL itself there.

A kill -9 from outside lands at a random moment; the dangerous moments (an
alarm state just saved, a notification just sent) are a few microseconds
wide. A crash point lets a test kill the real gateway exactly there, so the
crash-order tests are deterministic. Unset (always, outside tests) it costs
one dict lookup at each point.
"""

from __future__ import annotations

import os
import signal

ENV = "GATEWAY_CRASH_AT"


def crash_point(name: str) -> None:
    """SIGKILL this process if ``GATEWAY_CRASH_AT`` names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
