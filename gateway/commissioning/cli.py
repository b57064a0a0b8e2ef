"""``gateway probe`` and ``gateway scan``: argument parsing and the commands' exit codes.

Exit codes: 0 when something answered, 1 when nothing did, 2 for bad input
(an unknown device or profile, a port that does not exist, a bad option),
reported on one line by ``gateway.cli.main``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gateway.commissioning import link as links
from gateway.commissioning.probe import (
    WATCH_MAX_S,
    WATCH_MIN_S,
    ProbeOptions,
    ProbeTarget,
    run_probe,
)
from gateway.commissioning.scan import (
    Progress,
    announce,
    parse_units,
    render_text,
    run_scan,
    to_json,
)
from gateway.errors import CommandError, ConfigError
from gateway.loader import load_site
from gateway.plugins.modbus.config import ModbusRtuSource, ModbusTcpSource
from gateway.profiles.registry import ProfileRegistry
from gateway.profiles.schema import ModbusProfile

# The profile schema's bound on max_gap (a merged read stays within 125 registers).
MAX_GAP = 124


def _modbus_profile(profile: Any, name: str) -> ModbusProfile:
    if not isinstance(profile, ModbusProfile):
        raise CommandError(f"profile {name!r} is a {profile.protocol} profile; probe reads Modbus")
    return profile


def _site_target(args: argparse.Namespace) -> ProbeTarget:
    if args.tcp or args.serial or args.profile:
        raise CommandError("give a site and a device, or --tcp/--serial with --profile, not both")
    site = load_site(Path(args.site))
    dev = next((d for d in site.config.devices if d.id == args.device), None)
    if dev is None:
        known = ", ".join(d.id for d in site.config.devices)
        raise CommandError(f"{site.path}: no device {args.device!r} (devices: {known})")
    src = next(s for s in site.config.sources if s.id == dev.source)
    if not isinstance(src, ModbusTcpSource | ModbusRtuSource):
        raise CommandError(f"device {dev.id!r} is on a {src.type} source; probe reads Modbus")
    timeout = links.parse_timeout(args.timeout)
    link = src.model_copy(update={"timeout_s": timeout}) if timeout else src
    profile = _modbus_profile(site.profiles.get(dev.profile), dev.profile)
    max_gap = dev.max_gap if args.max_gap is None else args.max_gap
    return ProbeTarget(dev.id, link, dev.unit, profile, max_gap)


def _adhoc_target(args: argparse.Namespace) -> ProbeTarget:
    if not args.profile:
        raise CommandError("--profile NAME is needed with --tcp/--serial")
    unit = args.unit
    if not 0 <= unit <= 247:
        raise CommandError(f"--unit {unit}: unit ids are 0..247")
    timeout = links.parse_timeout(args.timeout)
    link: links.LinkConfig
    if args.tcp:
        host, port = links.parse_hostport(args.tcp)
        link = links.tcp_config(host, port, timeout, "probe")
    else:
        bauds, parities = links.parse_bauds(args.baud), links.parse_parities(args.parity)
        if len(bauds) > 1 or len(parities) > 1:
            raise CommandError("probe reads with one baud rate and parity (scan tries several)")
        baud, parity = bauds[0], parities[0]
        link = links.rtu_config(args.serial, baud, parity, int(args.stopbits), timeout, "probe")
    registry, problems = ProfileRegistry.load(Path(d) for d in args.profile_dir or [])
    if problems:
        raise ConfigError(problems[0], problems)
    profile = _modbus_profile(registry.get(args.profile), args.profile)
    return ProbeTarget(f"unit-{unit}", link, unit, profile, args.max_gap)


def cmd_probe(args: argparse.Namespace) -> int:
    if args.max_gap is not None and not 0 <= args.max_gap <= MAX_GAP:
        raise CommandError(f"--max-gap {args.max_gap}: 0..{MAX_GAP} registers")
    if args.site and not args.device:
        raise CommandError("probe SITE.yaml DEVICE: name the device to read")
    if args.site:
        target = _site_target(args)
    elif args.tcp or args.serial:
        target = _adhoc_target(args)
    else:
        raise CommandError("probe needs SITE.yaml DEVICE, or --tcp HOST:PORT / --serial PORT")
    if args.watch is not None and not WATCH_MIN_S <= args.watch <= WATCH_MAX_S:
        raise CommandError(f"--watch {args.watch:g}: between {WATCH_MIN_S:g} and {WATCH_MAX_S:g} s")
    if args.count is not None and args.count < 1:
        raise CommandError(f"--count {args.count}: at least 1")
    opts = ProbeOptions(args.orders, args.json, args.watch, args.count)
    links.check_port(target.link)
    try:
        return asyncio.run(run_probe(target, opts, sys.stdout))
    except KeyboardInterrupt:
        if args.watch is None:
            raise
        print(file=sys.stderr)
        return 0  # Ctrl-C is how a watch ends


def cmd_scan(args: argparse.Namespace) -> int:
    units = parse_units(args.units)
    if not 0 <= args.address <= 65535:
        raise CommandError(f"--address {args.address}: 0..65535")
    timeout = links.parse_timeout(args.timeout)
    settings: list[links.LinkConfig]
    if args.tcp:
        host, port = links.parse_hostport(args.tcp)
        settings = [links.tcp_config(host, port, timeout, "scan")]
    elif args.serial:
        stop = int(args.stopbits)
        settings = [
            links.rtu_config(args.serial, baud, parity, stop, timeout, "scan")
            for baud in links.parse_bauds(args.baud)
            for parity in links.parse_parities(args.parity)
        ]
    else:
        raise CommandError("scan needs --serial PORT or --tcp HOST:PORT")
    links.check_port(settings[0])
    if not args.quiet:
        print(announce(settings, units), file=sys.stderr, flush=True)
    progress = Progress(len(units) * len(settings), sys.stderr, quiet=args.quiet)
    try:
        report = asyncio.run(run_scan(settings, units, address=args.address, progress=progress))
    except KeyboardInterrupt:
        progress.finish()  # leave the terminal on a clean line; main() exits 130
        raise
    if args.json:
        print(json.dumps(to_json(report)))
    else:
        print("\n".join(render_text(report)))
    return 0 if report.found else 1


def register_cli(sub: Any) -> None:
    """Add ``probe`` and ``scan`` to the ``gateway`` command's subparsers."""
    p = sub.add_parser(
        "probe",
        help="read one device once with its profile: values, raw registers, requests",
        description="Read one device once (or --watch) and show every point and request.",
    )
    p.add_argument("site", nargs="?", help="a site file (with DEVICE)")
    p.add_argument("device", nargs="?", help="a device id of the site")
    links.add_link_args(p, lists=False)
    p.add_argument("--unit", type=int, default=1, help="unit id (ad hoc; default 1)")
    p.add_argument("--profile", help="profile name (ad hoc)")
    p.add_argument("--profile-dir", action="append", help="an extra profile folder")
    p.add_argument(
        "--max-gap", type=int, default=None, help="override the profile's (and site's) max_gap"
    )
    p.add_argument(
        "--watch",
        type=float,
        nargs="?",
        const=1.0,
        metavar="SECONDS",
        help="read again every SECONDS (default 1), refreshing in place; Ctrl-C ends",
    )
    p.add_argument("--count", type=int, help="with --watch: stop after this many reads")
    p.add_argument("--orders", action="store_true", help="every value in all four word orders")
    p.add_argument("--json", action="store_true", help="machine-readable output (a line per read)")
    p.set_defaults(func=cmd_probe)

    s = sub.add_parser(
        "scan",
        help="find the units answering on an RS-485 line or behind a Modbus TCP gateway",
        description="Ask each unit id FC3/FC4/FC1/FC2 at a low address; list who answers.",
    )
    links.add_link_args(s, lists=True)
    s.add_argument("--units", default="1-247", help="unit ids, e.g. 1-20,31 (default 1-247)")
    s.add_argument("--address", type=int, default=0, help="the address asked (default 0)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--quiet", action="store_true", help="no progress on stderr")
    s.set_defaults(func=cmd_scan)
