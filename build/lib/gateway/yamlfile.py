"""YAML loading that remembers where every value came from.

Validation errors must name the file, the line and the field, never show a
traceback. ``load_yaml`` returns the plain data plus a map from key paths
(tuples of keys and list indexes) to line numbers; ``explain`` turns a
pydantic ``ValidationError`` into one readable line per problem.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.errors import ConfigError

PathKey = tuple[str | int, ...]
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class LinedData:
    """Parsed YAML plus the line (1-based) each key path starts at."""

    def __init__(self, path: Path, data: Any, lines: dict[PathKey, int]) -> None:
        self.path = path
        self.data = data
        self.lines = lines

    def line_of(self, loc: PathKey) -> int | None:
        """Line of the deepest prefix of ``loc`` that exists in the file."""
        for n in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:n]))
            if line is not None:
                return line
        return None


def expand_env(text: str, where: str) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; an unset VAR without default is an error."""

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        value = os.environ.get(name)
        if value is None:
            if default is None:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return default
        return value

    return _ENV_RE.sub(repl, text)


def _construct(
    node: yaml.Node, path: PathKey, lines: dict[PathKey, int], where: str, loader: yaml.SafeLoader
) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if key in out:
                raise ConfigError(f"{where}:{knode.start_mark.line + 1}: key {key!r} appears twice")
            out[key] = _construct(vnode, (*path, key), lines, where, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, (*path, i), lines, where, loader) for i, v in enumerate(node.value)]
    value = loader.construct_object(node, deep=True)
    if isinstance(value, str) and "${" in value:
        return expand_env(value, f"{where}:{node.start_mark.line + 1}")
    return value


def load_yaml(path: Path) -> LinedData:
    """Read a YAML file; syntax errors become ConfigError with file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: YAML syntax error: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML error: {exc}") from exc
    lines: dict[PathKey, int] = {}
    loader = yaml.SafeLoader("")
    try:
        data = None if node is None else _construct(node, (), lines, str(path), loader)
    finally:
        loader.dispose()
    return LinedData(path, data, lines)


def _loc_text(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def explain(
    exc: ValidationError,
    doc: LinedData,
    base: PathKey = (),
    describe: Any = None,
) -> list[str]:
    """One line per pydantic error: ``file:line: <what> field: message``.

    ``describe(loc)`` may return a prefix such as ``device 'boiler-1' point 'x'``
    so the message names the device and point, not only a key path.
    """
    problems: list[str] = []
    for err in exc.errors():
        # Discriminated unions add the tag as a loc element; drop it.
        loc = tuple(p for p in err["loc"] if p not in ("modbus", "serial_line"))
        full = (*base, *loc)
        line = doc.line_of(full)
        where = f"{doc.path}:{line}" if line else str(doc.path)
        what = describe(full) if describe else None
        msg = err["msg"].removeprefix("Value error, ")
        label = f"{what}: " if what else ""
        problems.append(f"{where}: {label}{_loc_text(full)}: {msg}")
    return problems
