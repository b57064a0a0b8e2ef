"""Commissioning tools for integrators on site: ``gateway probe`` and ``gateway scan``.

``link`` turns the ad-hoc connection options (``--tcp``/``--serial``) into a
source config and opens the gateway's own Modbus client on it; ``probe``
reads one device once with its profile through the gateway's planner and
codecs; ``advice`` says which register range to declare ``unreadable:``;
``scan`` finds the units answering on a line; ``table`` renders text tables;
``cli`` registers the two commands.
"""
