"""The screenshot script (tests/browser/screenshots.py) keeps working: run as the README says,
every picture is written, a PNG of the screen size it is meant for."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.conftest import ROOT, chromium_path
from tests.browser.screenshots import SHOTS, SIZES


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_the_screenshot_script_writes_every_picture(tmp_path: Path) -> None:
    if not chromium_path():
        if os.environ.get("CI"):
            pytest.fail("Chromium not found: install Debian's `chromium` package (or set CHROMIUM_PATH)")
        pytest.skip("Chromium not found")
    readme = tmp_path / "docs" / "screenshot.png"
    run = subprocess.run(
        [sys.executable, "-m", "tests.browser.screenshots", str(tmp_path / "shots"), "--readme", str(readme)],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    written = {Path(line) for line in run.stdout.split()}
    expected = {tmp_path / "shots" / f"{name}-{size}.png" for name in SHOTS for size in SIZES} | {readme}
    assert written == expected
    for path in written:
        size = "phone" if path.name.endswith("-phone.png") else "desktop"
        viewport = SIZES[size]["viewport"]
        assert png_size(path) == (viewport["width"], viewport["height"]), path
        assert path.stat().st_size > 10_000, f"{path} looks blank"
