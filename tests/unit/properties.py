"""Hypothesis settings shared by the property tests (tests/unit/test_properties_*.py).

Derandomized, with no example database: the same examples run on every
machine and every run, so CI cannot turn red by luck, and nothing is written
into the checkout. Few examples and no deadline keep them fast and robust on
a loaded machine; raise ``max_examples`` locally to search harder.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
