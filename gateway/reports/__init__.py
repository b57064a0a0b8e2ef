"""Daily reports read back from InfluxDB: heating season and safety log, with their completeness.

``completeness`` (gaps and shares), ``counters`` (totalisers through resets,
rollovers and meter swaps), ``queries`` (InfluxQL), ``heating`` and ``safety``
(the reports' figures), ``render`` (text, CSV, HTML with SVG charts, PDF),
``schedule`` (the morning run) and ``cli`` (``gateway report heating|safety``).
"""
