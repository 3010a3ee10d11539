"""Shared fixtures. Servers run on 127.0.0.1 on free ports; see tests/support/servers.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from tests.support.servers import FakeUpstream, LiveApp

SAMPLES = ROOT / "static" / "samples"


@pytest.fixture(scope="session")
def offline_app() -> Iterator["LiveApp"]:
    """The app on the offline model, with no token delay."""
    from tests.support.servers import LiveApp

    with LiveApp() as live:
        yield live


@pytest.fixture
def fake_upstream() -> Iterator["FakeUpstream"]:
    from tests.support.fake_upstream import FakeUpstream

    with FakeUpstream() as fake:
        yield fake


def upstream_env(fake: "FakeUpstream", **extra: str) -> dict[str, str]:
    """App environment pointing at a fake upstream."""
    env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-test-SECRET-key-0123456789", "OPENAI_MODEL": "fake-model", "UPSTREAM_MAX_RETRIES": "0"}
    env.update(extra)
    return env
