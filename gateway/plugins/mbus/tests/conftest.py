"""The real-server fixtures (Mosquitto, InfluxDB 1.x) for the M-Bus plugin's tests."""

from tests.fixtures.servers import influxdb1, mosquitto, mqtt_collector

__all__ = ["influxdb1", "mosquitto", "mqtt_collector"]
