"""facility-safety-gateway: an edge gateway for a city park and a district-heating network."""

__version__ = "0.1.0"
