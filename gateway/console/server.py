"""``gateway console SITE.yaml`` serving: the web app, its MQTT link and uvicorn.

Kept apart from ``gateway.console.cli`` so that building the ``gateway``
command line (every ``gateway run`` does) does not import the web stack
(fastapi, uvicorn, jinja2, argon2) nor compute the login's dummy password
hash (64 MiB of argon2 memory): the daemon's peak RSS (docs/bench.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from pathlib import Path

import uvicorn

from gateway.console.auth import Auth
from gateway.console.mqtt_link import MqttLink, Signer
from gateway.console.patrol_board import PatrolBoard, SitePlan
from gateway.console.state import ConsoleState
from gateway.console.store import ConsoleStore
from gateway.console.web import create_app
from gateway.console.web_support import Console
from gateway.errors import ConfigError
from gateway.loader import load_site
from gateway.model import SystemClock
from gateway.patrol import resolve_patrol

log = logging.getLogger(__name__)

# Open HTTP connections (each page holds one event stream); past this, 503.
MAX_CONNECTIONS = 500


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
