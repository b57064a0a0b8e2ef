"""The gateway process: signal handlers, interpreter settings and the shutdown watchdog.

What belongs to running ``gateway run`` as a daemon rather than to the
gateway's wiring (gateway/app.py): SIGINT/SIGTERM stop it, SIGHUP reloads
its config (gateway/reloader.py), and a hung shutdown ends the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

# A clean stop flushes the outbox and closes every connection in well under
# this; past it something is stuck and systemd/an operator would wait forever.
SHUTDOWN_LIMIT_S = 20.0


class ShutdownWatchdog:
    """A thread that ends the process if shutdown hangs, after dumping every stack.

    A thread, not a task: it must work even if the event loop itself is blocked.
    Nothing is lost by the hard exit: what was not delivered is in the outbox.
    """

    def __init__(self, limit_s: float) -> None:
        self._timer = threading.Timer(limit_s, self._fire)
        self._timer.daemon = True
        self.limit_s = limit_s
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        if not self._timer.is_alive():
            self._loop = asyncio.get_running_loop()
            self._timer.start()

    def _dump_tasks(self, done: threading.Event) -> None:
        for task in asyncio.all_tasks():
            print(f"task {task.get_name()}: {task!r}", file=sys.stderr)
            task.print_stack(file=sys.stderr)
        done.set()

    def _fire(self) -> None:
        log.error("shutdown did not finish in %g s; stacks follow, exiting", self.limit_s)
        if self._loop is not None and not self._loop.is_closed():
            # The loop is usually idle in a hang: ask it for its tasks' stacks.
            done = threading.Event()
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._dump_tasks, done)
                done.wait(2.0)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(3)


def install_signal_handlers(
    stop: asyncio.Event, reload: Callable[[], None] | None = None
) -> Callable[[], None]:
    """SIGINT/SIGTERM set ``stop``, SIGHUP calls ``reload``; returns a function that
    removes the handlers."""
    loop = asyncio.get_running_loop()
    sigs = [signal.SIGINT, signal.SIGTERM]
    for sig in sigs:
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
        sigs.append(signal.SIGHUP)

    def remove() -> None:
        for sig in sigs:
            loop.remove_signal_handler(sig)

    return remove


# The interpreter settings of the gateway process (see tune_runtime).
SWITCH_INTERVAL_S = 0.001
GC_GEN0_THRESHOLD = 10_000


def tune_runtime() -> None:
    """Process-wide interpreter settings for the daemon (not for a library user).

    - GIL switch interval 1 ms (default 5 ms): the outbox thread releases the
      GIL around every SQLite call and waits up to the interval to get it back
      while the event loop is busy, so a commit of 6 statements could take
      30 ms and an alarm waited for it (docs/bench.md, "Hot-path changes").
    - Young-generation GC threshold 10,000 (default 700): samples, records and
      futures are allocated by the thousand a second and freed by reference
      counting; collecting every 700 allocations mostly walks live objects.
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)
