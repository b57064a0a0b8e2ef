"""``make bench``: every benchmark, one table, ``bench/results.json`` and ``bench/RESULTS.md``.

    python -m bench.run                      # the full set (about 8 minutes)
    python -m bench.run --devices 200 --duration 20 --no-scaling --no-serial
    python -m bench.run --quick --json /tmp/r.json --no-md     # the smoke test's size

Scenarios (docs/bench.md explains each figure and what bounds it):

1. fleet: ``--devices`` x ``--points`` at ``--interval`` with the limit rule
   and both sinks, an alarm flip every 0.25 s (alarm latency, scenario 2);
3. serial: one 9600 baud RS-485 line, 8 units, planner vs one request per point;
4. scaling: the fleet at 1x, 4x and 16x ``--scale-base`` devices, then up to
   two more runs between the largest load sustained and the smallest not
   sustained, which gives the highest sustained load.

Real Mosquitto and InfluxDB 1.x are started once on free loopback ports and
stopped at the end; everything runs in a temporary folder, removed unless
``--keep``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.fleet import FleetParams, FleetResult, run_fleet
from bench.procs import machine_facts
from bench.serial_bus import SerialParams, SerialResult, run_serial
from tests.fixtures.servers import start_influxdb1, start_mosquitto

HERE = Path(__file__).resolve().parent
TARGETS = {
    "points_s_one_core": 50_000,
    "peak_rss_mb": 150,
    "alarm_p99_ms": 50,
    "serial_pct_of_line": 90,
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bench.run", description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--points", type=int, default=40)
    ap.add_argument(
        "--target-devices",
        type=int,
        default=1250,
        help="a second run with alarm flips at the target load (1250 x 40 = 50,000 points/s);"
        " 0: skip it",
    )
    ap.add_argument("--interval", type=float, default=1.0, help="poll interval, seconds")
    ap.add_argument("--duration", type=float, default=30.0, help="measuring window per run")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--per-endpoint", type=int, default=10, help="devices behind one TCP port")
    ap.add_argument("--scale-base", type=int, default=100, help="devices at 1x for scaling")
    ap.add_argument("--no-scaling", action="store_true")
    ap.add_argument("--no-ramp", action="store_true", help="skip the extra sustained-load runs")
    ap.add_argument("--no-serial", action="store_true")
    ap.add_argument("--serial-duration", type=float, default=30.0)
    ap.add_argument(
        "--quick", action="store_true", help="5 devices x 4 points, 5 s, 1 scaling step"
    )
    ap.add_argument("--json", default=str(HERE / "results.json"))
    ap.add_argument("--md", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--no-md", action="store_true")
    ap.add_argument("--profile", action="store_true", help="py-spy the gateway in the fleet run")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument(
        "--background-nice",
        type=int,
        default=10,
        help="niceness of the simulator and InfluxDB, the stand-ins for what is not on the"
        " edge box (default 10; 0: same priority as the gateway)",
    )
    return ap


def _fleet_params(args: argparse.Namespace, devices: int, label: str, **kw: Any) -> FleetParams:
    return FleetParams(
        devices=devices,
        points=args.points,
        interval_s=args.interval,
        duration_s=args.duration,
        warmup_s=args.warmup,
        per_endpoint=args.per_endpoint,
        label=label,
        background_nice=args.background_nice,
        **kw,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.devices, args.points, args.duration, args.warmup = 5, 4, 5.0, 2.0
        args.scale_base, args.serial_duration, args.no_ramp = 2, 5.0, True
        args.target_devices = 0
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="fsg-bench-"))
    facts = machine_facts()
    out: dict[str, Any] = {"machine": facts, "targets": TARGETS, "args": vars(args)}
    fleet_runs: list[FleetResult] = []
    serial: SerialResult | None = None
    mq = start_mosquitto(work / "mosquitto")
    influx = None
    try:
        influx = start_influxdb1(work / "influxdb")

        def with_alarms(devices: int, label: str, **kw: Any) -> FleetResult:
            # ~4 alarms a second: enough for a p99 over a 30 s window (120 alarms).
            params = _fleet_params(
                args,
                devices,
                label,
                flip_every_s=0.25,
                flip_hold_s=max(1.5, args.interval * 1.5),
                **kw,
            )
            return run_fleet(params, mq, influx, work / label)

        main_run = with_alarms(
            args.devices,
            "fleet",
            profile=str(work / "gateway-profile.txt") if args.profile else "",
        )
        fleet_runs.append(main_run)
        _progress(main_run)
        if args.target_devices and args.target_devices != args.devices:
            target_run = with_alarms(args.target_devices, "target")
            fleet_runs.append(target_run)
            _progress(target_run)
        scaling: list[FleetResult] = []
        if not args.no_scaling:
            factors = (1, 4) if args.quick else (1, 4, 16)
            for f in factors:
                r = run_fleet(
                    _fleet_params(args, args.scale_base * f, f"x{f}"), mq, influx, work / f"x{f}"
                )
                scaling.append(r)
                _progress(r)
            if not args.no_ramp:
                scaling += _ramp(args, [*scaling, main_run], mq, influx, work)
        fleet_runs += scaling
        if not args.no_serial:
            serial = run_serial(SerialParams(duration_s=args.serial_duration), work / "serial")
    finally:
        mq.stop()
        if influx is not None:
            influx.stop()
    out["fleet"] = asdict(fleet_runs[0])
    out["scaling"] = [asdict(r) for r in fleet_runs[1:]]
    out["serial"] = asdict(serial) if serial is not None else None
    out["summary"] = summary(fleet_runs, serial)
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    table = render(out)
    print(table)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    if not args.no_md:
        Path(args.md).write_text(markdown(out, table))
    if args.profile:
        shutil.copy(work / "gateway-profile.txt", HERE / "gateway-profile.txt")
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _progress(r: FleetResult) -> None:
    print(
        f"  {r.params['label']}: {r.params['devices']}x{r.params['points']}"
        f" offered {r.offered_points_s:,.0f} pts/s, mqtt {r.delivered_points_s_mqtt:,.0f},"
        f" influx {r.delivered_points_s_influx:,.0f}, cpu {r.gateway_cpu_pct:.0f} %,"
        f" sustained {r.sustained}",
        file=sys.stderr,
        flush=True,
    )


def _ramp(
    args: argparse.Namespace,
    done: list[FleetResult],
    mq: Any,
    influx: Any,
    work: Path,
) -> list[FleetResult]:
    """Up to two runs between the largest sustained and the smallest unsustained device count."""
    extra: list[FleetResult] = []
    for step in range(2):
        runs = done + extra
        ok = [r.params["devices"] for r in runs if r.sustained]
        if not ok:
            break
        lo = max(ok)
        above = [r.params["devices"] for r in runs if not r.sustained and r.params["devices"] > lo]
        if not above:
            break
        hi = min(above)
        if hi - lo < max(50, lo // 10):
            break
        mid = (lo + hi) // 2 // args.per_endpoint * args.per_endpoint
        r = run_fleet(_fleet_params(args, mid, f"ramp{step + 1}"), mq, influx, work / f"ramp{step}")
        extra.append(r)
        _progress(r)
    return extra


def summary(runs: list[FleetResult], serial: SerialResult | None) -> dict[str, Any]:
    main_run = runs[0]
    sustained = [r for r in runs if r.sustained]
    best = max(sustained, key=lambda r: r.offered_points_s, default=None)
    s: dict[str, Any] = {
        "points_s_delivered": min(
            main_run.delivered_points_s_mqtt, main_run.delivered_points_s_influx
        ),
        "max_sustained_points_s": best.offered_points_s if best else 0.0,
        "max_sustained_devices": best.params["devices"] if best else 0,
        "max_sustained_gateway_cpu_pct": round(best.gateway_cpu_pct, 1) if best else 0.0,
        "cpu_s_per_100k_points": main_run.cpu_s_per_100k_points,
        "peak_rss_mb": max(r.peak_rss_mb for r in runs),
        "peak_rss_mb_main": main_run.peak_rss_mb,
        "backlog_end_of_load": main_run.backlog_end_of_load,
        "points_lost": sum(r.lost_points for r in runs),
        "alarm_latency_ms": main_run.alarm_latency_ms,
        "alarms": f"{main_run.alarms_seen}/{main_run.alarms_expected}",
    }
    target = next((r for r in runs if r.params["label"] == "target"), None)
    if target is not None:
        s["target_points_s_delivered"] = min(
            target.delivered_points_s_mqtt, target.delivered_points_s_influx
        )
        s["target_sustained"] = target.sustained
        s["target_gateway_cpu_pct"] = round(target.gateway_cpu_pct, 1)
        s["target_cpu_s_per_100k_points"] = target.cpu_s_per_100k_points
        s["target_peak_rss_mb"] = target.peak_rss_mb
        s["target_alarm_latency_ms"] = target.alarm_latency_ms
        s["target_loop_lag_max_ms"] = target.loop_lag_max_ms
    if serial is not None and serial.runs:
        planned = next(r for r in serial.runs if r.merge)
        s["serial_pct_of_line_planner"] = planned.pct_of_line_limit
        per_point = [r for r in serial.runs if not r.merge]
        if per_point:
            s["serial_pct_of_line_per_point"] = per_point[0].pct_of_line_limit
    return s


def _fmt(v: float, nd: int = 0) -> str:
    return f"{v:,.{nd}f}"


def render(out: dict[str, Any]) -> str:
    m = out["machine"]
    lines = [
        f"machine: {m['cpu_model']}, {m['cores']} cores, {m['mem_gb']} GB,"
        f" Python {m['python']}, load at start {m['loadavg_at_start']}"
        " (shared with other jobs: figures are lower bounds)",
        "",
        "fleet runs (gateway in its own process; simulator, Mosquitto, InfluxDB and the"
        " subscribers share the same cores)",
    ]
    head = (
        f"{'run':8} {'devices':>7} {'offered/s':>10} {'mqtt/s':>10} {'influx/s':>10}"
        f" {'gw cpu%':>7} {'cpu s/100k':>10} {'rss MB':>7} {'backlog':>8} {'drain s':>7}"
        f" {'lost':>5} {'lag ms':>6} {'busy%':>6} {'sim%':>5} {'ok':>3}"
    )
    lines += [head, "-" * len(head)]
    for r in [out["fleet"], *out["scaling"]]:
        lines.append(
            f"{r['params']['label']:8} {r['params']['devices']:>7}"
            f" {_fmt(r['offered_points_s']):>10} {_fmt(r['delivered_points_s_mqtt']):>10}"
            f" {_fmt(r['delivered_points_s_influx']):>10} {_fmt(r['gateway_cpu_pct']):>7}"
            f" {_fmt(r['cpu_s_per_100k_points'], 2):>10} {_fmt(r['peak_rss_mb'], 1):>7}"
            f" {r['backlog_max']:>8} {_fmt(r['drain_s'], 1):>7} {r['lost_points']:>5}"
            f" {_fmt(r.get('loop_lag_max_ms', 0)):>6}"
            f" {_fmt(r['machine_busy_pct']):>6} {_fmt(r['sim_cpu_pct']):>5}"
            f" {'yes' if r['sustained'] else 'no':>3}"
        )
    lines.append("")
    flipped = [out["fleet"], *(r for r in out["scaling"] if r["params"]["label"] == "target")]
    for f in flipped:
        lat = f["alarm_latency_ms"] or {}
        lines += [
            f"{f['params']['label']} run, the other processes (% of one core):"
            f" simulator {_fmt(f['sim_cpu_pct'])},"
            f" Mosquitto {_fmt(f.get('mosquitto_cpu_pct', 0))},"
            f" InfluxDB {_fmt(f.get('influxdb_cpu_pct', 0))},"
            f" mosquitto_sub x2 {_fmt(f.get('subscribers_cpu_pct', 0))}",
            f"alarm latency at {_fmt(f['offered_points_s'])} points/s"
            f" (poll completion -> retained alarm state received from Mosquitto):"
            f" p50 {lat.get('p50', 'n/a')} ms, p99 {lat.get('p99', 'n/a')} ms,"
            f" max {lat.get('max', 'n/a')} ms over {f['alarms_seen']}/{f['alarms_expected']}"
            " alarms",
        ]
    if out.get("serial"):
        s = out["serial"]
        lines += [
            "",
            f"serial bus: {s['params']['units']} units x {s['params']['points']} points,"
            f" {s['params']['baud']} baud 8N1, wire-time emulation;"
            f" line limit {s['line_limit_regs_s']} registers/s (125-register reads)",
        ]
        for r in s["runs"]:
            what = "planner" if r["merge"] else "one request per point"
            lines.append(
                f"  {what:22} {r['requests_per_poll']:>3} req/poll"
                f"  {r['registers_s']:>6} useful regs/s = {r['pct_of_line_limit']:>5} % of line,"
                f" {r['pct_of_plan_limit']:>5} % of its plan's wire time"
            )
    sm = out["summary"]
    lines += [
        "",
        f"summary: {_fmt(sm['points_s_delivered'])} points/s delivered to both sinks;"
        f" highest sustained {_fmt(sm['max_sustained_points_s'])} points/s"
        f" ({sm['max_sustained_devices']} devices, gateway at"
        f" {sm['max_sustained_gateway_cpu_pct']} % of one core);"
        f" {sm['cpu_s_per_100k_points']} CPU s per 100k points;"
        f" peak RSS {sm['peak_rss_mb']} MB; points lost {sm['points_lost']}",
    ]
    return "\n".join(lines)


def markdown(out: dict[str, Any], table: str) -> str:
    m = out["machine"]
    return (
        "# Benchmark results\n\n"
        "Written by `make bench` (`python -m bench.run`); see docs/bench.md for what\n"
        "each figure means, what bounds it and how to reproduce it.\n\n"
        f"- CPU: {m['cpu_model']}, {m['cores']} cores (shared with other jobs while measured)\n"
        f"- memory: {m['mem_gb']} GB; kernel {m['kernel']}; Python {m['python']}\n"
        f"- load average at start: {m['loadavg_at_start']}; run took {out['elapsed_s']} s\n\n"
        "```\n" + table + "\n```\n\n"
        "Summary (JSON):\n\n```json\n" + json.dumps(out["summary"], indent=2) + "\n```\n"
    )


if __name__ == "__main__":
    sys.exit(main())
