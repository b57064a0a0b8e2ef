"""Benchmarks: fleet throughput, alarm latency, memory and serial-bus efficiency.

``python -m bench.run`` (``make bench``) runs every scenario and prints one
table; see docs/bench.md for what each figure means and what bounds it.
"""
