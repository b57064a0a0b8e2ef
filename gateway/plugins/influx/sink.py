"""The InfluxDB sink: line protocol over HTTP, one request per batch, gzip-compressed.

Two modes, same line protocol (``gateway.lineprotocol``):

- ``v2``: influxdb-client's async write API (``/api/v2/write``): InfluxDB 2.x
  and 3.x (url, token, org, bucket), InfluxDB 1.8+ (token ``user:password``,
  bucket ``db/rp``), and anything else that speaks it (VictoriaMetrics).
- ``v1``: ``POST /write?db=&rp=&precision=ns`` with httpx, for InfluxDB 1.x
  before 1.8; username/password as HTTP basic auth.

``send`` returns only on HTTP 204. 401/403 raise ``SinkAuthError``; 400 (the
server parsed the batch and refused it, e.g. a field type conflict) raises
``SinkRejected`` so the worker skips it instead of retrying forever; anything
else (unreachable, timeout, 5xx, 404 database not found) raises ``SinkError``
and the batch is retried. Writes are idempotent on (measurement, tags, ts),
so a retried batch rewrites the same points.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Sequence
from typing import TYPE_CHECKING, Self

import httpx

from gateway.errors import SinkAuthError, SinkError
from gateway.lineprotocol import item_line
from gateway.outbox import Record
from gateway.plugins.base import SinkContext
from gateway.plugins.influx.config import InfluxSinkConfig
from gateway.redact import redact_url
from gateway.sinks.base import Sink, SinkRejected

if TYPE_CHECKING:
    from gateway.plugins.influx.v2 import V2Writer

# Records encoded between two yields to the event loop.
_ENCODE_CHUNK = 200


def _classify(status: int, where: str, detail: str) -> SinkError:
    detail = detail.strip()[:300]
    if status in (401, 403):
        return SinkAuthError(f"influx {where}: credentials refused (HTTP {status}): {detail}")
    if status == 400:
        return SinkRejected(f"influx {where}: batch rejected (HTTP 400): {detail}")
    if status == 404:
        return SinkError(f"influx {where}: database/bucket not found (HTTP 404): {detail}")
    return SinkError(f"influx {where}: HTTP {status}: {detail}")


class InfluxSink:
    """Write outbox records to InfluxDB (see the module docstring)."""

    def __init__(self, config: InfluxSinkConfig, site: str, *, name: str = "influx") -> None:
        self.config = config
        self.site = site
        self.name = name
        self.batch_size = config.batch_size
        self.flush_interval_s = config.flush_interval_s
        self.retry_min_s = config.retry_min_s
        self.retry_max_s = config.retry_max_s
        self._where = redact_url(config.url)
        self._v2: V2Writer | None = None
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Self:
        cfg = self.config
        if cfg.mode == "v2":
            from gateway.plugins.influx.v2 import V2Writer

            self._v2 = V2Writer(cfg, self._where)
            try:
                await self._v2.ping()
            except SinkError:
                await self.aclose()
                raise
        else:
            auth = (cfg.username, cfg.password or "") if cfg.username else None
            self._http = httpx.AsyncClient(
                base_url=cfg.url, timeout=cfg.timeout_s, verify=cfg.verify_ssl, auth=auth
            )
            try:
                r = await self._http.get("/ping")
            except httpx.HTTPError as exc:
                await self.aclose()
                raise SinkError(f"influx {self._where}: unreachable: {exc!r}") from exc
            if r.status_code >= 300:
                await self.aclose()
                raise _classify(r.status_code, self._where, r.text)
            if cfg.create_database:
                await self._create_database(self._http)
        return self

    async def _create_database(self, http: httpx.AsyncClient) -> None:
        name = (self.config.database or "").replace("\\", "\\\\").replace('"', '\\"')
        try:
            r = await http.post("/query", data={"q": f'CREATE DATABASE "{name}"'})
        except httpx.HTTPError as exc:
            await self.aclose()
            raise SinkError(f"influx {self._where}: cannot create database: {exc!r}") from exc
        if r.status_code != 200 or '"error"' in r.text:
            await self.aclose()
            raise _classify(r.status_code if r.status_code != 200 else 500, self._where, r.text)

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        v2, self._v2 = self._v2, None
        http, self._http = self._http, None
        if v2 is not None:
            await v2.close()
        if http is not None:
            await http.aclose()

    async def send(self, records: Sequence[Record]) -> None:
        """Write the batch; return on HTTP 204."""
        lines: list[str] = []
        site = self.site
        for start in range(0, len(records), _ENCODE_CHUNK):
            if start:
                # A full batch takes ~100 ms to encode: let the pollers and the
                # MQTT worker run in between instead of stalling them all at once.
                await asyncio.sleep(0)
            for r in records[start : start + _ENCODE_CHUNK]:
                ln = item_line(r.item, site)
                if ln is not None:
                    lines.append(ln)
        if not lines:
            return
        if self._v2 is not None:
            await self._v2.write(lines)
        elif self._http is not None:
            await self._send_v1(self._http, lines)
        else:
            raise SinkError(f"influx {self._where}: not connected")

    async def _send_v1(self, http: httpx.AsyncClient, lines: list[str]) -> None:
        cfg = self.config
        body = ("\n".join(lines) + "\n").encode()
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if cfg.gzip:
            # Level 1: line protocol compresses ~10x even at the fastest level.
            # zlib releases the GIL, so a thread keeps the event loop responsive.
            body = await asyncio.to_thread(gzip.compress, body, 1)
            headers["Content-Encoding"] = "gzip"
        params = {"db": cfg.database or "", "precision": "ns"}
        if cfg.retention_policy:
            params["rp"] = cfg.retention_policy
        try:
            r = await http.post("/write", params=params, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise SinkError(f"influx {self._where}: write failed: {exc!r}") from exc
        if r.status_code != 204:
            raise _classify(r.status_code, self._where, r.text)


# --------------------------------------------------------------------------- plugin factory


def build(cfg: InfluxSinkConfig, ctx: SinkContext) -> Sink:
    return InfluxSink(cfg, ctx.site)
