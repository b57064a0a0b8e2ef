"""The OPC UA source's settings (one source = one server endpoint = one session).

Security: policy ``None`` or ``Basic256Sha256`` with mode ``Sign`` or
``SignAndEncrypt``; a secure policy needs the client certificate and key
(PEM or DER) and, unless ``server_certificate`` pins the server's, takes the
one the endpoint offers. ``username``/``password`` select user-name identity
(anonymous otherwise). ``mode: subscription`` gets data changes pushed with
the server's source timestamps; ``mode: polling`` reads every point each
device interval for servers with broken or limited subscriptions.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from gateway.plugins.base import SourceConfig, Strict
from gateway.validators import is_local_host


class OpcUaSecurity(Strict):
    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: str | None = None
    private_key: str | None = None
    private_key_password: str | None = None
    # The server's certificate; unset: the one its endpoint offers (trust on first use).
    server_certificate: str | None = None
    # Must match the URI in the client certificate's subjectAltName.
    application_uri: str = "urn:facility-safety-gateway:opcua-client"

    @model_validator(mode="after")
    def _secure_needs_cert(self) -> OpcUaSecurity:
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError(f"policy {self.policy} needs certificate and private_key")
        return self


class OpcUaSourceConfig(SourceConfig):
    type: Literal["opcua"]
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
    endpoint: Annotated[str, Field(pattern=r"^opc\.tcp://[^\s/]+(/\S*)?$")]
    security: OpcUaSecurity = Field(default_factory=OpcUaSecurity)
    username: str | None = None
    password: str | None = None
    mode: Literal["subscription", "polling"] = "subscription"
    # How often the server sends the changes it sampled (subscription mode).
    publishing_interval_s: float = Field(default=0.5, ge=0.05, le=3600)
    # How often the server samples each variable for changes (0: as fast as it can).
    sampling_interval_s: float = Field(default=0.25, ge=0, le=3600)
    # Each request (connect steps, reads) must answer within this.
    timeout_s: float = Field(default=4.0, ge=0.1, le=120)
    # How often the session is probed for a dead-but-open connection.
    watchdog_s: float = Field(default=1.0, ge=0.1, le=60)
    session_timeout_s: float = Field(default=60.0, ge=1, le=86400)

    def secret_warnings(self) -> list[str]:
        if not self.password or self.security.policy != "None":
            return []
        host = urlsplit(self.endpoint).hostname
        if is_local_host(host):
            return []
        # Without a secure channel the password is encrypted only if the
        # server's user-token policy asks for it; many PLCs do not.
        return [
            f"sources[{self.id}]: the OPC UA password may be sent to {host} unencrypted"
            " (security.policy: Basic256Sha256)"
        ]

    @model_validator(mode="after")
    def _checks(self) -> OpcUaSourceConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self
