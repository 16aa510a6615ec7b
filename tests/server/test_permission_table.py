"""README's permission table says what the built-in levels grant: every permission, each level's column."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simpletuner.ui.auth.permissions import BUILTIN_LEVEL_PERMISSIONS, PERMISSIONS

README = Path(__file__).resolve().parents[2] / "README.md"
LEVELS = ("viewer", "researcher", "lead", "admin")


@pytest.mark.timeout(10)
def test_readme_permission_table_matches_the_built_in_levels() -> None:
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `([a-z.]+)` \|[^|]*\|(.*)\|$", line)
        if match and match.group(1) in PERMISSIONS:
            cells = [c.strip() for c in match.group(2).split("|")]
            rows[match.group(1)] = {level for level, cell in zip(LEVELS, cells, strict=True) if cell == "✓"}
    assert set(rows) == set(PERMISSIONS), "README's table lists every permission once"
    for permission, levels in rows.items():
        expected = {level for level in LEVELS if permission in BUILTIN_LEVEL_PERMISSIONS[level]}
        assert levels == expected, permission
