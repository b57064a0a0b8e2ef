"""The layering check: no module imports a module of a higher layer.

``python -m gateway.devtools.imports`` lists every import of ``gateway`` that
goes up the layer order below and exits 1 if there is one that is not a known
exception. Imports inside functions count (they still tie the lower module to
the higher one); imports under ``if TYPE_CHECKING:`` do not (annotations only).
Importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``, so
those package modules count as imported too.

A module belongs to the layer of the most specific pattern that names it in
``LAYERS`` (``*`` is one name). A plugin's registration
(``gateway.plugins.<name>``) and its ``config`` are schema: validating a site
loads them only; its code (``source``, ``sink``, ``sim``) is the ``plugins``
layer, loaded through the registration's ``"module:attribute"`` factory when a
site is wired. Tests (``*.tests.*``) are outside the layers: they may use anything.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Lowest first. A module may import its own layer and the layers below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "base",
        (
            "gateway",
            "gateway.errors",
            "gateway.model",
            "gateway.validators",
            "gateway.yamlfile",
            "gateway.crashpoints",
            "gateway.tasks",
            "gateway.clockwatch",
            "gateway.disk_space",
            "gateway.sqlite_file",
            "gateway.printable",
        ),
    ),
    (
        "schema",
        (
            "gateway.profiles",
            "gateway.plugins",
            "gateway.plugins.base",
            "gateway.plugins.serial_port",
            # A plugin's registration and its config model; its code is the plugins layer.
            "gateway.plugins.*",
            "gateway.plugins.*.config",
            "gateway.plugins.*.profile",
            # Pure frame and record decoding, no I/O: config models validate addresses with it.
            "gateway.plugins.*.codec",
            "gateway.plugins.*.records",
            "gateway.plugins.mbus.cjt188",
            "gateway.alerting",
            "gateway.alerting.config",
            "gateway.alerting.command_config",
            "gateway.alerting.ack_link",
            "gateway.reports.config",
            "gateway.patrol",
            "gateway.patrol.config",
            "gateway.config",
            "gateway.local_http_config",
        ),
    ),
    (
        "io",
        (
            "gateway.codecs",
            "gateway.outbox",
            "gateway.lineprotocol",
            "gateway.redact",
            "gateway.sources",
            "gateway.sinks",
            "gateway.alarm_lane",
            "gateway.delivery",
        ),
    ),
    ("plugins", ("gateway.plugins.*.*",)),
    ("logic", ("gateway.alerting.*", "gateway.patrol.*", "gateway.reports")),
    ("loader", ("gateway.loader", "gateway.reload")),
    (
        "app",
        (
            "gateway.app",
            "gateway.storage_alarms",
            "gateway.local_http",
            "gateway.process",
            "gateway.reloader",
            "gateway.source_set",
            "gateway.self_health",
            "gateway.command_channels",
        ),
    ),
    (
        "entry",
        (
            "gateway.cli",
            "gateway.alarms_cli",
            "gateway.patrol_cli",
            "gateway.reload_cli",
            "gateway.reports.cli",
            "gateway.commissioning",
            "gateway.grafana",
            "gateway.console",
            "gateway.devtools",
        ),
    ),
)

# (importer, imported): why an upward import stays, with its reason. None today:
# the four there were are removed (docs/architecture.md), so any new one fails.
KNOWN: dict[tuple[str, str], str] = {}


def _matches(pattern: str, module: str) -> int:
    """How specific ``pattern`` names ``module`` (0: it does not)."""
    parts, mod = pattern.split("."), module.split(".")
    if len(mod) < len(parts) or (len(parts) == 1 and len(mod) > 1):
        return 0  # the root package names itself only, or every new module had a layer
    for p, m in zip(parts, mod, strict=False):
        if p != "*" and p != m:
            return 0
    # An exact name beats a prefix; a literal part beats a wildcard.
    exact = len(mod) == len(parts)
    return len(parts) * 4 - parts.count("*") * 2 + (1 if exact else 0)


def layer_of(module: str) -> int:
    best, layer = 0, -1
    for i, (_, patterns) in enumerate(LAYERS):
        for pat in patterns:
            score = _matches(pat, module)
            if score > best:
                best, layer = score, i
    if layer < 0:
        raise ValueError(f"{module}: in no layer of gateway.devtools.imports.LAYERS")
    return layer


@dataclass(frozen=True)
class Violation:
    importer: str
    imported: str
    line: int
    path: Path

    def __str__(self) -> str:
        lo, hi = LAYERS[layer_of(self.importer)][0], LAYERS[layer_of(self.imported)][0]
        return f"{self.path}:{self.line}: {self.importer} ({lo}) imports {self.imported} ({hi})"


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def _imports(tree: ast.AST, package: str) -> Iterator[tuple[str, int]]:
    skip = _type_checking_lines(tree)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            yield name, node.lineno
            for alias in node.names:  # ``from gateway import plugins`` imports a module
                yield f"{name}.{alias.name}", node.lineno


def check(root: Path | None = None) -> list[Violation]:
    """Every upward import under ``root`` (the gateway package), known exceptions included."""
    root = root or Path(__file__).resolve().parents[1]
    files = {
        _module_name(root, p): p
        for p in sorted(root.rglob("*.py"))
        if "tests" not in p.relative_to(root).parts
    }
    runs_code = {
        m
        for m, p in files.items()
        if p.name != "__init__.py" or any(True for _ in _imports(ast.parse(p.read_text()), m))
    }
    unplaced = []
    for module in files:
        try:
            layer_of(module)
        except ValueError:
            unplaced.append(module)
    if unplaced:
        raise ValueError(f"modules in no layer (add them to LAYERS): {', '.join(unplaced)}")
    out: list[Violation] = []
    for module, path in files.items():
        is_pkg = path.name == "__init__.py"
        package = module if is_pkg else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        own = layer_of(module)
        seen: set[str] = set()
        for name, line in _imports(tree, package):
            parts = name.split(".")
            # The module itself and every package __init__ on the way run on import.
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target not in files or target == module or target in seen:
                    continue
                if target != name and target not in runs_code:
                    continue
                seen.add(target)
                if layer_of(target) > own:
                    out.append(Violation(module, target, line, path))
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        violations = check()
    except ValueError as exc:
        print(exc)
        return 1
    bad = [v for v in violations if (v.importer, v.imported) not in KNOWN]
    for v in violations:
        reason = KNOWN.get((v.importer, v.imported))
        print(f"{v}  [known: {reason}]" if reason else str(v))
    if bad:
        print(f"{len(bad)} upward import(s); see gateway/devtools/imports.py for the layers")
        return 1
    print(f"layering ok ({len(violations)} known exception(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
