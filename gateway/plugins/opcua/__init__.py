"""OPC UA source plugin: reads PLC variables by subscription (or polling) with asyncua.

``config`` holds the source's settings, ``profile`` the device profile model
(points by NodeId or browse path), ``source`` the ``OpcUaSource``, ``quality``
the status-code mapping, ``sim`` a boiler-PLC server for tests and demos.
Only ``source`` and ``sim`` import asyncua.
"""

from __future__ import annotations

from gateway.plugins.base import ProfileKindPlugin, SourcePlugin
from gateway.plugins.opcua.config import OpcUaSourceConfig
from gateway.plugins.opcua.profile import OpcUaProfile

# Factory and simulator by reference: asyncua is imported only for sites that use it.
PLUGINS = [
    ProfileKindPlugin(name="opcua", model=OpcUaProfile),
    SourcePlugin(
        name="opcua",
        config=OpcUaSourceConfig,
        factory="gateway.plugins.opcua.source:build",
        profile_protocols=frozenset({"opcua"}),
        simulator="gateway.plugins.opcua.sim:start",
    ),
]

__all__ = ["PLUGINS", "OpcUaProfile", "OpcUaSourceConfig"]
