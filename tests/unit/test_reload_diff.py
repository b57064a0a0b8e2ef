"""gateway.reload.diff as a table: one edit of a site (real loader) -> what a reload changes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.loader import load_site
from gateway.patrol.config import resolve_patrol
from gateway.reload import ConfigChange, Snapshot, config_hash, diff

RULES: dict[str, Any] = {
    "rules": [
        {"id": "leak", "kind": "limit", "select": {"kinds": ["leakage"]}, "points": ["leak_ch1"],
         "limits": {"hihi": {"value": 300, "severity": "high", "latch": True}}},
        {"id": "leak-2", "kind": "limit", "select": {"kinds": ["leakage"]}, "points": ["leak_ch2"],
         "limits": {"hi": {"value": 250, "severity": "medium"}}},
    ]
}  # fmt: skip

SLOW = {"interval_s": 5}
SITE: dict[str, Any] = {
    "site": "diff",
    "sources": [
        {"id": "tcp-a", "type": "modbus_tcp", "host": "127.0.0.1", "port": 1502},
        {"id": "tcp-b", "type": "modbus_tcp", "host": "127.0.0.1", "port": 1503},
        {"id": "tcp-spare", "type": "modbus_tcp", "host": "127.0.0.1", "port": 1504},
    ],
    "devices": [
        {"id": "a1", "profile": "leakage-monitor", "source": "tcp-a", "unit": 1, "interval_s": 5},
        {"id": "b1", "profile": "leakage-monitor", "source": "tcp-b", "unit": 1, "interval_s": 5},
        {"id": "b2", "profile": "leakage-monitor", "source": "tcp-b", "unit": 2, "interval_s": 5},
    ],
    "sinks": {"console": {"enabled": True}},
    "outbox": {"path": "outbox.sqlite"},
    "rules": ["rules.yaml"],
    "patrol": {
        "checkpoints": [{"id": "cp-1", "reader": "r1"}],
        "routes": [{"id": "r", "checkpoints": ["cp-1"]}],
    },
}


def load(tmp: Path, name: str, site: dict[str, Any], rules: dict[str, Any]) -> Snapshot:
    folder = tmp / name
    folder.mkdir()
    (folder / "rules.yaml").write_text(yaml.safe_dump(rules))
    (folder / "site.yaml").write_text(yaml.safe_dump(site))
    loaded = load_site(folder / "site.yaml")
    return Snapshot(loaded, resolve_patrol(loaded.config.patrol, loaded.path))


Edit = Callable[[dict[str, Any], dict[str, Any]], None]


def dev(site: dict[str, Any], dev_id: str) -> dict[str, Any]:
    return next(d for d in site["devices"] if d["id"] == dev_id)


CASES: list[tuple[str, Edit, dict[str, Any]]] = [
    ("nothing", lambda s, r: None, {}),
    ("description only", lambda s, r: s.update(description="new words"), {}),
    (
        "threshold changed",
        lambda s, r: r["rules"][0]["limits"]["hihi"].update(value=500),
        {"rules_changed": ["leak"]},
    ),
    ("rule removed", lambda s, r: r["rules"].pop(1), {"rules_removed": ["leak-2"]}),
    (
        "rule added",
        lambda s, r: r["rules"].append({**copy.deepcopy(r["rules"][1]), "id": "leak-3"}),
        {"rules_added": ["leak-3"]},
    ),
    (
        "device added on a used source",
        lambda s, r: s["devices"].append(
            {"id": "b3", "profile": "leakage-monitor", "source": "tcp-b", "unit": 3, **SLOW}
        ),
        {"devices_added": ["b3"], "sources_restarted": ["tcp-b"]},
    ),
    (
        "device added on an unused source",
        lambda s, r: s["devices"].append(
            {"id": "s1", "profile": "leakage-monitor", "source": "tcp-spare", "unit": 1, **SLOW}
        ),
        {"devices_added": ["s1"], "sources_added": ["tcp-spare"]},
    ),
    (
        "device removed, its source keeps another",
        lambda s, r: s["devices"].remove(dev(s, "b2")),
        {"devices_removed": ["b2"], "sources_restarted": ["tcp-b"]},
    ),
    (
        "last device of a source removed",
        lambda s, r: s["devices"].remove(dev(s, "a1")),
        {"devices_removed": ["a1"], "sources_removed": ["tcp-a"]},
    ),
    (
        "device disabled counts as removed",
        lambda s, r: dev(s, "b2").update(enabled=False),
        {"devices_removed": ["b2"], "sources_restarted": ["tcp-b"]},
    ),
    (
        "device interval changed",
        lambda s, r: dev(s, "b1").update(interval_s=10),
        {"devices_changed": ["b1"], "sources_restarted": ["tcp-b"]},
    ),
    (
        "device moved to another source",
        lambda s, r: dev(s, "b2").update(source="tcp-a", unit=2),
        {"devices_changed": ["b2"], "sources_restarted": ["tcp-a", "tcp-b"]},
    ),
    (
        "device tags changed (rules may select it differently)",
        lambda s, r: dev(s, "a1").update(tags={"protection": "personal"}),
        {"devices_changed": ["a1"], "sources_restarted": ["tcp-a"]},
    ),
    (
        "source timeout changed",
        lambda s, r: s["sources"][0].update(timeout_s=0.5),
        {"sources_restarted": ["tcp-a"]},
    ),
    (
        "unused source changed",
        lambda s, r: s["sources"][2].update(port=1600),
        {},
    ),
    (
        "patrol changed",
        lambda s, r: s["patrol"].update(max_gap_s=3600),
        {"patrol_changed": True},
    ),
    (
        "sink and outbox changed need a restart",
        lambda s, r: s.update(
            sinks={"console": {"enabled": False}}, outbox={"path": "elsewhere.sqlite"}
        ),
        {"restart_needed": ["outbox", "sinks"]},
    ),
]


@pytest.mark.parametrize(("name", "edit", "expected"), CASES, ids=[c[0] for c in CASES])
def test_diff_table(tmp_path: Path, name: str, edit: Edit, expected: dict[str, Any]) -> None:
    site, rules = copy.deepcopy(SITE), copy.deepcopy(RULES)
    old = load(tmp_path, "old", site, rules)
    edit(site, rules)
    new = load(tmp_path, "new", site, rules)
    change = diff(old, new)
    assert change.summary() == {**ConfigChange().summary(), **expected}
    assert change.empty == (not expected)


INFLUX = {"mode": "v1", "url": "http://127.0.0.1:1", "database": "fsg"}


@pytest.mark.parametrize(
    ("edit", "restarted", "restart_needed"),
    [
        ({"influx": {**INFLUX, "url": "http://127.0.0.1:2"}}, ["influx"], []),
        ({"influx": {**INFLUX, "enabled": False}}, [], ["sinks"]),  # its cursor goes
        ({"influx": INFLUX, "mqtt": {"host": "127.0.0.1"}}, [], ["sinks"]),
        ({"influx": {**INFLUX, "database": "b"}, "console": {"enabled": False}}, [], ["sinks"]),
    ],
    ids=["url", "disabled", "mqtt added", "with the console"],
)
def test_a_changed_influx_sink_restarts_alone(
    tmp_path: Path, edit: dict[str, Any], restarted: list[str], restart_needed: list[str]
) -> None:
    site, rules = copy.deepcopy(SITE), copy.deepcopy(RULES)
    site["sinks"] = {**site["sinks"], "influx": INFLUX}
    old = load(tmp_path, "old", site, rules)
    site["sinks"] = {**site["sinks"], **edit}
    change = diff(old, load(tmp_path, "new", site, rules))
    assert change.sinks_restarted == restarted
    assert change.restart_needed == restart_needed


def test_profile_change_restarts_its_devices_source(tmp_path: Path) -> None:
    site, rules = copy.deepcopy(SITE), copy.deepcopy(RULES)
    old = load(tmp_path, "old", site, rules)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    text = (Path(__file__).parents[2] / "gateway/profiles/builtin/leakage-monitor.yaml").read_text()
    (profiles / "leak2.yaml").write_text(text.replace("name: leakage-monitor", "name: leak2"))
    site["profile_dirs"] = [str(profiles)]
    dev(site, "b1")["profile"] = "leak2"
    change = diff(old, load(tmp_path, "new", site, rules))
    assert change.devices_changed == ["b1"] and change.sources_restarted == ["tcp-b"]
    assert change.restart_needed == []


def test_hash_follows_the_files_not_where_they_are(tmp_path: Path) -> None:
    a = load(tmp_path, "a", copy.deepcopy(SITE), copy.deepcopy(RULES))
    b = load(tmp_path, "b", copy.deepcopy(SITE), copy.deepcopy(RULES))
    rules = copy.deepcopy(RULES)
    rules["rules"][0]["limits"]["hihi"]["value"] = 301
    c = load(tmp_path, "c", copy.deepcopy(SITE), rules)
    assert config_hash(a.site) == config_hash(b.site) != config_hash(c.site)
    assert "threshold" not in diff(a, b).describe() and diff(a, b).describe() == "no change"
    assert diff(a, c).describe() == "rules changed: leak"
