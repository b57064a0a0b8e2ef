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
import socket
import sys
from pathlib import Path

import uvicorn

from gateway.console.auth import Auth, add_user
from gateway.console.mqtt_link import MqttLink, Signer
from gateway.console.patrol_board import PatrolBoard, SitePlan
from gateway.console.state import ConsoleState
from gateway.console.store import ROLES, ConsoleStore
from gateway.console.web import create_app
from gateway.console.web_support import Console
from gateway.errors import ConfigError, ConsoleError
from gateway.loader import load_site
from gateway.model import SystemClock
from gateway.patrol import resolve_patrol

log = logging.getLogger(__name__)

# Open HTTP connections (each page holds one event stream); past this, 503.
MAX_CONNECTIONS = 500


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


class _Server(uvicorn.Server):
    """uvicorn's server with an event for "listening" (it only has a flag)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.ready.set()


async def serve(args: argparse.Namespace) -> int:

    site = load_site(Path(args.site))
    cfg = site.config
    mqtt = cfg.sinks.mqtt
    if mqtt is None:
        raise ConfigError(f"{args.site}: no sinks.mqtt: the console reads the broker from it")
    if args.mqtt_user:
        password = os.environ.get("FSG_CONSOLE_MQTT_PASSWORD")
        mqtt = mqtt.model_copy(update={"username": args.mqtt_user, "password": password})
    if args.mqtt_port:
        mqtt = mqtt.model_copy(update={"port": args.mqtt_port})
    key = os.environ.get("FSG_CONSOLE_KEY")
    known = cfg.commands.users.get(args.as_user)
    if not key and known is not None:
        key = known.key.get_secret_value()
    if not key:
        log.warning(
            "console: no command key (FSG_CONSOLE_KEY); commands go unsigned and"
            " gateways that require signatures refuse them"
        )
    clock = SystemClock()
    areas = {cfg.site: {d.id: d.tags["area"] for d in cfg.devices if "area" in d.tags}}
    intervals = {cfg.site: {d.id: d.interval_s for d in cfg.devices}}
    state = ConsoleState(mqtt.prefix, clock, areas, intervals)
    patrol = resolve_patrol(cfg.patrol, site.path)
    if patrol is not None:  # its checkpoints show before their first tap
        plan = SitePlan(
            {c.id: c.place for c in patrol.checkpoints},
            {r.id: list(r.checkpoints) for r in patrol.routes},
        )
        state.patrol = PatrolBoard({cfg.site: plan})
    link = MqttLink(
        mqtt,
        state,
        Signer(args.as_user, key),
        "+" if args.all_sites else cfg.site,
        args.reply_timeout,
    )
    store = ConsoleStore(Path(args.db))
    if not store.users():
        log.warning("console: no users yet; add one: gateway console users add NAME --role admin")
    console = Console(
        state, store, Auth(store, clock), link, clock, args.secure_cookies, args.heartbeat
    )
    # Acknowledgement links: the key the gateways sign them with (alerting.link_key).
    if cfg.alerting is not None and cfg.alerting.link_key is not None:
        console.link_key = cfg.alerting.link_key.get_secret_value()
    console.link_without_login = cfg.console.link_ack_without_login
    host, port = args.listen
    server = _Server(
        uvicorn.Config(
            create_app(console),
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=2,
            limit_concurrency=MAX_CONNECTIONS,
            access_log=False,
        )
    )
    link_task = asyncio.create_task(link.run())
    try:
        serving = asyncio.create_task(server.serve())
        started = asyncio.create_task(server.ready.wait())
        await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
        if server.started:
            print(f"console ready on http://{host}:{port}/", flush=True)
        started.cancel()
        await serving
    finally:
        link_task.cancel()
        await asyncio.gather(link_task, return_exceptions=True)
        store.close()
    return 0 if server.started else 1


def cmd_console(args: argparse.Namespace) -> int:
    rest: list[str] = args.console_args
    if args.console_help:
        rest = ["--help"]
    if rest[:1] == ["users"]:
        return cmd_users(rest[1:])
    return asyncio.run(serve(_parser().parse_args(rest)))


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "console", help="the on-call web console (SITE.yaml, or: users add NAME)", add_help=False
    )
    p.add_argument("-h", "--help", action="store_true", dest="console_help")
    p.add_argument("console_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_console)
