"""Basic256Sha256 SignAndEncrypt with user name and password against the simulator.

The certificates are generated in the test (asyncua's cert_gen); the
simulator offers only the secure endpoints and refuses anonymous sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from gateway.model import Quality
from gateway.plugins.opcua.tests.conftest import (
    Samples,
    all_good,
    make_source,
    secure_plc,
)

pytestmark = pytest.mark.timeout(60)


def secure_cfg(certs: dict[str, Path], mode: str, password: str) -> dict[str, object]:
    return {
        "security": {
            "policy": "Basic256Sha256",
            "mode": mode,
            "certificate": str(certs["client_cert"]),
            "private_key": str(certs["client_key"]),
            "server_certificate": str(certs["server_cert"]),
        },
        "username": "operator",
        "password": password,
    }


@pytest.mark.parametrize("mode", ["SignAndEncrypt", "Sign"])
async def test_secure_session_with_user_and_password(certs: dict[str, Path], mode: str) -> None:
    sim = secure_plc(certs)
    samples = Samples()
    src = make_source(sim.endpoint, samples, secure_cfg(certs, mode, "s3cret"))
    async with sim:
        task = asyncio.create_task(src.run())
        try:
            s = await samples.wait_for(all_good, what="good values over the secure channel")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert s.values["flame"] is True and src.link_ok is True


async def test_wrong_password_gives_bad_points_and_a_link_alarm(certs: dict[str, Path]) -> None:
    sim = secure_plc(certs)
    samples = Samples()
    src = make_source(sim.endpoint, samples, secure_cfg(certs, "SignAndEncrypt", "wrong"))
    async with sim:
        task = asyncio.create_task(src.run())
        try:
            s = await samples.wait_for(lambda s: bool(s.quality), what="a refused session")
            await samples.wait_for(lambda s: True, what="another sample")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert all(q is Quality.BAD for q in s.quality.values()) and not s.values
    assert src.link_ok is False and "BadUserAccessDenied" in src.link_error
    assert src.sessions == 0
    assert all(not x.values for x in samples.all)
