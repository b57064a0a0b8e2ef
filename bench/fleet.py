"""Fleet throughput and alarm latency: the real gateway against a simulated fleet.

One scenario (``run_fleet``):

1. ``bench.fleet_sim`` (own process) serves N devices x M points on
   ``ceil(N / per_endpoint)`` Modbus TCP ports on 127.0.0.1.
2. A site is written to a temp folder: one ``modbus_tcp`` source per port,
   the benchmark profile (``fleet_sim.point_layout``), a limit rule on every
   point (hi 50, no delay), MQTT and InfluxDB 1.x (v1 mode) sinks, console
   off, the outbox in the temp folder, ``health_interval_s`` at its default
   (10 s; a BacklogSampler reads the backlog from the outbox file). MQTT
   ``max_inflight`` is 1000 (default 100): the MQTT worker waits for a
   batch's last PUBACK, so with 100 in flight a 500-message batch costs five
   round trips through a busy event loop and caps MQTT near 14,000 points/s.
3. Two ``mosquitto_sub`` processes (C, so counting costs the machine little
   and receive times are not delayed by a Python subscriber's GIL) write
   every telemetry and every alarm message with its receive time (``%U``).
4. ``gateway run SITE`` (own process). After ``warmup_s`` the measuring
   window of ``duration_s`` starts: gateway CPU (utime+stime from
   ``/proc/<pid>/stat``), machine CPU (``/proc/stat``), simulator CPU.
5. At the end of the window the simulator stops answering (SIGUSR1) and
   reports how many requests it served: that is what was produced. The
   harness waits (bounded) until InfluxDB and MQTT have all of it, reads the
   gateway's peak RSS (``VmHWM``), stops it, and counts what is left in the
   outbox file.

Figures: points/s delivered in the window (MQTT receive times; InfluxDB
``count()`` over the window's sample timestamps), gateway CPU seconds per
100,000 points, peak RSS, backlog over time (the gateway's own
``gateway_health`` samples), drain time, outbox rows left, points lost, and
alarm latency (receive time of the retained alarm state minus the ``ts_ns``
of the sample that crossed the limit, which is the poll's completion time).
"""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.fleet_sim import LIMIT, registers_of, write_profile
from bench.procs import Child, Children, pid_cpu_s, python_argv, renice
from tests.fixtures.servers import InfluxDB1, Mosquitto, need

PROFILE = "bench-device"
KIND = "bench"
RULE = "bench-limit"


@dataclass
class FleetParams:
    devices: int = 500
    points: int = 40
    interval_s: float = 1.0
    duration_s: float = 30.0
    warmup_s: float = 5.0
    per_endpoint: int = 10
    flip_every_s: float = 0.0  # 0: no alarm flips
    flip_hold_s: float = 1.5
    # The gateway's default: its per-device health rows are part of the load.
    health_interval_s: float = 10.0
    drain_timeout_s: float = 60.0
    label: str = "fleet"
    # Niceness of the stand-ins for what is not on the edge box in production
    # (the simulated devices, InfluxDB); 0 leaves them at the gateway's priority.
    background_nice: int = 10
    # Write a py-spy profile (collapsed stacks) of the gateway over the window here.
    profile: str = ""

    @property
    def offered_points_s(self) -> float:
        return self.devices * self.points / self.interval_s


@dataclass
class FleetResult:
    params: dict[str, Any]
    offered_points_s: float
    delivered_points_s_mqtt: float = 0.0
    delivered_points_s_influx: float = 0.0
    produced_points: int = 0
    delivered_influx: int = 0
    delivered_mqtt: int = 0
    mqtt_duplicates: int = 0
    lost_points: int = 0
    gateway_cpu_s: float = 0.0
    gateway_cpu_pct: float = 0.0
    cpu_s_per_100k_points: float = 0.0
    peak_rss_mb: float = 0.0
    machine_busy_pct: float = 0.0
    sim_cpu_pct: float = 0.0
    mosquitto_cpu_pct: float = 0.0
    influxdb_cpu_pct: float = 0.0
    subscribers_cpu_pct: float = 0.0
    backlog_max: int = 0
    backlog_end_of_load: int = 0
    backlog_slope_per_s: float = 0.0
    data_age_max_s: float = 0.0
    loop_lag_max_ms: float = 0.0
    # (seconds into the window, {sink: backlog rows}) twice a second.
    backlog_series: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    queue_depth_max: int = 0
    drain_s: float = 0.0
    outbox_rows_left_at_exit: int = 0
    outbox_points_left_at_exit: int = 0
    backlog_mqtt_max: int = 0
    backlog_influx_max: int = 0
    timeouts: int = 0
    overruns: int = 0
    sustained: bool = False
    alarm_latency_ms: dict[str, float] = field(default_factory=dict)
    alarms_expected: int = 0
    alarms_seen: int = 0
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- site files


def write_site(
    work: Path,
    p: FleetParams,
    ports: list[int],
    mq: Mosquitto,
    influx: InfluxDB1,
    database: str,
    site_id: str,
) -> Path:
    write_profile(
        work / "profiles",
        PROFILE,
        KIND,
        p.points,
        description=f"benchmark device: {p.points} points",
        unit="degC",
    )
    (work / "rules").mkdir(exist_ok=True)
    rules = {
        "area": "bench",
        "rules": [
            {
                "id": RULE,
                "kind": "limit",
                "select": {"kinds": [KIND]},
                "points": ["p*"],
                "severity": "high",
                "limits": {"hi": {"value": LIMIT}},
            }
        ],
    }
    (work / "rules" / "bench.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    # timeout x (retries + 1) must stay under the interval (gateway check).
    timeout = min(1.0, p.interval_s * 0.4)
    site = {
        "site": site_id,
        "profile_dirs": ["profiles"],
        "rules": ["rules/bench.yaml"],
        "sources": [
            {
                "id": f"ep{e:04d}",
                "type": "modbus_tcp",
                "host": "127.0.0.1",
                "port": port,
                "timeout_s": timeout,
                "retries": 1,
            }
            for e, port in enumerate(ports)
        ],
        "devices": [
            {
                "id": f"dev{d:05d}",
                "profile": PROFILE,
                "source": f"ep{d // p.per_endpoint:04d}",
                "unit": d % p.per_endpoint + 1,
                "interval_s": p.interval_s,
                "tags": {"area": "bench"},
            }
            for d in range(p.devices)
        ],
        "sinks": {
            "mqtt": {"host": mq.host, "port": mq.port, "max_inflight": 1000},
            "influx": {
                "mode": "v1",
                "url": influx.url,
                "database": database,
                "create_database": True,
            },
        },
        "outbox": {"path": str(work / "outbox.sqlite")},
        "pipeline": {"health_interval_s": p.health_interval_s},
        "alerting": {"state_db": str(work / "alarms.sqlite")},
    }
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


# --------------------------------------------------------------------------- far side


class MqttLog:
    """Incremental reader of a ``mosquitto_sub -F '%U %r %t %p'`` file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.samples: dict[tuple[str, int], tuple[float, int]] = {}
        self.duplicates = 0
        # (sample time in s, values): the gateway's own health, by when it was taken.
        self.health: list[tuple[float, dict[str, Any]]] = []
        self.device_health: list[tuple[float, str, dict[str, Any]]] = []
        self.alarms: list[tuple[float, dict[str, Any]]] = []
        self.points = 0

    def update(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        self._offset += end + 1
        for raw in data[: end + 1].splitlines():
            self._line(raw.decode(errors="replace"))

    def _line(self, line: str) -> None:
        parts = line.split(" ", 3)
        if len(parts) < 4:
            return
        recv_s, _retain, topic, payload = float(parts[0]), parts[1], parts[2], parts[3]
        if topic.endswith("/telemetry"):
            try:
                d = json.loads(payload)
            except ValueError:
                return
            kind = d.get("kind")
            if kind == KIND:
                key = (d["device"], int(d["ts_ns"]))
                if key in self.samples:
                    self.duplicates += 1
                    return
                n = len(d.get("values", {}))
                self.samples[key] = (recv_s, n)
                self.points += n
            elif kind == "gateway_health":
                self.health.append((int(d["ts_ns"]) / 1e9, d.get("values", {})))
            elif kind == "device_health":
                self.device_health.append((int(d["ts_ns"]) / 1e9, d["device"], d.get("values", {})))
        elif "/alarms/" in topic:
            try:
                self.alarms.append((recv_s, json.loads(payload)))
            except ValueError:
                return


def influx_count(influx: InfluxDB1, database: str, where: str = "") -> int:
    r = httpx.post(
        f"{influx.url}/query",
        params={"db": database},
        data={"q": f"SELECT count(/^p[0-9]+$/) FROM {KIND} {where}"},
        timeout=30,
    )
    r.raise_for_status()
    res = r.json()["results"][0]
    total = 0
    for s in res.get("series", []):
        for row in s["values"]:
            total += sum(int(v) for v in row[1:] if isinstance(v, int | float))
    return total


def start_sub(children: Children, name: str, mq: Mosquitto, topic: str, out: Path) -> Child:
    argv = [
        need("mosquitto_sub"),
        "-h",
        mq.host,
        "-p",
        str(mq.port),
        "-q",
        "1",
        "-t",
        topic,
        "-i",
        f"bench-{name}-{time.time_ns()}",
        "-F",
        "%U %r %t %p",
    ]
    child = children.start(name, ["sh", "-c", f'exec "$@" > {out}', "sh", *argv])
    return child


def wait_subscribed(mq: Mosquitto, topic: str, log: Path, timeout: float = 10.0) -> None:
    """Publish probes until the subscriber's file shows one (bounded)."""
    pub = need("mosquitto_pub")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        subprocess.run(
            [pub, "-h", mq.host, "-p", str(mq.port), "-t", topic, "-m", "probe", "-q", "1"],
            check=False,
            capture_output=True,
            timeout=5,
        )
        time.sleep(0.1)
        if log.exists() and b"probe" in log.read_bytes()[-4096:]:
            return
    raise RuntimeError(f"subscriber on {topic} did not receive the probe within {timeout} s")


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]
    total = sum(f[:8])
    return total - idle, total


def outbox_left(path: Path) -> tuple[int, int]:
    """(rows, benchmark points) some sink has not delivered yet, read from the outbox file."""
    if not path.exists():
        return -1, -1
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursors = [int(r[0]) for r in db.execute("SELECT seq FROM cursors")]
        low = min(cursors, default=0)
        rows = points = 0
        for (body,) in db.execute("SELECT body FROM records WHERE seq > ?", (low,)):
            rows += 1
            d = json.loads(body)
            if d.get("kind") == KIND:
                points += len(d.get("values") or {})
        return rows, points
    finally:
        db.close()


class BacklogSampler:
    """Reads each sink's backlog (last seq minus its cursor) from the outbox file twice a second.

    The gateway's own health samples come every ``health_interval_s`` (10 s
    by default, and the benchmark keeps the default: per-device health rows
    are part of the load); this gives the backlog trend its own, finer series.
    Read-only, in WAL mode: it never blocks the gateway's writer.
    """

    def __init__(self, path: Path, every_s: float = 0.5) -> None:
        self.path = path
        self.every_s = every_s
        self.series: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BacklogSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=1.0)
                try:
                    row = db.execute(
                        "SELECT seq FROM sqlite_sequence WHERE name = 'records'"
                    ).fetchone()
                    last = int(row[0]) if row else 0
                    cur = {str(s): int(q) for s, q in db.execute("SELECT sink, seq FROM cursors")}
                finally:
                    db.close()
            except sqlite3.Error:
                continue
            self.series.append((time.time(), {s: max(0, last - q) for s, q in cur.items()}))


def counter_delta(
    health: list[tuple[float, str, dict[str, Any]]], key: str, t0: float, t1: float
) -> int:
    """Sum over devices of how much ``key`` grew between the last reports before t0 and t1."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for ts, dev, v in health:
        if ts < t0:
            first[dev] = int(v.get(key, 0))
        if ts < t1:
            last[dev] = int(v.get(key, 0))
    return sum(n - first.get(dev, 0) for dev, n in last.items())


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: the figure is a value that happened)."""
    if not values:
        return math.nan
    s = sorted(values)
    k = max(0, math.ceil(q / 100 * len(s)) - 1)
    return s[k]


# "Sustained" allows the backlog to trend up by at most this fraction of the
# sample rate. The InfluxDB sink writes up to 5,000 rows after lingering 1 s,
# so its backlog is a sawtooth, lifted for a moment every health interval by
# the per-device health rows: a smaller trend cannot be told from that noise
# in a 30 s window.
SUSTAINED_TREND = 0.02


def trend(points: list[tuple[float, float]]) -> float:
    """Backlog growth per second: the median of the window's second half minus its first's.

    Medians, not a least-squares slope: robust to the sawtooth's phase and to
    a half that ends in a burst, where a fitted slope reads a trend into noise.
    """
    if len(points) < 6:
        return 0.0
    t0, t1 = points[0][0], points[-1][0]
    mid = (t0 + t1) / 2
    first = [v for t, v in points if t < mid]
    second = [v for t, v in points if t >= mid]
    if not first or not second or t1 <= t0:
        return 0.0
    return (statistics.median(second) - statistics.median(first)) / ((t1 - t0) / 2)


# --------------------------------------------------------------------------- the scenario


def run_fleet(p: FleetParams, mq: Mosquitto, influx: InfluxDB1, work: Path) -> FleetResult:
    work.mkdir(parents=True, exist_ok=True)
    res = FleetResult(params=asdict(p), offered_points_s=p.offered_points_s)
    site_id = f"bench-{p.label}-{time.time_ns() % 10**9}"
    database = site_id.replace("-", "_")
    regs = registers_of(p.points)
    requests_per_poll = -(-regs // 125)
    with Children(work) as children:
        sim = children.start(
            "fleet_sim",
            python_argv(
                "bench.fleet_sim",
                "--devices",
                str(p.devices),
                "--points",
                str(p.points),
                "--per-endpoint",
                str(p.per_endpoint),
                "--change-s",
                str(p.interval_s),
                "--flip-every",
                str(p.flip_every_s),
                "--flip-hold",
                str(p.flip_hold_s),
                "--flip-start-after",
                str(p.warmup_s + 2.0),
                "--stats",
                str(work / "sim-stats.json"),
                "--max-run-s",
                str(p.warmup_s + p.duration_s + p.drain_timeout_s + 120),
            ),
            stdout_pipe=True,
        )
        ready = json.loads(sim.wait_line(lambda ln: '"ready"' in ln, 60.0))
        if p.background_nice:
            renice(sim.pid, p.background_nice)
            if influx.server.proc is not None:
                renice(influx.server.proc.pid, p.background_nice)
        site = write_site(work, p, ready["ports"], mq, influx, database, site_id)
        tele_log, alarm_log = work / "mqtt-telemetry.log", work / "mqtt-alarms.log"
        base = f"fsg/{site_id}"
        subs = [
            start_sub(children, "sub-telemetry", mq, f"{base}/+/telemetry", tele_log),
            start_sub(children, "sub-alarms", mq, f"{base}/alarms/#", alarm_log),
        ]
        wait_subscribed(mq, f"{base}/probe/telemetry", tele_log)
        wait_subscribed(mq, f"{base}/alarms/probe", alarm_log)
        gw = children.start(
            "gateway",
            python_argv(
                "gateway.cli",
                "run",
                str(site),
                "--duration",
                str(p.warmup_s + p.duration_s + p.drain_timeout_s + 60),
            ),
        )
        time.sleep(p.warmup_s)
        if gw.proc.poll() is not None:
            raise RuntimeError(f"gateway exited during warm-up: {gw.log_tail()}")
        if p.profile:
            children.start(
                "py-spy",
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(gw.pid),
                    "--duration",
                    str(int(p.duration_s)),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--rate",
                    "200",
                    "-o",
                    p.profile,
                ],
            )

        def others() -> tuple[float, float, float]:
            return (
                pid_cpu_s(mq.server.proc.pid if mq.server.proc else None),
                pid_cpu_s(influx.server.proc.pid if influx.server.proc else None),
                sum(s.cpu_s() for s in subs),
            )

        t0_ns = time.time_ns()
        cpu0, sim0, busy0, oth0 = gw.cpu_s(), sim.cpu_s(), machine_busy(), others()
        with BacklogSampler(work / "outbox.sqlite") as sampler:
            time.sleep(p.duration_s)
        t1_ns = time.time_ns()
        cpu1, sim1, busy1, oth1 = gw.cpu_s(), sim.cpu_s(), machine_busy(), others()
        # Stop producing; the simulator writes what it served (the production count).
        sim.signal(signal.SIGUSR1)
        pause_ns = time.time_ns()
        window = (t1_ns - t0_ns) / 1e9
        res.gateway_cpu_s = cpu1 - cpu0
        res.gateway_cpu_pct = 100 * res.gateway_cpu_s / window
        res.sim_cpu_pct = 100 * (sim1 - sim0) / window
        res.mosquitto_cpu_pct, res.influxdb_cpu_pct, res.subscribers_cpu_pct = (
            round(100 * (b - a) / window, 1) for a, b in zip(oth0, oth1, strict=True)
        )
        res.machine_busy_pct = 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        # Answers already on the wire reach the gateway within its timeout.
        time.sleep(min(1.0, p.interval_s * 0.4) * 2 + 0.2)
        sim.stop(10.0)
        stats = json.loads((work / "sim-stats.json").read_text())
        res.produced_points = stats["requests"] // requests_per_poll * p.points
        mlog = MqttLog(tele_log)
        drain_start = time.monotonic()
        deadline = drain_start + p.drain_timeout_s
        while True:
            mlog.update()
            res.delivered_influx = influx_count(influx, database)
            res.delivered_mqtt = mlog.points
            done = min(res.delivered_influx, res.delivered_mqtt) >= res.produced_points
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        res.drain_s = round(max(0.0, (time.time_ns() - pause_ns) / 1e9), 2)
        if gw.proc.poll() is None:
            res.peak_rss_mb = round(gw.status_kb("VmHWM") / 1024, 1)
        else:
            res.notes.append(f"gateway exited early ({gw.proc.returncode}): {gw.log_tail(500)}")
        time.sleep(0.5)  # let a last health sample and PUBACKs settle
        gw.stop(30.0)
        rows, pts = outbox_left(work / "outbox.sqlite")
        res.outbox_rows_left_at_exit, res.outbox_points_left_at_exit = rows, pts
        mlog.update()
        time.sleep(0.3)
        for c in children.children:
            if c.name.startswith("sub-"):
                c.stop(5.0)
        mlog.update()
        alog = MqttLog(alarm_log)
        alog.update()
    # --------------------------------------------------------------- figures
    res.delivered_mqtt = mlog.points
    res.mqtt_duplicates = mlog.duplicates
    res.lost_points = max(0, res.produced_points - min(res.delivered_influx, res.delivered_mqtt))
    t0, t1 = t0_ns / 1e9, t1_ns / 1e9
    in_window = sum(n for (recv, n) in mlog.samples.values() if t0 <= recv < t1)
    res.delivered_points_s_mqtt = round(in_window / window, 1)
    res.delivered_points_s_influx = round(
        influx_count(influx, database, f"WHERE time >= {t0_ns} AND time < {t1_ns}") / window, 1
    )
    polled_in_window = sum(n for (dev, ts), (_r, n) in mlog.samples.items() if t0_ns <= ts < t1_ns)
    if polled_in_window:
        res.cpu_s_per_100k_points = round(res.gateway_cpu_s / polled_in_window * 1e5, 3)
    series = [(ts, b) for ts, b in sampler.series if t0 <= ts < t1]
    res.backlog_series = [(round(ts - t0, 2), b) for ts, b in series]
    backlog = [(ts, float(max(b.values(), default=0))) for ts, b in series]
    if backlog:
        res.backlog_max = int(max(b for _, b in backlog))
        res.backlog_mqtt_max = max(b.get("mqtt", 0) for _, b in series)
        res.backlog_influx_max = max(b.get("influx", 0) for _, b in series)
        res.backlog_end_of_load = int(backlog[-1][1])
        res.backlog_slope_per_s = round(trend(backlog), 2)
    in_load = [v for recv, v in mlog.health if t0 <= recv < t1]
    res.data_age_max_s = max((float(v.get("data_age_max_s", 0)) for v in in_load), default=0.0)
    res.loop_lag_max_ms = max((float(v.get("loop_lag_max_ms", 0)) for v in in_load), default=0.0)
    res.queue_depth_max = max((int(v.get("queue_depth", 0)) for v in in_load), default=0)
    res.timeouts = counter_delta(mlog.device_health, "timeouts", t0, t1)
    res.overruns = counter_delta(mlog.device_health, "overruns", t0, t1)
    samples_s = p.devices / p.interval_s
    # Sustained: the backlog does not trend up (median of the window's second
    # half against its first) by more than 2 % of the sample rate, readings are
    # handled within one poll interval, nothing is lost, and the backlog left
    # when the load stopped drains within a few seconds.
    res.sustained = (
        res.lost_points == 0
        and res.backlog_slope_per_s <= SUSTAINED_TREND * samples_s + 1
        and res.data_age_max_s < p.interval_s
        and res.drain_s < 5 + 2 * p.interval_s
    )
    _latency(res, p, alog, sim.snapshot(), t1_ns)
    return res


def _latency(
    res: FleetResult, p: FleetParams, alog: MqttLog, sim_lines: list[str], end_ns: int
) -> None:
    flips = []
    for line in sim_lines:
        if line.startswith('{"flip"'):
            f = json.loads(line)["flip"]
            # Only flips a poll could see before the load stopped.
            if f["t_ns"] + int(p.interval_s * 1e9) < end_ns:
                flips.append(f)
    res.alarms_expected = len(flips)
    if not flips:
        return
    first: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
    for recv, a in alog.alarms:
        if a.get("rule") != RULE or not a.get("active") or a.get("state") != "unacknowledged":
            continue
        key = (a["device"], a.get("point") or "")
        if key not in first:
            first[key] = (recv, a)
    lat: list[float] = []
    late_poll = 0
    for f in flips:
        key = (f"dev{f['device']:05d}", f["point"])
        hit = first.get(key)
        if hit is None:
            continue
        recv, a = hit
        lat.append((recv - int(a["ts_ns"]) / 1e9) * 1000)
        # The alarm's ts_ns is the completion of the first poll after the flip.
        if not 0 <= int(a["ts_ns"]) - f["t_ns"] <= (p.interval_s + 0.5) * 1e9:
            late_poll += 1
    res.alarms_seen = len(lat)
    if lat:
        res.alarm_latency_ms = {
            "p50": round(percentile(lat, 50), 1),
            "p90": round(percentile(lat, 90), 1),
            "p99": round(percentile(lat, 99), 1),
            "over_50ms": sum(1 for x in lat if x > 50),
            "max": round(max(lat), 1),
            "n": len(lat),
        }
    if late_poll:
        res.notes.append(f"{late_poll} alarms stamped later than the first poll after the flip")
