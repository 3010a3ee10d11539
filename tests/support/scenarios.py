"""Scenarios for tests: the page's samples, and one grown to the size of a long real scenario."""

from __future__ import annotations

import json
from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "static" / "samples"
FILLER = "The team weighs each option against patient safety, cost and the time it buys. " * 6


def sample(name: str) -> dict:
    """A fresh copy of static/samples/<name>.json."""
    return json.loads((SAMPLES_DIR / f"{name}.json").read_text())


def big_scenario(min_bytes: int = 40 * 1024) -> dict:
    """The hospital-ransomware sample grown past `min_bytes` with more steps."""
    scenario = sample("hospital-ransomware")
    number = 0
    while len(json.dumps(scenario).encode()) < min_bytes:
        number += 1
        scenario["steps"].append({"title": f"Operational period {number}", "description": FILLER.strip()})
    return scenario
