"""``gateway alarms list | ack | shelve | unshelve | reset``: the on-call engineer's command line.

``list`` reads the alarm state database read-only (WAL lets it read while the
gateway runs). The other commands are published, validated, to the running
gateway's MQTT command topic, and the gateway's reply (matched by request id)
is printed: the gateway stays the only writer of alarm state, and the command
leaves the same audit trail (who, when) as one from a phone. Each command
carries a fresh request id and issue time; with ``--user NAME`` it is signed
with FSG_COMMAND_KEY (or the site's key for NAME, on the gateway's machine),
which a site that does not allow unsigned commands requires.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.alerting.alarm import Alarm
from gateway.alerting.command_gate import sign_command
from gateway.alerting.commands import build_command
from gateway.alerting.engine import AlertEngine
from gateway.alerting.store import read_alarms
from gateway.config import Site
from gateway.errors import AlarmError, CommandError, SinkError
from gateway.loader import load_site
from gateway.model import AlarmState
from gateway.plugins.mqtt.commands import command_client, command_topic, reply_topic
from gateway.printable import printable_json


def state_db_path(site: Site) -> Path:
    cfg = site.config.alerting
    state = Path(cfg.state_db if cfg is not None else "gateway-alarms.sqlite")
    return state if state.is_absolute() else site.path.parent / state


def site_zone(site: Site) -> ZoneInfo:
    """The site's time zone; unset, the on-call roster's (the notifications use it), else UTC."""
    cfg = site.config
    if cfg.timezone is not None:
        return ZoneInfo(cfg.timezone)
    if cfg.alerting is not None:
        return ZoneInfo(cfg.alerting.roster.timezone)
    return ZoneInfo("UTC")


def _ts(ns: Any, zone: ZoneInfo) -> str:
    """``2026-01-01 08:00:05+08:00``: local time, with its offset so it cannot be misread."""
    if not isinstance(ns, int):
        return "-"
    local = datetime.fromtimestamp(ns / 1e9, zone)
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S}{offset[:3]}:{offset[3:]}"


def cmd_list(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    try:
        alarms = [Alarm.from_json_dict(doc) for doc in read_alarms(state_db_path(site))]
    except (KeyError, TypeError, ValueError) as exc:
        raise AlarmError(f"{state_db_path(site)}: an alarm record is damaged: {exc!r}") from exc
    # The same selection and fields as the gateway's own ``list`` command.
    shown = [
        AlertEngine.describe(a) for a in alarms if args.all or a.state is not AlarmState.NORMAL
    ]
    if args.json:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return 0
    if not shown:
        print("no active or unacknowledged alarms")
        return 0
    zone = site_zone(site)
    for a in shown:
        print(
            f"{a['alarm_id']:48} {a['state']:20} {a['severity']:8} "
            f"raised {_ts(a['raised_ns'], zone)}  {a['message']}"
        )
    return 0


async def send_command(site: Site, payload: dict[str, Any], wait_s: float) -> dict[str, Any]:
    """Publish one command to the gateway and wait for its reply."""
    mqtt = site.config.sinks.mqtt
    if mqtt is None or not mqtt.enabled:
        raise CommandError("the site has no MQTT sink: commands go through the MQTT broker")
    name = site.config.site
    cmd_t, reply_t = command_topic(mqtt.prefix, name), reply_topic(mqtt.prefix, name)
    try:
        async with command_client(mqtt, f"fsg-cli-{uuid.uuid4().hex[:8]}") as client:
            await client.subscribe(reply_t, qos=1)
            await client.publish(cmd_t, json.dumps(payload).encode(), qos=1)
            async with asyncio.timeout(wait_s):
                async for msg in client.messages():
                    try:
                        reply = json.loads(msg.payload)
                    except ValueError:
                        continue
                    if isinstance(reply, dict) and reply.get("request_id") == payload["request_id"]:
                        return reply
    except TimeoutError:
        raise CommandError(
            f"no reply from the gateway within {wait_s:g} s (is it running?)"
        ) from None
    except SinkError as exc:
        raise CommandError(f"cannot reach the MQTT broker {mqtt.host}:{mqtt.port}: {exc}") from exc
    raise CommandError("the broker closed the connection before the gateway replied")


def _key_of(site: Site, user: str) -> str:
    """The user's key: FSG_COMMAND_KEY, else the site's (on the gateway's own machine)."""
    key = os.environ.get("FSG_COMMAND_KEY")
    if key:
        return key
    known = site.config.commands.users.get(user)
    if known is None:
        raise CommandError(
            f"no key for user {user!r}: set FSG_COMMAND_KEY (the site file has no such user)"
        )
    return known.key.get_secret_value()


def cmd_operate(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    payload = build_command(
        args.alarm_command,
        args.alarm_id,
        duration=getattr(args, "duration", None),
        reason=getattr(args, "reason", None),
        by=args.by,
        comment=args.comment,
        request_id=uuid.uuid4().hex,
        issued_at=round(time.time(), 3),
    )
    user = args.user or os.environ.get("FSG_COMMAND_USER")
    if user:
        payload = sign_command(payload, user, _key_of(site, user), site.config.site)
    elif not site.config.commands.allow_unsigned:
        raise CommandError(
            "this site accepts signed commands only: give --user NAME (or FSG_COMMAND_USER)"
            " and your key in FSG_COMMAND_KEY"
        )
    reply = asyncio.run(send_command(site, payload, args.timeout))
    print(printable_json(reply))
    if not reply.get("ok", False):
        raise AlarmError(
            str(reply.get("message") or reply.get("error") or "refused by the gateway")
        )
    return 0


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("alarms", help="list, acknowledge, shelve or reset alarms")
    asub = p.add_subparsers(dest="alarm_command", required=True)
    q = asub.add_parser("list", help="active and unacknowledged alarms")
    q.add_argument("--site", required=True)
    q.add_argument("--all", action="store_true", help="include alarms back to normal")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)
    for name, helptext in (
        ("ack", "acknowledge an alarm"),
        ("shelve", "shelve an alarm for a while"),
        ("unshelve", "end a shelve early"),
        ("reset", "reset a latched alarm whose condition is gone"),
        ("out_of_service", "take an alarm out of service for a while"),
        ("in_service", "return an alarm to service early"),
    ):
        q = asub.add_parser(name, help=helptext)
        q.add_argument("alarm_id")
        q.add_argument("--site", required=True)
        q.add_argument("--by", default=None, help="who does it (unsigned sites only)")
        q.add_argument("--user", default=None, help="sign as this user (key: FSG_COMMAND_KEY)")
        q.add_argument("--comment", default=None)
        q.add_argument("--timeout", type=float, default=10.0)
        if name in ("shelve", "out_of_service"):
            q.add_argument("--for", dest="duration", required=True, help="e.g. 30m, 2h")
            q.add_argument("--reason", required=True, help="why (recorded with the alarm)")
        q.set_defaults(func=cmd_operate)
