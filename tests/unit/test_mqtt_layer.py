"""One MQTT layer: only gateway/plugins/mqtt/connection.py talks to paho, nothing uses aiomqtt."""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_connection_module_imports_an_mqtt_library() -> None:
    users = {
        str(p.relative_to(GATEWAY)): sorted(_imports(p) & {"paho", "aiomqtt"})
        for p in GATEWAY.rglob("*.py")
        if "tests" not in p.relative_to(GATEWAY).parts and _imports(p) & {"paho", "aiomqtt"}
    }
    assert users == {"plugins/mqtt/connection.py": ["paho"]}
