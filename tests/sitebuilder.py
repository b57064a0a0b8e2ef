"""One way for tests to write a site file: the site as plain data, adjusted, then dumped to YAML.

``site`` builds the document (the schema of gateway/config.py) from sources,
devices and the sinks of the real servers (``mqtt_sink``, ``influx_sink``);
``leak_monitor_site`` is the site the alerting and console tests share (one
leakage monitor whose channel 1 stands at 450 mA under the park lighting
rules); a test changes what it needs in the returned dicts (add a device, a
scenario, a route) and ``write_site`` writes it. Building data instead of
YAML text means no test edits another's template with string replacement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.servers import InfluxDB1, Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[1]
Doc = dict[str, Any]


def mqtt_sink(mq: Mosquitto, prefix: str = "fsg") -> Doc:
    return {"host": "127.0.0.1", "port": mq.port, "prefix": prefix}


def influx_sink(influx: InfluxDB1) -> Doc:
    return {"mode": "v1", "url": influx.url, "database": influx.database, "create_database": True}


def site(
    name: str,
    *,
    sources: list[Doc],
    devices: list[Doc],
    folder: Path | None = None,
    mq: Mosquitto | None = None,
    influx: InfluxDB1 | None = None,
    **extra: Any,
) -> Doc:
    """A site document: with ``folder`` its outbox lives there; ``mq``, ``influx`` add sinks."""
    doc: Doc = {"site": name, "sources": sources, "devices": devices}
    sinks: Doc = dict(extra.pop("sinks", {}))
    if mq is not None:
        sinks["mqtt"] = mqtt_sink(mq)
    if influx is not None:
        sinks["influx"] = influx_sink(influx)
    if sinks:
        doc["sinks"] = sinks
    if folder is not None:
        doc["outbox"] = {"path": str(folder / "outbox.sqlite")}
    doc.update(extra)
    return doc


def leak_monitor_site(
    name: str, folder: Path, mq: Mosquitto, influx: InfluxDB1 | None = None, **users: Doc
) -> Doc:
    """leak-1 (unit 1 of a Modbus TCP simulator on a free port) with leak_ch1 at 450 mA, the park
    lighting rules (latched 300 mA alarm), its alarm state in ``folder``, command ``users``."""
    return site(
        name,
        folder=folder,
        mq=mq,
        influx=influx,
        sources=[{"id": "tcp-1", "type": "modbus_tcp", "host": "127.0.0.1", "port": free_port(),
                  "timeout_s": 0.4, "retries": 0}],
        devices=[{"id": "leak-1", "profile": "leakage-monitor", "source": "tcp-1", "unit": 1,
                  "interval_s": 0.5, "tags": {"area": "north-gate"},
                  "sim": {"leak_ch1": {"kind": "constant", "value": 450}}}],
        commands={"users": users},
        rules=[str(ROOT / "rules" / "park_lighting.yaml")],
        alerting={"state_db": str(folder / "alarms.sqlite")},
    )  # fmt: skip


def write_site(folder: Path, doc: Doc, name: str = "site.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path
