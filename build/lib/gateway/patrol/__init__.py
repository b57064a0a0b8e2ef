"""Night patrol: RFID checkpoints, rounds, the patrol verdicts and the night report.

``config`` holds the models (checkpoints, guards, routes, night window),
``engine`` turns taps and time into records and findings, ``store`` keeps the
engine's state across restarts, ``report`` reads a night back from InfluxDB.
"""

from gateway.patrol.config import (
    PatrolConfig,
    check_against_devices,
    load_patrol,
    parse_patrol,
    resolve_patrol,
)
from gateway.patrol.engine import (
    MEASUREMENT,
    Finding,
    FindingType,
    PatrolEngine,
    PatrolOutput,
    alarms_of,
    to_events,
)
from gateway.patrol.store import MemoryPatrolStore, PatrolStore, SqlitePatrolStore

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
