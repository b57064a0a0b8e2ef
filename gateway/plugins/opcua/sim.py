"""A simulated OPC UA PLC: an asyncua server serving OPC UA profiles, with value behaviours.

``OpcUaSimServer`` builds one variable per profile point at the point's
node (a NodeId, or a browse path whose folders it creates) and moves each
value by the point's ``sim`` behaviour (firmware_sim.behaviours), writing
the server's SourceTimestamp with it. ``set_status`` injects a status code
(e.g. BadSensorFailure) on a point, as a PLC flags a broken sensor.
With ``secure=True`` it offers Basic256Sha256 Sign and SignAndEncrypt
endpoints only, and with ``users`` it refuses anonymous sessions and wrong
passwords. ``make_certificates`` writes a server and a client key pair.

The server restarts on the same port (``stop`` then ``start``), which is how
the tests prove the gateway's reconnection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from asyncua import ua
from asyncua.common.node import Node
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from firmware_sim.behaviours import Behaviour, Constant, make_behaviour
from gateway.config import Site
from gateway.plugins.base import SimContext, SimPart
from gateway.plugins.opcua.config import OpcUaSourceConfig
from gateway.plugins.opcua.profile import OpcUaPoint, OpcUaProfile, browse_path

# The server logs every node of the standard address space at INFO.
logging.getLogger("asyncua.server").setLevel(logging.WARNING)

SIM_NAMESPACE = "urn:facility-safety-gateway:sim"
SERVER_URI = "urn:facility-safety-gateway:opcua-sim"
CLIENT_URI = "urn:facility-safety-gateway:opcua-client"
_VARIANT = {
    "float": ua.VariantType.Double,
    "int": ua.VariantType.Int64,
    "bool": ua.VariantType.Boolean,
    "string": ua.VariantType.String,
}


def make_certificates(folder: Path, client_uri: str = CLIENT_URI) -> dict[str, Path]:
    """Self-signed server and client key pairs (PEM) for the Basic256Sha256 endpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for role, uri, use in (
        ("server", SERVER_URI, ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", client_uri, ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = cert_gen.generate_private_key()
        cert = cert_gen.generate_self_signed_app_certificate(
            key,
            f"fsg {role}",
            {"organizationName": "facility-safety-gateway"},
            [
                x509.UniformResourceIdentifier(uri),
                x509.DNSName(socket.gethostname()),
                x509.DNSName("localhost"),
            ],
            [use],
        )
        out[f"{role}_key"] = folder / f"{role}-key.pem"
        out[f"{role}_cert"] = folder / f"{role}-cert.pem"
        out[f"{role}_key"].write_bytes(cert_gen.dump_private_key_as_pem(key))
        out[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


class _Users(UserManager):
    """Username/password check (asyncua's UserManager protocol); no anonymous sessions."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


@dataclass
class SimDevice:
    """One simulated device: a profile served under the server's Objects folder."""

    id: str
    profile: OpcUaProfile
    overrides: dict[str, Any] = field(default_factory=dict)


class OpcUaSimServer:
    """An asyncua server animating the points of its devices' profiles."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: list[SimDevice],
        *,
        secure: bool = False,
        certificates: dict[str, Path] | None = None,
        users: dict[str, str] | None = None,
        update_s: float = 0.1,
        seed: int = 1,
        path: str = "/fsg/sim",
    ) -> None:
        if secure and certificates is None:
            raise ValueError("a secure endpoint needs certificates (make_certificates)")
        self.endpoint = f"opc.tcp://{host}:{port}{path}"
        self.devices = devices
        self.secure = secure
        self.certificates = certificates
        self.users = users
        self.update_s = update_s
        self._seed = seed
        self._t0 = time.monotonic()
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._vars: dict[tuple[str, str], tuple[Node, OpcUaPoint, Behaviour]] = {}
        self._status: dict[tuple[str, str], int] = {}

    async def __aenter__(self) -> OpcUaSimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        server = Server(user_manager=_Users(self.users) if self.users else None)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("facility-safety-gateway OPC UA simulator")
        await server.set_application_uri(SERVER_URI)
        if self.secure:
            assert self.certificates is not None
            server.set_security_policy(
                [
                    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                    ua.SecurityPolicyType.Basic256Sha256_Sign,
                ]
            )
            await server.load_certificate(str(self.certificates["server_cert"]))
            await server.load_private_key(str(self.certificates["server_key"]))
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if self.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        await server.register_namespace(SIM_NAMESPACE)
        self._vars.clear()
        for dev in self.devices:
            rng = random.Random(f"{self._seed}:{dev.id}")
            for p in dev.profile.points:
                spec = dev.overrides.get(p.name, p.sim)
                beh = make_behaviour(spec, rng) if spec is not None else Constant(0.0)
                node = await self._add_variable(server, p)
                self._vars[(dev.id, p.name)] = (node, p, beh)
        await server.start()
        self._server = server
        await self._write_all()
        self._task = asyncio.create_task(self._animate(), name="opcua-sim")

    async def aclose(self) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def _add_variable(self, server: Server, p: OpcUaPoint) -> Node:
        steps = browse_path(p.node)
        vtype = _VARIANT[p.type]
        initial = ua.Variant(_typed(p, 0.0), vtype)
        if steps is None:
            nodeid = ua.NodeId.from_string(p.node)
            await _ensure_namespace(server, nodeid.NamespaceIndex)
            return await server.nodes.objects.add_variable(nodeid, p.name, initial)
        parent = server.nodes.objects
        for step in steps[:-1]:
            ns, name = step.split(":", 1)
            await _ensure_namespace(server, int(ns))
            try:
                parent = await parent.get_child([step])
            except ua.uaerrors.BadNoMatch:
                parent = await parent.add_object(int(ns), name)
        ns, name = steps[-1].split(":", 1)
        await _ensure_namespace(server, int(ns))
        return await parent.add_variable(int(ns), name, initial)

    def set_status(self, device: str, point: str, code: int | None) -> None:
        """Serve ``code`` (a StatusCodes value) for the point from now on; None: good again."""
        if code is None:
            self._status.pop((device, point), None)
        else:
            self._status[(device, point)] = code

    def value(self, device: str, point: str) -> Any:
        """What the point serves now (before status)."""
        _, p, beh = self._vars[(device, point)]
        return _typed(p, beh.value(time.monotonic() - self._t0))

    async def _write_all(self) -> None:
        assert self._server is not None
        t = time.monotonic() - self._t0
        now = ua.DateTime.now(UTC)
        for key, (node, p, beh) in self._vars.items():
            code = self._status.get(key, StatusCodes.Good)
            dv = ua.DataValue(
                Value=ua.Variant(_typed(p, beh.value(t)), _VARIANT[p.type]),
                StatusCode=ua.StatusCode(ua.UInt32(code)),
                SourceTimestamp=now,
                ServerTimestamp=now,
            )
            await self._server.write_attribute_value(node.nodeid, dv)

    async def _animate(self) -> None:
        while True:
            await asyncio.sleep(self.update_s)
            await self._write_all()


def sim_for_source(src: OpcUaSourceConfig, site: Site) -> OpcUaSimServer | None:
    """The simulator of a site's OPC UA source (gateway-sim), or None without devices.

    It serves without security (the site holds no server key) but checks the
    source's user name and password when it has them.
    """
    url = urlparse(src.endpoint)
    devices: list[SimDevice] = []
    for d in site.devices_of(src.id):
        prof = site.device_profiles[d.id]
        if isinstance(prof, OpcUaProfile):
            devices.append(SimDevice(d.id, prof, dict(d.sim)))
    if not devices:
        return None
    users = {src.username: src.password} if src.username and src.password else None
    return OpcUaSimServer(
        url.hostname or "127.0.0.1", url.port or 4840, devices, users=users, path=url.path
    )


async def _ensure_namespace(server: Server, index: int) -> None:
    while len(await server.get_namespace_array()) <= index:
        n = len(await server.get_namespace_array())
        await server.register_namespace(f"{SIM_NAMESPACE}:{n}")


def _typed(p: OpcUaPoint, value: float) -> Any:
    """The behaviour's engineering value as the variable's raw value (scale and offset undone)."""
    raw = (value - p.offset) / p.scale if p.scale else value
    if p.type == "bool":
        return raw >= 0.5
    if p.type == "int":
        return round(raw)
    if p.type == "string":
        return f"{raw:g}"
    return float(raw)


async def start(src: OpcUaSourceConfig, ctx: SimContext) -> tuple[SimPart, str] | None:
    """The plugin's simulator for gateway-sim: a boiler PLC serving the source's devices."""
    plc = sim_for_source(src, ctx.site)
    if plc is None:
        return None
    await plc.start()
    return plc, f"serving {src.id} on {plc.endpoint} (OPC UA, no security)"
