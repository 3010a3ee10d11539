"""Runs the page's JavaScript unit tests (tests/js/*.test.mjs) under Node's built-in runner."""

import shutil
import subprocess
from pathlib import Path

import pytest

JS_TESTS = Path(__file__).parent / "js"


def test_node_unit_tests_pass():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the SSE parser tests need Node 20+ (node --test)")
    files = sorted(str(p) for p in JS_TESTS.glob("*.test.mjs"))
    assert files, "no JavaScript tests found"
    result = subprocess.run([node, "--test", *files], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
