"""Grafana dashboards for the gateway: ``build.py`` writes the committed ``*.json`` beside it."""
