"""``local_http:`` in the site file: where the gateway's /healthz and /metrics listen.

A schema module of its own so that the site schema (gateway/config.py) does
not import the server (gateway/local_http.py).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class LocalHttpConfig(BaseModel):
    """``local_http:`` in the site file."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # Loopback by default: the metrics name devices and sinks, and nothing here asks who calls.
    listen: str = "127.0.0.1:9180"
    # Polling or committing stalled this long makes /healthz answer 503. Polling gets
    # at least three of its slowest device's intervals.
    stall_s: float = Field(default=60.0, ge=2, le=3600)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"listen must be HOST:PORT (e.g. 127.0.0.1:9180), got {v!r}")
        return v

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)
