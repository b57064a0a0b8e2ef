"""``gateway console SITE.yaml`` (serve) and ``gateway console users add NAME --role R``.

The site file gives the broker (its ``sinks.mqtt``: host, credentials, TLS,
prefix) and the site to watch; ``--all-sites`` watches every site under the
prefix instead. The console signs commands as ``--as`` (default ``console``)
with the key in ``FSG_CONSOLE_KEY`` (else the site file's
``commands.users.<name>.key``); each gateway lists that user with
``on_behalf: true``. Users live in ``--db`` (default ``console.sqlite``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from importlib.util import find_spec
from pathlib import Path

from gateway.console.store import ROLES, ConsoleStore
from gateway.errors import ConsoleError
from gateway.model import SystemClock

# The web stack is imported only by a console command (gateway.console.server),
# not by every `gateway` command line; without it installed, gateway.cli
# leaves `gateway console` out, as when importing it failed.
for _package in ("fastapi", "uvicorn", "jinja2", "argon2", "multipart"):
    if find_spec(_package) is None:
        raise ImportError(f"gateway console needs the package {_package!r}")

log = logging.getLogger(__name__)


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen {text!r}: use HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "127.0.0.1", int(port)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gateway console", description="the on-call web console")
    ap.add_argument("site", help="site file: the broker to read and the site to watch")
    ap.add_argument("--listen", type=_listen, default=("127.0.0.1", 8080), metavar="HOST:PORT")
    ap.add_argument("--db", default=os.environ.get("FSG_CONSOLE_DB", "console.sqlite"))
    ap.add_argument("--all-sites", action="store_true", help="watch every site under the prefix")
    ap.add_argument(
        "--as",
        dest="as_user",
        default=os.environ.get("FSG_CONSOLE_USER", "console"),
        help="the console's command user on the gateways",
    )
    # The console's own broker account (not the gateway's): on a broker with the deploy/
    # ACL it may read the site and publish only its command topic. Password from the
    # environment only (FSG_CONSOLE_MQTT_PASSWORD), never on a command line.
    ap.add_argument(
        "--mqtt-user",
        default=os.environ.get("FSG_CONSOLE_MQTT_USER"),
        help="broker user instead of the site file's (FSG_CONSOLE_MQTT_USER)",
    )
    ap.add_argument(
        "--mqtt-port",
        type=int,
        default=int(os.environ.get("FSG_CONSOLE_MQTT_PORT") or 0) or None,
        help="broker port instead of the site file's (FSG_CONSOLE_MQTT_PORT)",
    )
    ap.add_argument("--secure-cookies", action="store_true", help="behind HTTPS: Secure cookies")
    ap.add_argument("--reply-timeout", type=float, default=10.0, metavar="S")
    ap.add_argument(
        "--heartbeat",
        type=float,
        default=5.0,
        metavar="S",
        help="server-sent heartbeat; pages show 'connection lost' after 3 missed",
    )
    return ap


def _users_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gateway console users", description="console users")
    sub = ap.add_subparsers(dest="op", required=True)
    add = sub.add_parser("add", help="add a user (password from a prompt, or stdin)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--db", default=os.environ.get("FSG_CONSOLE_DB", "console.sqlite"))
    sub.add_parser("list").add_argument(
        "--db", default=os.environ.get("FSG_CONSOLE_DB", "console.sqlite")
    )
    return ap


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ConsoleError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_users(argv: list[str]) -> int:
    from gateway.console.auth import add_user

    args = _users_parser().parse_args(argv)
    store = ConsoleStore(Path(args.db))
    try:
        if args.op == "add":
            add_user(store, args.name, args.role, _password(), SystemClock())
            print(f"added {args.name} ({args.role}) to {args.db}")
        else:
            for u in store.users():
                print(f"{u.name:24} {u.role:11} {'disabled' if u.disabled else ''}")
    finally:
        store.close()
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    rest: list[str] = args.console_args
    if args.console_help:
        rest = ["--help"]
    if rest[:1] == ["users"]:
        return cmd_users(rest[1:])
    from gateway.console.server import serve

    return asyncio.run(serve(_parser().parse_args(rest)))


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "console", help="the on-call web console (SITE.yaml, or: users add NAME)", add_help=False
    )
    p.add_argument("-h", "--help", action="store_true", dest="console_help")
    p.add_argument("console_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_console)
