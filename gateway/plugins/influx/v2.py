"""The influx sink's InfluxDB 2.x write path (``mode: v2``), through influxdb-client.

Imported only when a site configures ``mode: v2``: influxdb-client brings
aiohttp, reactivex and urllib3, about 24 MB of resident memory that a v1
site (plain HTTP through httpx, ``gateway.plugins.influx.sink``) never needs
(docs/bench.md). Errors are mapped as in the v1 path.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from gateway.errors import SinkError
from gateway.plugins.influx.config import InfluxSinkConfig
from gateway.plugins.influx.sink import _classify as classify
from gateway.redact import redact_text


class V2Writer:
    """One influxdb-client connection: ping on open, one write per batch."""

    def __init__(self, cfg: InfluxSinkConfig, where: str) -> None:
        self._cfg = cfg
        self._where = where
        self._client = InfluxDBClientAsync(
            url=cfg.url,
            token=cfg.token or "",
            org=cfg.org or "-",
            timeout=int(cfg.timeout_s * 1000),
            enable_gzip=cfg.gzip,
            verify_ssl=cfg.verify_ssl,
        )
        self._write = self._client.write_api()

    async def ping(self) -> None:
        """Raise SinkError unless the server answers its ping."""
        try:
            ok = await self._client.ping()
        except (aiohttp.ClientError, ApiException, OSError, TimeoutError) as exc:
            raise SinkError(f"influx {self._where}: unreachable: {redact_text(repr(exc))}") from exc
        if not ok:
            raise SinkError(f"influx {self._where}: unreachable (ping failed)")

    async def write(self, lines: list[str]) -> None:
        cfg = self._cfg
        # The library's stubs type the precision as the class; the value is its "ns" constant.
        precision: Any = WritePrecision.NS
        try:
            await self._write.write(
                bucket=cfg.bucket or "", org=cfg.org or "-", record=lines, write_precision=precision
            )
        except ApiException as exc:
            body: Any = exc.body
            text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
            raise classify(int(exc.status or 0), self._where, text or str(exc.reason)) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SinkError(f"influx {self._where}: write failed: {exc!r}") from exc

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]
