"""The ``gateway`` command: run, check, profiles (and later alarms, report, grafana).

Every expected failure (a bad site file, an unknown profile) prints clear
messages on stderr and exits 2; a traceback is a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import yaml

from gateway.config import Site
from gateway.errors import CommandError, ConfigError, GatewayError
from gateway.loader import load_site
from gateway.plugins import registry as plugin_registry
from gateway.profiles.registry import ProfileRegistry
from gateway.redact import (
    install_log_redaction,
    plaintext_secret_warnings,
    redact_text,
    redact_url,
)

EXIT_INVALID = 2


def _print_problems(exc: ConfigError) -> None:
    for line in exc.problems:
        print(f"error: {redact_text(line)}", file=sys.stderr)


def _load(path: str) -> Site:
    return load_site(Path(path))


def cmd_check(args: argparse.Namespace) -> int:
    site = _load(args.site)
    cfg = site.config
    print(f"{site.path}: site {cfg.site!r} is valid")
    for src in cfg.sources:
        devs = site.devices_of(src.id)
        print(f"  source {src.id} ({src.type}): {len(devs)} device(s)")
        plugin = plugin_registry().source(src.type)
        for d in devs:
            prof = site.device_profiles[d.id]
            extra = f", {text}" if (text := plugin.describe(d, prof)) else ""
            print(f"    {d.id}: {prof.name} unit {d.unit} every {d.interval_s:g} s{extra}")
    sinks = cfg.sinks
    if sinks.mqtt is not None and sinks.mqtt.enabled:
        print(f"  sink mqtt: {sinks.mqtt.host}:{sinks.mqtt.port}")
    if sinks.influx is not None and sinks.influx.enabled:
        print(f"  sink influx: {redact_url(sinks.influx.url)}")
    for name, scfg in sinks.plugins.items():
        if getattr(scfg, "enabled", True):
            print(f"  sink {name}")
    for warning in plaintext_secret_warnings(cfg):
        print(f"warning: {warning}", file=sys.stderr)
    if cfg.rules:
        from gateway.alerting.rules import load_rules
        from gateway.alerting.suppression import suppression_warnings

        # Valid but risky: reported, not refused (exit code stays 0).
        for line in suppression_warnings(load_rules([site.path.parent / r for r in cfg.rules])):
            print(f"warning: {line}", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.app import run_site

    site = _load(args.site)
    clock = None
    if args.sim_clock_start is not None:
        from datetime import datetime

        from gateway.model import ScaledClock

        try:
            start = datetime.fromisoformat(args.sim_clock_start)
        except ValueError as exc:
            raise CommandError(f"--sim-clock-start: {exc}") from None
        if start.tzinfo is None:
            raise CommandError(
                "--sim-clock-start needs a UTC offset, e.g. 2026-11-26T22:00:00+08:00"
            )
        clock = ScaledClock(int(start.timestamp() * 1e9), args.sim_clock_speed)
    return asyncio.run(run_site(site, args.duration, clock))


def _registry(args: argparse.Namespace) -> ProfileRegistry:
    dirs: list[Path] = [Path(d) for d in (args.profile_dir or [])]
    if getattr(args, "site", None):
        site = _load(args.site)
        return site.profiles
    registry, problems = ProfileRegistry.load(dirs)
    if problems:
        raise ConfigError(problems[0], problems)
    return registry


def cmd_profiles_list(args: argparse.Namespace) -> int:
    reg = _registry(args)
    for name in reg.names():
        p = reg.get(name)
        count = len(p.point_names())
        print(f"{name:28} {p.protocol:12} {p.kind:14} {count:3} points  {p.description}")
    return 0


def cmd_profiles_show(args: argparse.Namespace) -> int:
    reg = _registry(args)
    prof = reg.get(args.name)
    data = prof.model_dump(mode="json", exclude_defaults=True)
    print(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), end="")
    for line in plugin_registry().profile_kinds[prof.protocol].explanation(prof):
        print(f"# {line}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gateway", description="Facility safety gateway")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="validate a site file and every profile it uses")
    p.add_argument("site")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("run", help="run the gateway on a site")
    p.add_argument("site")
    p.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    p.add_argument(
        "--sim-clock-start",
        default=None,
        metavar="ISO",
        help="simulation only: the wall clock starts at this time (with UTC offset)",
    )
    p.add_argument(
        "--sim-clock-speed",
        type=float,
        default=1.0,
        metavar="X",
        help="simulation only: the wall clock runs X times faster (as gateway-sim --speed)",
    )
    p.set_defaults(func=cmd_run)

    prof = sub.add_parser("profiles", help="list, show or import device profiles")
    psub = prof.add_subparsers(dest="profiles_command", required=True)
    for name, func in (("list", cmd_profiles_list), ("show", cmd_profiles_show)):
        q = psub.add_parser(name)
        if name == "show":
            q.add_argument("name")
        q.add_argument("--site", help="include the site's extra profile folders")
        q.add_argument("--profile-dir", action="append", help="an extra profile folder")
        q.set_defaults(func=func)
    from gateway.profiles.importer import register_cli as register_profile_import

    register_profile_import(psub)

    from gateway.alarms_cli import register_cli as register_alarms
    from gateway.commissioning.cli import register_cli as register_commissioning
    from gateway.patrol_cli import register_cli as register_report
    from gateway.reload_cli import register_cli as register_reload
    from gateway.reports.cli import register_cli as register_daily_reports

    register_reload(sub)
    register_alarms(sub)
    register_report(sub)
    register_daily_reports(sub)
    register_commissioning(sub)
    try:
        from gateway.console.cli import register_cli as register_console
    except ImportError:  # the console's web packages not installed: the rest still works
        pass
    else:
        register_console(sub)
    try:
        from gateway.grafana import register_cli as register_grafana
    except ImportError:  # grafana-client not installed: the other commands still work
        pass
    else:
        register_grafana(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_log_redaction()
    # One line per request is noise at INFO; outages are logged by the sinks themselves.
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_INVALID
    except GatewayError as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `gateway check site.yaml | head`: the reader left; not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
