"""Finding and loading device profiles: the built-in folder plus the site's extra folders.

Every ``*.yaml`` file in a folder holds one profile. A profile in a site's
extra folder may replace a built-in one of the same name (an integrator's
corrected register map); two profiles of the same name in one layer are an
error. Problems name the file and line.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.errors import ConfigError, ProfileError
from gateway.plugins import DeviceProfile, validate_profile
from gateway.yamlfile import explain, load_yaml

BUILTIN_DIR = Path(__file__).parent / "builtin"
# Any registered kind of profile (gateway.plugins: ProfileKindPlugin).
AnyProfile = DeviceProfile


def _describe(data: Any) -> Any:
    def describe(loc: tuple[Any, ...]) -> str | None:
        name = data.get("name", "?") if isinstance(data, dict) else "?"
        out = f"profile {name!r}"
        if len(loc) >= 2 and loc[0] in ("points", "fields") and isinstance(loc[1], int):
            items = data.get(loc[0]) if isinstance(data, dict) else None
            if isinstance(items, list) and loc[1] < len(items) and isinstance(items[loc[1]], dict):
                out += f" point {items[loc[1]].get('name', '?')!r}"
        return out

    return describe


def load_profile_file(path: Path) -> AnyProfile:
    """Load and validate one profile file."""
    doc = load_yaml(path)
    data = doc.data
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile must be a mapping with name, kind and points")
    try:
        return validate_profile(data)
    except ValidationError as exc:
        problems = explain(exc, doc, describe=_describe(data))
        raise ProfileError(problems[0], problems) from None


def load_folder(folder: Path) -> tuple[dict[str, AnyProfile], list[str]]:
    """All profiles of one folder, and the problems found (never raises for one bad file)."""
    profiles: dict[str, AnyProfile] = {}
    origin: dict[str, Path] = {}
    problems: list[str] = []
    if not folder.is_dir():
        return profiles, [f"{folder}: profile folder does not exist"]
    for path in sorted(folder.glob("*.yaml")):
        try:
            prof = load_profile_file(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        if prof.name in profiles:
            problems.append(
                f"{path}: profile {prof.name!r} is already defined in {origin[prof.name]}"
            )
            continue
        profiles[prof.name] = prof
        origin[prof.name] = path
    return profiles, problems


class ProfileRegistry:
    """Every profile the site can use, by name."""

    def __init__(self, profiles: dict[str, AnyProfile]) -> None:
        self._profiles = profiles

    @classmethod
    def load(cls, extra_dirs: Iterable[Path] = ()) -> tuple[ProfileRegistry, list[str]]:
        profiles, problems = load_folder(BUILTIN_DIR)
        for folder in extra_dirs:
            more, more_problems = load_folder(folder)
            profiles.update(more)
            problems.extend(more_problems)
        return cls(profiles), problems

    def get(self, name: str) -> AnyProfile:
        try:
            return self._profiles[name]
        except KeyError:
            known = ", ".join(sorted(self._profiles)) or "none"
            raise ProfileError(f"unknown profile {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._profiles

    def names(self) -> list[str]:
        return sorted(self._profiles)
