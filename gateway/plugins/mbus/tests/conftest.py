"""The real-server fixtures (Mosquitto, InfluxDB 1.x) for the M-Bus plugin's tests."""

import pytest

# tests/conftest.py loads the same module as a plugin (with assertion rewriting):
# mark it before importing, so the order the two conftests load in does not matter.
pytest.register_assert_rewrite("tests.fixtures.servers")

from tests.fixtures.servers import influxdb1, mosquitto, mqtt_collector  # noqa: E402

__all__ = ["influxdb1", "mosquitto", "mqtt_collector"]
