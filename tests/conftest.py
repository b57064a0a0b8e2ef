"""Shared pytest configuration: fixtures that start real servers live in tests/fixtures."""

pytest_plugins = ["tests.fixtures.servers"]
