"""The ``gateway-sim`` command: serve a site's simulated devices until stopped.

    gateway-sim SITE.yaml [--scenario NAME] [--speed FACTOR]
                [--wire-time | --no-wire-time] [--duration SECONDS] [--seed N]
    gateway-sim --list-scenarios SITE.yaml

Prints one ``serving ...`` line per source, then ``ready`` (flushed), so a
test or ``make demo`` can wait for that line before starting the gateway.
Stops on SIGINT/SIGTERM or after ``--duration``, removing its pty symlinks.
Exit status: 0 after a clean stop, 2 for a bad site file or unknown scenario
(the problems are printed, never a traceback), 1 when a source cannot start
(port in use, path not writable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from firmware_sim.ptylink import PtyError
from firmware_sim.runner import Options, Simulator
from firmware_sim.scenarios import describe, resolve
from gateway.errors import ConfigError
from gateway.loader import load_site

log = logging.getLogger("firmware_sim")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gateway-sim",
        description="Simulate every device of a site: Modbus TCP, RTU on ptys, RFID readers.",
    )
    p.add_argument("site", help="site file (YAML), the same one the gateway runs")
    p.add_argument("--scenario", help="named scenario from the site's simulation.scenarios")
    p.add_argument(
        "--list-scenarios", action="store_true", help="list the site's scenarios and exit"
    )
    p.add_argument(
        "--speed", type=float, default=1.0, help="simulation time per real second (default 1)"
    )
    p.add_argument(
        "--wire-time",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="delay RTU answers by their time on the wire (default: site's simulation.wire_time)",
    )
    p.add_argument("--duration", type=float, help="stop after this many real seconds")
    p.add_argument("--seed", type=int, default=0, help="seed for random behaviours (default 0)")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    return p


async def _serve(sim: Simulator, duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for line in await sim.start():
            print(line)
        print("ready", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration)
    finally:
        await sim.aclose()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # pymodbus logs every exception response it serves; faults are on purpose here.
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    if args.speed <= 0:
        print("gateway-sim: --speed must be > 0", file=sys.stderr)
        return 2
    if args.duration is not None and args.duration <= 0:
        print("gateway-sim: --duration must be > 0", file=sys.stderr)
        return 2
    try:
        site = load_site(args.site)
        if args.list_scenarios:
            print("\n".join(describe(site)))
            return 0
        scenario = resolve(site, args.scenario)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    for warning in scenario.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if scenario.name:
        print(f"scenario {scenario.name}: {scenario.description}".rstrip(": "))
    sim = Simulator(site, scenario, Options(args.speed, args.wire_time, args.seed))
    try:
        asyncio.run(_serve(sim, args.duration))
    except (OSError, PtyError) as exc:
        print(f"gateway-sim: cannot serve {site.path}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
