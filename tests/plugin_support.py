"""Helpers for the tests in gateway/plugins/<name>/tests: a plugin's README sample config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gateway.config import Sinks, SiteConfig

_BLOCK = re.compile(r"```yaml\n(.*?)```", re.S)


def readme_sample(plugin_dir: Path) -> dict[str, Any]:
    """The first YAML block of the plugin's README.md."""
    text = (plugin_dir / "README.md").read_text(encoding="utf-8")
    match = _BLOCK.search(text)
    assert match is not None, f"{plugin_dir}/README.md has no yaml sample"
    data = yaml.safe_load(match.group(1))
    assert isinstance(data, dict)
    return data


def sample_site(plugin_dir: Path) -> SiteConfig:
    """The README's sources and devices as a site (validated by the schema)."""
    data = readme_sample(plugin_dir)
    return SiteConfig.model_validate({"site": "sample", **data})


def sample_sinks(plugin_dir: Path) -> Sinks:
    return Sinks.model_validate(readme_sample(plugin_dir)["sinks"])
