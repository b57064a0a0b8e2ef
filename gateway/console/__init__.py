"""``gateway console``: the on-call web console, a process of its own.

It learns everything from MQTT (retained ``alarms/#``, device availability,
``gateway/status``, the ``events`` stream, the gateway's health record) for
one site or every site under ``<prefix>/+/``, and acts only by publishing
signed commands on a site's command topic and waiting for the gateway's
reply: the alarm truth stays in the gateways. Its own SQLite holds users,
sessions, API tokens and its audit log.

Modules: ``state`` (what the console knows), ``mqtt_link`` (the broker
connection: subscriptions in, commands out), ``store`` (SQLite), ``auth``
(passwords, sessions, CSRF, tokens, login limits, roles), ``web`` (FastAPI:
pages, server-sent events, JSON API), ``cli`` (``gateway console``).
"""
