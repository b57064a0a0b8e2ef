"""The layering check (gateway.devtools.imports): the tree passes, and an upward import fails it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.devtools import imports

REPO = Path(__file__).resolve().parents[2]


def test_the_gateway_has_no_upward_import_at_all() -> None:
    # No known exceptions either: the four there were (config -> local_http, the MQTT
    # command listener -> alerting, reports/schedule -> reports/cli) must not come back.
    assert [str(v) for v in imports.check()] == []
    assert imports.KNOWN == {}


def test_the_command_runs_and_passes() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "gateway.devtools.imports"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "layering ok" in run.stdout


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "gateway"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "importer", "imported"),
    [
        # config must not import alerting (also not inside a function)
        (
            {
                "config.py": "def f():\n    from gateway.alerting.rules import x\n",
                "alerting/rules.py": "x = 1\n",
            },
            "gateway.config",
            "gateway.alerting.rules",
        ),
        # sources must not import app
        (
            {"sources/modbus.py": "import gateway.app\n", "app.py": ""},
            "gateway.sources.modbus",
            "gateway.app",
        ),
        # plugins must not import app
        (
            {"plugins/toy/source.py": "from gateway import app\n", "app.py": ""},
            "gateway.plugins.toy.source",
            "gateway.app",
        ),
        # importing patrol.config runs patrol/__init__: it must not pull the engine in
        (
            {
                "config.py": "from gateway.patrol.config import P\n",
                "patrol/__init__.py": "from gateway.patrol.engine import E\n",
                "patrol/config.py": "P = 1\n",
                "patrol/engine.py": "E = 1\n",
            },
            "gateway.patrol",
            "gateway.patrol.engine",
        ),
    ],
)
def test_an_upward_import_is_found(
    tmp_path: Path, files: dict[str, str], importer: str, imported: str
) -> None:
    found = {(v.importer, v.imported) for v in imports.check(_tree(tmp_path, files))}
    assert (importer, imported) in found


def test_type_checking_imports_and_downward_imports_pass(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "app.py": "from gateway.config import C\n",
            "config.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from gateway.app import A\nC = 1\n"
            ),
        },
    )
    assert imports.check(root) == []


def test_a_module_in_no_layer_is_an_error(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"config.py": "", "brand_new.py": ""})
    with pytest.raises(ValueError, match=r"gateway\.brand_new"):
        imports.check(root)
