"""Device simulators for the facility safety gateway (`gateway-sim`).

The simulators load the same site file and device profiles as the gateway,
so a profile is proven by simulating it. The layers, bottom up:

- ``clock``: simulation time (optionally faster than real time), injected everywhere.
- ``behaviours`` / ``physics``: what a point's value is at a given time
  (constant, ramp, sine, random walk, counter; boiler heat model, leakage monitor logic).
- ``modbus_devices``: one device's register image and the pymodbus ``SimDevice``
  (its "firmware") that serves it.
- ``faults``: per-device fault plans (no answer, exception, garbage, slow).
- ``tcp_server`` / ``rtu_server``: the wire. pymodbus serves the devices on a
  loopback port; a small line emulator in front of it frames requests, adds
  wire time and injects faults, on a TCP port or on a pseudo-terminal.
- ``rfid``: the RFID checkpoint reader writing tap lines to its own pty.
- ``scenarios`` / ``runner`` / ``cli``: named scenarios and the ``gateway-sim`` command.
"""
