"""Hot reload: read the site again, check it, and apply only what changed to the running gateway.

A reload (SIGHUP, ``systemctl reload``, ``gateway reload SITE.yaml``) loads
the site file, its profiles, rule files and patrol config with the same
loader as a start (``gateway.loader.load_site``). A config that does not load
changes nothing: the config in force keeps running, every problem is logged
with its file and line, a ``config.rejected`` event is recorded and the
``gateway:config`` health alarm is raised; the next good reload clears it.

A config that loads is compared with the one in force (``gateway.reload.diff``)
and applied in this order:

1. sources removed or restarted are stopped (their connection closed);
2. sources added or restarted start with their new devices; every other
   source keeps its task and its connection, so its devices poll on without a gap;
3. the alert rules are bound again to the devices (``AlertEngine.reconfigure``):
   the alarm book (latched, shelved, unacknowledged alarms), the store and the
   notifier stay; alarms of removed rules or devices return to normal with a note;
4. a changed patrol config is applied to the saved patrol state (open rounds,
   overdue gaps already raised, the time since the last round), as a restart would;
5. a changed InfluxDB sink (``sinks_restarted``) is replaced by one with its new
   config, resuming on its outbox cursor (``Delivery.replace_sink``);
6. a ``config.applied`` event records the files' hash and what changed; the
   MQTT sink clears the retained availability of the devices it removed.

The outbox and its cursors are never touched, nor any other sink; sections that
only a restart applies are named in the event and the log (``restart_needed``).
Reloads are serialised by a lock; one asked for during shutdown is ignored.
The outcome is also written to ``reload-status.json`` in the state directory,
where ``gateway reload`` reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.alerting.commands import actor_of, error_reply, load_payload, parse_command
from gateway.config import Site
from gateway.errors import CommandError, ConfigError
from gateway.loader import load_site
from gateway.model import AlarmEvent
from gateway.outbox import Event
from gateway.patrol import PatrolEngine, SqlitePatrolStore, resolve_patrol
from gateway.patrol.config import PatrolConfig
from gateway.reload import ConfigChange, Snapshot, config_hash, diff

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

CONFIG_SIGNAL = "config"
STATUS_FILE = "reload-status.json"
PID_FILE = "gateway.pid"
# A shutdown waits this long for a reload in progress before it cancels it.
STOP_WAIT_S = 10.0


@dataclass
class ReloadResult:
    """What one reload did: ``applied``, ``rejected`` or ``ignored``."""

    outcome: str
    hash: str = ""
    generation: int = 0
    problems: list[str] = field(default_factory=list)
    change: ConfigChange | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "hash": self.hash,
            "generation": self.generation,
            "problems": self.problems,
            "change": self.change.summary() if self.change is not None else None,
        }


def _load(path: Path) -> tuple[Site, PatrolConfig | None]:
    site = load_site(path)
    return site, resolve_patrol(site.config.patrol, site.path)


class Reloader:
    """Applies reloads to one running gateway (module docstring)."""

    def __init__(self, gw: Gateway, patrol: PatrolConfig | None) -> None:
        self._gw = gw
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[ReloadResult]] = set()
        self.snapshot = Snapshot(gw.site, patrol)
        self.hash = config_hash(gw.site)
        self.generation = 0
        self.stopping = False
        # The first problem of the last rejected reload, until a reload applies.
        self.error: str | None = None

    # ------------------------------------------------------------------ entry points

    def request(self) -> None:
        """Ask for a reload from a signal handler: it runs as its own task."""
        if self.stopping:
            log.info("config reload ignored: the gateway is stopping")
            return
        task = asyncio.get_running_loop().create_task(self.reload(), name="config reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> ReloadResult:
        """Load the site again and apply what changed; serialised with other reloads."""
        if self.stopping:
            return ReloadResult("ignored", self.hash, self.generation)
        async with self._lock:
            if self.stopping:
                log.info("config reload ignored: the gateway is stopping")
                return ReloadResult("ignored", self.hash, self.generation)
            path = self._gw.site.path
            log.info("config reload: reading %s", path)
            try:
                site, patrol = await asyncio.to_thread(_load, path)
            except ConfigError as exc:
                return self._rejected(exc.problems or [str(exc)])
            except Exception as exc:  # the gateway never crashes on a bad file
                log.exception("config reload failed while reading %s", path)
                return self._rejected([f"{path}: {type(exc).__name__}: {exc}"])
            try:
                return await self._apply(site, patrol)
            except Exception as exc:  # a bug here must not take the running gateway down
                log.exception("config reload failed while applying %s", path)
                return self._rejected([f"{path}: applying failed: {type(exc).__name__}: {exc}"])

    async def stop(self) -> None:
        """Refuse reloads from now on and let one in progress finish (bounded)."""
        self.stopping = True
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=STOP_WAIT_S)
            for t in pending:
                t.cancel()
        # No process to signal any more: `gateway reload` then says the gateway is not running.
        with contextlib.suppress(OSError):
            (self._gw.state_dir / PID_FILE).unlink()

    def command(self, payload: bytes | str | dict[str, Any], actor: str) -> dict[str, Any] | None:
        """The reply to a ``reload`` command (None: not one). The command channel's gate
        has checked its signature and who may give it; the reload runs as its own task and
        its outcome follows on the events topic (``config.applied`` / ``config.rejected``)."""
        try:
            data = load_payload(payload)
        except CommandError:
            return None
        if data.get("cmd") != "reload":
            return None
        try:
            c = parse_command(data)
        except CommandError as exc:
            return error_reply(payload, exc)
        if self.stopping:
            return {"ok": False, "error": "refused", "message": "the gateway is stopping",
                    "request_id": c.request_id}  # fmt: skip
        log.info("config reload asked for by %s", actor_of(c, actor))
        self.request()
        return {"ok": True, "cmd": "reload", "request_id": c.request_id, "accepted": True,
                "hash": self.hash}  # fmt: skip

    def signal(self) -> tuple[str, bool, str]:
        """The ``gateway:config`` health signal: bad while the last reload was rejected."""
        if self.error is None:
            return (CONFIG_SIGNAL, True, f"config {self.hash[:12]} in force")
        return (CONFIG_SIGNAL, False, f"reload rejected, previous config in force: {self.error}")

    def write_pid(self) -> None:
        log.info("config %s in force (%s)", self.hash[:12], self._gw.site.path)
        self._write(PID_FILE, f"{os.getpid()}\n")
        self._status(ReloadResult("started", self.hash, self.generation))

    # ------------------------------------------------------------------ outcomes

    def _rejected(self, problems: list[str]) -> ReloadResult:
        self.generation += 1
        for p in problems:
            log.error("config reload rejected: %s", p)
        log.error("config reload rejected: the running config (%s) stays in force", self.hash[:12])
        self.error = problems[0]
        gw = self._gw
        gw.delivery.append_event(
            Event(
                kind="config.rejected",
                ts_ns=gw.clock.now_ns(),
                data={"hash": self.hash, "generation": self.generation, "error": problems[0],
                      "problems": problems[:20]},
                measurement="config",
            )
        )  # fmt: skip
        self._health()
        result = ReloadResult("rejected", self.hash, self.generation, problems)
        self._status(result)
        return result

    async def _apply(self, site: Site, patrol: PatrolConfig | None) -> ReloadResult:
        gw = self._gw
        new = Snapshot(site, patrol)
        change = diff(self.snapshot, new)
        if gw.alerts is None and (site.config.rules or site.config.alerting is not None):
            # Alerting was off at the start: its engine, store and notifier start with a restart.
            change.restart_needed = sorted({*change.restart_needed, "rules"})
        new_hash = config_hash(site)
        self.generation += 1
        stop_ids = set(change.sources_removed) | set(change.sources_restarted)
        await gw.source_set.stop(stop_ids)
        if change.devices_removed:
            # Health samples of removed devices already queued go out before the event
            # that clears their retained availability (gateway/plugins/mqtt/sink.py).
            await gw._drain(STOP_WAIT_S)
        gw.site = site
        gw.set_device_tags()
        started = gw.source_set.build(
            site, set(change.sources_added) | set(change.sources_restarted)
        )
        await self._start(started)
        if gw.alerts is not None:
            if change.alerting_rebind:
                self._alarms(gw.alerts.reconfigure(site))
            for sid in change.sources_removed:
                self._alarms(
                    gw.alerts.health(f"source:{sid}", True, "source removed (config reload)")
                )
        if change.patrol_changed:
            self._patrol(patrol)
        for name in change.sinks_restarted:
            await gw.delivery.replace_sink(name, site.config.sinks.configured()[name])
        self.snapshot, self.hash, self.error = new, new_hash, None
        if change.restart_needed:
            log.warning(
                "config reload: changes to %s take effect at the next restart",
                ", ".join(change.restart_needed),
            )
        log.info("config reload applied (%s): %s", new_hash[:12], change.describe())
        gw.delivery.append_event(
            Event(
                kind="config.applied",
                ts_ns=gw.clock.now_ns(),
                data={"hash": new_hash, "generation": self.generation,
                      "summary": change.describe(), **change.summary()},
                measurement="config",
            )
        )  # fmt: skip
        self._health()
        result = ReloadResult("applied", new_hash, self.generation, change=change)
        self._status(result)
        return result

    async def _start(self, sources: list[Any]) -> None:
        for s in sources:
            try:
                await self._gw.source_set.start([s])
            except Exception as exc:  # one source that cannot open must not undo the reload
                log.error("config reload: source %s did not start: %s", s.cfg.id, exc)
                if self._gw.alerts is not None:
                    why = f"did not start after a reload: {exc}"
                    self._alarms(self._gw.alerts.health(f"source:{s.cfg.id}", False, why))

    def _patrol(self, cfg: PatrolConfig | None) -> None:
        """Swap the patrol config over the saved patrol state (as a restart would load it)."""
        gw = self._gw
        old = gw.patrol
        if old is not None:
            old._save()
        if cfg is None:
            if old is not None:
                old.store.close()
            gw.patrol = None
            if gw.alerts is not None:
                now = gw.clock.now_ns()
                for a in list(gw.alerts.book.alarms.values()):
                    if a.spec.kind == "patrol":
                        note = "patrol removed (config reload)"
                        self._alarms(gw.alerts.book.retire(a.alarm_id, now, note))
            return
        store = old.store if old is not None else None
        if store is None:
            store = SqlitePatrolStore(gw.state_dir / "patrol-state.sqlite")
        gw.patrol = PatrolEngine(cfg, gw.clock, store)

    def _alarms(self, events: list[AlarmEvent]) -> None:
        self._gw._append_alarms(events)

    def _health(self) -> None:
        if self._gw.alerts is not None:
            self._alarms(self._gw.alerts.health(*self.signal()))

    # ------------------------------------------------------------------ status file

    def _status(self, result: ReloadResult) -> None:
        self._write(STATUS_FILE, json.dumps(result.to_json_dict()) + "\n")

    def _write(self, name: str, text: str) -> None:
        path = self._gw.state_dir / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        try:
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError as exc:  # a full or read-only disk: the reload itself stands
            log.warning("cannot write %s: %s", path, exc)
