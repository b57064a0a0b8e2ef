"""Alerting: rules -> ISA-18.2 alarm book -> notifications, with durable state.

``engine.AlertEngine`` is the facade the app uses; ``rules`` holds the rule
kinds and the rule-file loader, ``alarms`` the alarm book, ``store`` the
SQLite state, ``notify`` routing/escalation/channels and ``commands`` the
operator commands shared by MQTT and the CLI. This package file imports
nothing so ``gateway.config`` can import ``alerting.config`` without a cycle.
"""
