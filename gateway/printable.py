"""Text safe to show an operator: characters that could hide or reorder what they read.

``unsafe_char`` names them (commands refuse them in their text fields);
``printable_json`` writes JSON with them escaped, for a terminal, a log, a
page or an MQTT reply. Pure functions, below every layer that shows text.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

# Characters that could hide or reorder what an operator reads (control, format incl.
# bidirectional overrides and zero-width, surrogates, private use, unassigned, separators).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def unsafe_char(ch: str) -> bool:
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def printable_json(obj: Any) -> str:
    """JSON for a terminal, a log or a page: unsafe characters as \\uXXXX, still valid JSON."""
    text = json.dumps(obj, ensure_ascii=False, default=str)
    if text.isascii() and "\x7f" not in text:  # json.dumps already escaped the rest
        return text
    return "".join(_escape_char(ch) if unsafe_char(ch) else ch for ch in text)
