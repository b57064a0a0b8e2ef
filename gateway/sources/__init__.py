"""Helpers the source plugins share: Modbus read planning and decoding, device counters.

The sources themselves are plugins (gateway/plugins/<name>/source.py). Only
modules here and in the plugins import pymodbus or pyserial; everything above
sees ``Sample`` objects and ``GatewayError`` subclasses.
"""
