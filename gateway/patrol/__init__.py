"""Night patrol: RFID checkpoints, rounds, the patrol verdicts and the night report.

``config`` holds the models (checkpoints, guards, routes, night window),
``engine`` turns taps and time into records and ``findings`` (its parts: see
``patrol/mixin.py``; its memory: ``state``), ``store`` keeps the
engine's state across restarts, ``night`` reads a night back from InfluxDB
(over the InfluxQL client of ``influxql``) and ``report`` renders it.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.patrol.config import (
        PatrolConfig,
        check_against_devices,
        load_patrol,
        parse_patrol,
        resolve_patrol,
    )
    from gateway.patrol.engine import PatrolEngine
    from gateway.patrol.findings import (
        MEASUREMENT,
        Finding,
        FindingType,
        PatrolOutput,
        alarms_of,
        to_events,
    )
    from gateway.patrol.store import MemoryPatrolStore, PatrolStore, SqlitePatrolStore

# Loaded on first use: ``gateway.config`` imports ``patrol.config``, and that
# must not load the engine and the outbox under the site schema.
_HOME = {
    **dict.fromkeys(
        ["PatrolConfig", "check_against_devices", "load_patrol", "parse_patrol", "resolve_patrol"],
        "config",
    ),
    **dict.fromkeys(
        ["MEASUREMENT", "Finding", "FindingType", "PatrolOutput", "alarms_of", "to_events"],
        "findings",
    ),
    "PatrolEngine": "engine",
    **dict.fromkeys(["MemoryPatrolStore", "PatrolStore", "SqlitePatrolStore"], "store"),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "MEASUREMENT",
    "Finding",
    "FindingType",
    "MemoryPatrolStore",
    "PatrolConfig",
    "PatrolEngine",
    "PatrolOutput",
    "PatrolStore",
    "SqlitePatrolStore",
    "alarms_of",
    "check_against_devices",
    "load_patrol",
    "parse_patrol",
    "resolve_patrol",
    "to_events",
]
