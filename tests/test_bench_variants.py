"""bench/variants/*.patch: the variants docs/performance.md measures against must still apply."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATCHES = sorted((ROOT / "bench" / "variants").glob("*.patch"))


def test_there_is_a_variant() -> None:
    assert PATCHES


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.name)
def test_each_variant_applies_to_this_tree(patch: Path) -> None:
    result = subprocess.run(["git", "apply", "--check", str(patch)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
