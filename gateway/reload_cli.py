"""``gateway reload SITE.yaml``: check a changed config, then have the running gateway apply it.

The command loads the site with the same loader as ``gateway run`` and stops
with the problems (file:line) if it does not load: nothing is signalled. If
it loads, it sends SIGHUP to the gateway whose pid file (``gateway.pid``)
is in the site's state directory (beside the outbox), as ``systemctl reload``
does, and waits for the gateway's verdict in ``reload-status.json``: the
applied config's hash and what changed, or why it was rejected.

A signal, not a request to the local HTTP endpoint: only root or the
gateway's own user may signal it, while ``local_http`` has no login and may
be opened beyond loopback for a scraper.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from gateway.errors import CommandError
from gateway.loader import load_site
from gateway.reloader import PID_FILE, STATUS_FILE

EXIT_APPLIED, EXIT_TIMEOUT, EXIT_REJECTED = 0, 1, 2
POLL_S = 0.1


def _status(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _gateway_pid(state_dir: Path, given: int | None) -> int:
    if given is not None:
        pid = given
    else:
        try:
            pid = int((state_dir / PID_FILE).read_text().strip())
        except (OSError, ValueError) as exc:
            raise CommandError(
                f"no running gateway found: {state_dir / PID_FILE}: {exc}"
                " (is it running? give --pid or --state-dir)"
            ) from None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        raise CommandError(f"no process {pid}: the gateway is not running") from None
    # A stale pid file may name some other process by now: never signal that one.
    if b"gateway" not in cmdline or b" run " not in cmdline + b" ":
        raise CommandError(f"process {pid} is not a running gateway: {cmdline.decode()[:120]!r}")
    return pid


def cmd_reload(args: argparse.Namespace) -> int:
    site = load_site(Path(args.site))
    print(f"{site.path}: valid; asking the running gateway to reload it")
    state_dir = Path(args.state_dir) if args.state_dir else Path(site.config.outbox.path).parent
    pid = _gateway_pid(state_dir, args.pid)
    before = _status(state_dir)
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise CommandError(f"cannot signal the gateway (pid {pid}): {exc}") from None
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        now = _status(state_dir)
        if now is not None and now != before and now.get("outcome") != "started":
            return _report(now)
        time.sleep(POLL_S)
    print(f"no verdict from the gateway (pid {pid}) within {args.timeout:g} s; see its log")
    return EXIT_TIMEOUT


def _report(status: dict[str, Any]) -> int:
    outcome = status.get("outcome")
    if outcome == "applied":
        change = status.get("change") or {}
        print(f"applied: config {str(status.get('hash'))[:12]}")
        for key, value in change.items():
            if value:
                shown = ", ".join(value) if isinstance(value, list) else "yes"
                print(f"  {key.replace('_', ' ')}: {shown}")
        return EXIT_APPLIED
    print(f"{outcome}: the running config ({str(status.get('hash'))[:12]}) stays in force")
    for line in status.get("problems") or []:
        print(f"error: {line}")
    return EXIT_REJECTED


def register_cli(sub: Any) -> None:
    p = sub.add_parser(
        "reload", help="check a changed site and have the running gateway apply it (SIGHUP)"
    )
    p.add_argument("site")
    p.add_argument("--pid", type=int, default=None, help="the gateway's pid (default: pid file)")
    p.add_argument(
        "--state-dir",
        default=None,
        help="where the gateway keeps its state (default: the outbox's folder)",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="wait this long for the verdict")
    p.set_defaults(func=cmd_reload)
