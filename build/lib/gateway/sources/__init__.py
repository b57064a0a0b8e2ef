"""Sources: one per physical connection (a Modbus TCP endpoint, a serial line).

Only modules in this package import pymodbus or pyserial; everything above
sees ``Sample`` objects and ``GatewayError`` subclasses.
"""
