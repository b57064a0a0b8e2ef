"""What the parts of the patrol engine share: its config, clock, state and helpers.

``PatrolEngine`` (``engine.py``) is put together from parts, each in a module
of its own: the overdue clock (``overdue.py``), how a round ends
(``rounds.py``), reader health and unknown-card bursts (``readers.py``) and
the status snapshot (``status.py``). Each part is a mixin over ``EngineMixin``,
which declares what the engine holds and the helpers it defines, so a part
type-checks alone and the engine's own methods stay where they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.model import Clock
from gateway.patrol.config import PatrolConfig, RouteConfig
from gateway.patrol.state import PatrolState

NS = 1_000_000_000


class EngineMixin:
    """The engine's attributes and helpers, as its parts see them (defined in ``PatrolEngine``)."""

    config: PatrolConfig
    clock: Clock
    _s: PatrolState
    _routes: dict[str, RouteConfig]

    if TYPE_CHECKING:

        def _local(self, ts: int, fmt: str) -> str: ...

        def _count(self, name: str, n: int = 1) -> None: ...

        def _save(self) -> None: ...

        def _checkpoints_of(self, device: str) -> list[str]: ...
