"""OPC UA device profiles: which variables a PLC exposes and how to turn each into a point.

A point names its variable either by NodeId (``ns=2;s=Boiler.Supply``,
``i=2258``) or by browse path from the Objects folder
(``/2:BoilerPLC/2:SupplyTemperature``, each step ``<namespace index>:<browse name>``).
Numeric values are ``raw * scale + offset``. The ``sim`` block animates the
point in the simulator (``gateway.plugins.opcua.sim``), so the profile that
the gateway reads is the one the simulator serves.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gateway.profiles.schema import NAME_RE, PROFILE_NAME_RE, PointsProfile, SimBehaviour, Strict

# NodeId string forms of OPC UA Part 6 5.3.1.10 (numeric, string, GUID, opaque).
NODEID_RE = re.compile(r"^(ns=\d{1,5};)?(i=\d{1,10}|s=.+|g=[0-9A-Fa-f-]{36}|b=[A-Za-z0-9+/=]+)$")
BROWSE_STEP_RE = re.compile(r"^\d{1,5}:[^/]+$")


def browse_path(node: str) -> list[str] | None:
    """The steps of a browse path (``/2:A/2:B`` -> ``["2:A", "2:B"]``), or None for a NodeId."""
    if not node.startswith("/"):
        return None
    return node[1:].split("/")


class OpcUaPoint(Strict):
    name: Annotated[str, Field(pattern=NAME_RE)]
    node: str
    type: Literal["float", "int", "bool", "string"] = "float"
    scale: float = 1.0
    offset: float = 0.0
    unit: str = ""
    description: str = ""
    sim: SimBehaviour | None = None

    @field_validator("node")
    @classmethod
    def _node_form(cls, v: str) -> str:
        steps = browse_path(v)
        if steps is None:
            if not NODEID_RE.match(v):
                raise ValueError(
                    f"node {v!r} is neither a NodeId (ns=2;s=Name, i=85) nor a browse path"
                    " (/2:Folder/2:Variable)"
                )
        elif not steps or not all(BROWSE_STEP_RE.match(s) for s in steps):
            raise ValueError(
                f"browse path {v!r}: each step is <namespace index>:<browse name>,"
                " e.g. /2:BoilerPLC/2:SupplyTemperature"
            )
        return v

    @model_validator(mode="after")
    def _scale_for_numbers(self) -> OpcUaPoint:
        if self.type in ("bool", "string") and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError(f"point {self.name!r}: scale and offset are for numeric types")
        if self.scale == 0.0:
            raise ValueError(f"point {self.name!r}: scale must not be 0")
        if self.sim is not None and self.sim.kind == "boiler":
            raise ValueError(
                f"point {self.name!r}: sim kind 'boiler' is the Modbus simulator's heat model;"
                " use constant, ramp, sine, random_walk or counter"
            )
        return self


class OpcUaProfile(PointsProfile):
    name: Annotated[str, Field(pattern=PROFILE_NAME_RE)]
    protocol: Literal["opcua"]
    kind: Annotated[str, Field(pattern=NAME_RE)]
    vendor: str = ""
    model: str = ""
    description: str = ""
    points: list[OpcUaPoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> OpcUaProfile:
        nodes: dict[str, str] = {}
        for p in self.points:
            if p.node in nodes:
                raise ValueError(f"point {p.name!r} reads the node of point {nodes[p.node]!r}")
            nodes[p.node] = p.name
        return self
