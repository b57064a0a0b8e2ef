"""YAML loading that remembers where every value came from.

Validation errors must name the file, the line and the field, never show a
traceback. ``load_yaml`` returns the plain data plus a map from key paths
(tuples of keys and list indexes) to line numbers; ``explain`` turns a
pydantic ``ValidationError`` into one readable line per problem.

Every site, profile, rule and patrol file (and so the simulator's) is read
here, within limits: file size, nesting depth, number of values, the values
aliases may add, scalar keys, standard tags only, UTF-8 text. Breaking one is
a single ``ConfigError`` line naming the file and line, never a traceback.
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


# ``${A:-${B:-x}}``: defaults may hold references, this many levels deep.
MAX_ENV_NESTING = 4
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_FORMS = "write ${NAME} or ${NAME:-default}"


class _EnvExpander:
    """Expands the references of one string; a default is only read when it is used.

    A reference the parser cannot close or does not know is an error, so a
    literal ``${`` never reaches the config (no directory named ``${RUN}``).
    Values taken from the environment are used as they are, never expanded.
    """

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where

    def fail(self, start: int, problem: str) -> ConfigError:
        shown = self.text[start : start + 60]
        return ConfigError(f"{self.where}: {shown!r} {problem}")

    def run(self, pos: int, depth: int, used: bool) -> tuple[str, int]:
        """Expand from ``pos``; inside a default (depth > 0) stop after its closing brace."""
        text, parts = self.text, []
        while True:
            ref = text.find("${", pos)
            close = text.find("}", pos) if depth else -1
            if close != -1 and (ref == -1 or close < ref):
                parts.append(text[pos:close])
                return "".join(parts), close + 1
            if ref == -1:
                if depth:
                    raise ConfigError(f"{self.where}: {text!r} has no closing '}}'")
                parts.append(text[pos:])
                return "".join(parts), len(text)
            parts.append(text[pos:ref])
            value, pos = self.reference(ref, depth, used)
            parts.append(value)

    def reference(self, start: int, depth: int, used: bool) -> tuple[str, int]:
        text = self.text
        m = _ENV_NAME.match(text, start + 2)
        pos = m.end() if m else start + 2
        if pos >= len(text):
            raise self.fail(start, "has no closing '}'")
        if m is None or not text.startswith(("}", ":-"), pos):
            raise self.fail(start, f"is not a reference: {_ENV_FORMS}")
        name = m.group()
        value = os.environ.get(name) if used else ""
        if text[pos] == "}":
            if value is None:
                raise ConfigError(f"{self.where}: environment variable {name} is not set")
            return value, pos + 1
        if depth >= MAX_ENV_NESTING:
            raise self.fail(start, f"has defaults nested more than {MAX_ENV_NESTING} deep")
        default, end = self.run(pos + 2, depth + 1, used and not value)
        return (value or default), end


def expand_env(text: str, where: str) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` (the default may hold references).

    As in sh, ``:-`` uses the default when VAR is unset or empty; an unset VAR
    without a default, or anything else after ``${``, is a ConfigError.
    """
    expander = _EnvExpander(text, where)
    expander.run(0, 0, False)  # the whole syntax first, so its errors come before unset names
    return expander.run(0, 0, True)[0]


# Limits that keep a hostile or broken file from exhausting the machine; a
# real site file (10,000 devices: 1.2 MB, 170,000 values) is far inside all of them.
MAX_FILE_BYTES = 4 * 1024 * 1024
# Mappings and lists nested in each other, counting the top level.
MAX_DEPTH = 64
# Values (scalars, lists, mappings, keys included) in one file; at this many
# loading takes seconds and a few hundred MB, which is what it bounds.
MAX_NODES = 500_000
# Anchors and aliases are kept for small repeated blocks (tags, settings);
# all aliases together may add at most this many values to the document.
MAX_ALIAS_NODES = 10_000

_YAML_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(
    _YAML_TAG + t for t in ("null", "bool", "int", "float", "str", "timestamp")
)
_MAP_TAG, _SEQ_TAG, _MERGE_TAG = _YAML_TAG + "map", _YAML_TAG + "seq", _YAML_TAG + "merge"


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag


# libyaml's parser when PyYAML was built with it (about ten times faster); the
# construction (and every check below) is the same Python code either way.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_TOO_DEEP = f"lists and mappings are nested deeper than {MAX_DEPTH} levels"
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _prescan(text: str, where: str) -> int:
    """Check depth and size on the event stream; return the file's own node count.

    Composing recurses per level and builds every node, so both limits are
    enforced here first, in one streaming pass that stops at the first breach
    (a 20,000-deep file is refused at level 65, not at the end of the file).
    """
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_LOADER):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, _CLOSE):
            depth -= 1
            continue
        if isinstance(event, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"{where}:{line}: {_TOO_DEEP}")
        elif not isinstance(event, yaml.ScalarEvent):
            continue
        nodes += 1
        if nodes > MAX_NODES:
            raise ConfigError(f"{where}:{line}: more than {MAX_NODES} values in one file")
    return nodes


class _Builder:
    """Turns composed nodes into plain data, recording lines and enforcing the limits.

    Aliases are shared nodes after composing, so a node met again is an
    expansion: every value built beyond the file's own nodes counts against
    ``MAX_ALIAS_NODES``, and a node met again below itself is a recursive alias.
    """

    def __init__(self, where: str, own_nodes: int, loader: Any) -> None:
        self.where = where
        self.loader = loader
        self.lines: dict[PathKey, int] = {}
        self.budget = own_nodes + MAX_ALIAS_NODES
        self.built = 0
        self.ancestors: list[int] = []

    def fail(self, node: yaml.Node, message: str) -> ConfigError:
        return ConfigError(f"{self.where}:{node.start_mark.line + 1}: {message}")

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.built += 1
        if self.built > self.budget:
            raise self.fail(
                node,
                f"aliases expand to more than {MAX_ALIAS_NODES} extra values"
                " (anchors are for small repeated blocks; is this a YAML bomb?)",
            )
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if id(node) in self.ancestors:
            raise self.fail(node, "the anchored value here refers to itself through an alias")
        if len(self.ancestors) >= MAX_DEPTH:
            raise self.fail(node, f"{_TOO_DEEP} (through aliases)")
        expected = _MAP_TAG if isinstance(node, yaml.MappingNode) else _SEQ_TAG
        if node.tag != expected:
            raise self.fail(node, f"tag {_short_tag(node.tag)} is not allowed here")
        self.ancestors.append(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            return [self.build(v, (*path, i)) for i, v in enumerate(node.value)]
        finally:
            self.ancestors.pop()

    def mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                kind = "mapping" if isinstance(knode, yaml.MappingNode) else "list"
                raise self.fail(knode, f"a key must be a scalar (text or number), not a {kind}")
            if knode.tag == _MERGE_TAG:
                raise self.fail(knode, "merge keys (<<) are not supported: write the keys out")
            key = self.scalar(knode)
            if key in out:
                raise self.fail(knode, f"key {key!r} appears twice")
            out[key] = self.build(vnode, (*path, key))
        return out

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag not in _SCALAR_TAGS:
            raise self.fail(node, f"tag {_short_tag(node.tag)} is not allowed here")
        try:
            value = self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            # Python's own messages (int digit limit) end in advice for programmers.
            reason = str(exc).split(";")[0].replace("\n", " ")
            shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
            raise self.fail(
                node, f"cannot read {shown!r} as {_short_tag(node.tag)}: {reason}"
            ) from None
        if isinstance(value, str) and "${" in value:
            return expand_env(value, f"{self.where}:{node.start_mark.line + 1}")
        return value


def read_bounded(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path``; a ConfigError naming the file if unreadable or too large."""
    try:
        with path.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(raw) > max_bytes:
        raise ConfigError(f"{path}: file is larger than {max_bytes // (1024 * 1024)} MiB")
    return raw


def _read_text(path: Path) -> str:
    raw = read_bounded(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        ) from None


def _reference_at(text: str, start: int) -> str:
    """The ``${...}`` starting at ``start``, braces balanced, for an error message."""
    depth = 0
    for i in range(start + 1, min(len(text), start + 200)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        elif text[i] == "\n":
            break
    return text[start : text.find("}", start) + 1 or start + 2]


def _syntax_error(path: Path, text: str, exc: yaml.YAMLError) -> ConfigError:
    if isinstance(exc, yaml.reader.ReaderError):
        at = text.count("\n", 0, exc.position) + 1
        return ConfigError(
            f"{path}:{at}: character U+{exc.character:04X} is not allowed in YAML"
            f" (offset {exc.position})"
        )
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        if exc.problem_mark is not None and text.startswith("${", exc.problem_mark.index - 1):
            # In {...} and [...] a "{" opens a mapping, so a plain ${VAR} cannot be read.
            ref = _reference_at(text, exc.problem_mark.index - 1)
            return ConfigError(
                f"{path}:{exc.problem_mark.line + 1}: ${{...}} inside {{...}} or [...] must be"
                f' quoted: write "{ref}"'
            )
        line = f":{mark.line + 1}" if mark is not None else ""
        if "nesting depth" in str(exc.problem):
            # libyaml stops thousands of levels deep before the event scan sees them.
            return ConfigError(f"{path}{line}: {_TOO_DEEP}")
        what = ", ".join(str(p) for p in (exc.context, exc.problem) if p)
        return ConfigError(f"{path}{line}: YAML syntax error: {what}")
    return ConfigError(f"{path}: YAML error: {' '.join(str(exc).split())}")


def load_yaml(path: Path) -> LinedData:
    """Read a YAML file within the limits above; every problem is one ConfigError line."""
    text = _read_text(path)
    loader: Any = None
    try:
        own_nodes = _prescan(text, str(path))
        loader = _LOADER(text)
        node = loader.get_single_node()
        if node is None:
            return LinedData(path, None, {})
        builder = _Builder(str(path), own_nodes, loader)
        return LinedData(path, builder.build(node, ()), builder.lines)
    except yaml.YAMLError as exc:
        raise _syntax_error(path, text, exc) from None
    finally:
        if loader is not None:
            loader.dispose()


def _loc_text(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _child(data: Any, key: Any) -> Any:
    if isinstance(data, dict):
        return data.get(key)
    if isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data):
        return data[key]
    return None


def _without_tags(loc: tuple[int | str, ...], data: Any) -> tuple[int | str, ...]:
    """``loc`` without the tags discriminated unions add (sources[0].modbus_tcp.port)."""
    out: list[int | str] = []
    for part in loc:
        if (
            isinstance(data, dict)
            and part not in data
            and any(data.get(k) == part for k in ("type", "kind", "protocol"))
        ):
            continue
        out.append(part)
        data = _child(data, part)
    return tuple(out)


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
    data = doc.data
    for key in base:
        data = _child(data, key)
    for err in exc.errors():
        full = (*base, *_without_tags(err["loc"], data))
        line = doc.line_of(full)
        where = f"{doc.path}:{line}" if line else str(doc.path)
        what = describe(full) if describe else None
        msg = err["msg"].removeprefix("Value error, ")
        label = f"{what}: " if what else ""
        problems.append(f"{where}: {label}{_loc_text(full)}: {msg}")
    return problems
