"""No module of the gateway or the simulators over about 500 lines (issue 13).

A module that long holds several ideas; split it along them (docs/architecture.md,
"What moved where", shows how the big ones were split). Generated or declarative
files may be longer: they go in ``DECLARATIVE`` with the reason
(``test_allow_list_is_current`` fails once such a module is short, so a stale
entry cannot stay).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "firmware_sim")
LIMIT = 500

# Generated or declarative modules (tables, schemas written out as data) allowed
# over the limit, with the reason. None today: every long module is code.
DECLARATIVE: dict[str, str] = {}


def line_counts(root: Path) -> dict[str, int]:
    """Lines of every Python module under the packages, by path relative to ``root``."""
    out: dict[str, int] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            out[path.relative_to(root).as_posix()] = len(path.read_text().splitlines())
    return out


def oversized(root: Path) -> dict[str, int]:
    """The modules over ``LIMIT`` lines that no allow-list names."""
    allowed = DECLARATIVE.keys()
    return {p: n for p, n in line_counts(root).items() if n > LIMIT and p not in allowed}


def test_no_module_over_the_limit() -> None:
    too_long = oversized(REPO)
    assert not too_long, (
        f"modules over {LIMIT} lines (split them along their ideas, or list a generated or"
        f" declarative file in DECLARATIVE with the reason): {too_long}"
    )


def test_allow_list_is_current() -> None:
    counts = line_counts(REPO)
    for path in DECLARATIVE:
        assert path in counts, f"{path} is allow-listed but does not exist: remove the entry"
        assert counts[path] > LIMIT, (
            f"{path} has {counts[path]} lines, within the limit: remove its allow-list entry"
        )


def test_the_check_sees_a_long_module(tmp_path: Path) -> None:
    (tmp_path / "gateway" / "sub").mkdir(parents=True)
    (tmp_path / "firmware_sim").mkdir()
    (tmp_path / "gateway" / "sub" / "long.py").write_text("x = 1\n" * (LIMIT + 1))
    (tmp_path / "gateway" / "short.py").write_text("x = 1\n" * LIMIT)
    assert oversized(tmp_path) == {"gateway/sub/long.py": LIMIT + 1}
    DECLARATIVE["gateway/sub/long.py"] = "a table written out as data (this test only)"
    try:
        assert oversized(tmp_path) == {}
    finally:
        del DECLARATIVE["gateway/sub/long.py"]
