"""The M-Bus source plugin (EN 13757-2/-3) over a serial line or a TCP converter.

``config`` the source's settings, ``profile`` the meter profile model, ``codec``
and ``records`` the frames and data records, ``link`` and ``meter`` the line
and one meter, ``source`` the ``MBusSource``, ``sim`` meters on a pty.
"""

from __future__ import annotations

from gateway.plugins.base import ProfileKindPlugin, SourcePlugin
from gateway.plugins.mbus.config import MBusSourceConfig
from gateway.plugins.mbus.profile import MBusProfile

PLUGINS = [
    ProfileKindPlugin(name="mbus", model=MBusProfile),
    SourcePlugin(
        name="mbus",
        config=MBusSourceConfig,
        factory="gateway.plugins.mbus.source:build",
        profile_protocols=frozenset({"mbus"}),
        unit_addressed=True,
        simulator="gateway.plugins.mbus.sim:start",
    ),
]

__all__ = ["PLUGINS", "MBusProfile", "MBusSourceConfig"]
