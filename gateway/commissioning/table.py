"""Plain-text tables for the commissioning commands: columns padded to their widest cell."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def render(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()
) -> list[str]:
    """Lines of a table: a header, then one line per row; columns in ``right`` align right.

    Two spaces between columns; trailing spaces are stripped so the output
    diffs cleanly. A row with fewer cells than headers is padded with empty cells.
    """
    cells = [list(headers)] + [[*r, *[""] * (len(headers) - len(r))] for r in rows]
    for r in cells:
        if len(r) != len(headers):
            raise ValueError(f"row has {len(r)} cells for {len(headers)} columns: {r}")
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for r in cells:
        parts = [
            r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i])
            for i in range(len(headers))
        ]
        out.append("  ".join(parts).rstrip())
    return out
