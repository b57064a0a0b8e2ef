"""OPC UA source plugin: reads PLC variables by subscription (or polling) with asyncua.

``config`` holds the source's settings, ``profile`` the device profile model
(points by NodeId or browse path), ``source`` the ``OpcUaSource``, ``quality``
the status-code mapping, ``sim`` a boiler-PLC server for tests and demos.
Only ``source`` and ``sim`` import asyncua.
"""
