"""The running sources: built from a site through their plugins, started and stopped one by one.

Each source is one physical connection (a Modbus TCP endpoint, a serial
line). ``SourceSet`` builds them from a site, enters each one's context and
runs it supervised in its own task (``tasks.supervise``: a source that raises
is restarted after a pause and its crash becomes a ``source:<id>`` health
signal). Sources are started and stopped individually so that a config
reload (gateway/reloader.py) restarts only the ones whose config changed: the
others keep their task and their connection, and keep polling without a gap.

The lists ``sources``, ``polled`` and ``patrol_readers`` are updated in
place, so whoever holds them (the gateway's health figures, ``/healthz``)
sees the sources of the config in force.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import Site
from gateway.model import Clock
from gateway.plugins import BoundDevice, Source, SourceContext, registry
from gateway.tasks import cancel_and_wait, supervise

log = logging.getLogger(__name__)


@dataclass
class _Running:
    source: Source
    task: asyncio.Task[None]


class SourceSet:
    """The site's sources, and the tasks that run them."""

    def __init__(
        self,
        ctx: SourceContext,
        clock: Clock,
        on_crash: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self._ctx = ctx
        self._clock = clock
        self._on_crash = on_crash
        self.sources: list[Source] = []
        # Sources whose devices are patrol readers (their garbage and floods are findings).
        self.patrol_readers: list[Source] = []
        # Sources that poll devices by unit on an interval (the /healthz poll-stall check).
        self.polled: list[Source] = []
        # Point units of every device, by device id (the sinks label values with them).
        self.units: dict[str, dict[str, str]] = {}
        self._running: dict[str, _Running] = {}

    def build(self, site: Site, only: set[str] | None = None) -> list[Source]:
        """Make the sources of ``site`` (all, or those whose id is in ``only``); not started."""
        plugins = registry()
        made: list[Source] = []
        for src in site.config.sources:
            if only is not None and src.id not in only:
                continue
            devs = site.devices_of(src.id)
            if not devs:
                continue
            bound = [BoundDevice(d, site.device_profiles[d.id]) for d in devs]
            self.units.update({d.id: site.device_profiles[d.id].point_units() for d in devs})
            plugin = plugins.source(src.type)
            source = plugin.make(src, bound, self._ctx)
            self.sources.append(source)
            if plugin.patrol_reader:
                self.patrol_readers.append(source)
            if plugin.unit_addressed:
                self.polled.append(source)
            made.append(source)
        return made

    def _note_crash(self, source_id: str) -> Callable[[BaseException], None]:
        def note(exc: BaseException) -> None:
            if self._on_crash is not None:
                self._on_crash(source_id, exc)

        return note

    async def start(self, sources: list[Source] | None = None) -> None:
        """Open and run ``sources`` (default: every one not yet running)."""
        todo = self.sources if sources is None else sources
        for s in todo:
            sid = s.cfg.id
            if sid in self._running:
                continue
            await s.__aenter__()
            task = asyncio.create_task(
                supervise(f"source {sid}", s.run, on_crash=self._note_crash(sid)),
                name=f"source {sid}",
            )
            self._running[sid] = _Running(s, task)

    async def stop(self, ids: set[str] | None = None) -> None:
        """Stop and close the sources with these ids (default: all), and forget them."""
        gone = [r for sid, r in self._running.items() if ids is None or sid in ids]
        await cancel_and_wait([r.task for r in gone])
        for r in gone:
            try:
                await r.source.__aexit__(None, None, None)
            except Exception as exc:  # a close that fails must not keep the others open
                log.warning("closing source %s: %s", r.source.cfg.id, exc)
            del self._running[r.source.cfg.id]
        drop = {id(r.source) for r in gone}
        if ids is not None:
            drop |= {id(s) for s in self.sources if s.cfg.id in ids}
        for lst in (self.sources, self.patrol_readers, self.polled):
            lst[:] = [s for s in lst if id(s) not in drop]

    def running_ids(self) -> set[str]:
        return set(self._running)

    def task_of(self, source_id: str) -> asyncio.Task[None] | None:
        r = self._running.get(source_id)
        return r.task if r is not None else None
