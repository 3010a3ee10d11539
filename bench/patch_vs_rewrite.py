#!/usr/bin/env python3
"""A one-field rename of a 40 KB scenario: a JSON Patch answer against a whole rewrite.

    python3 bench/patch_vs_rewrite.py            # counts, and the patch timed at 50 tokens/s
    python3 bench/patch_vs_rewrite.py --json

1. Counts. The offline model's own answer to "rename it to ..." (a ```patch block), and the
   same answer as a whole rewrite (a ```scenario block with the renamed document), in bytes
   and in tokens two ways: the offline model's tokens (a word and its spaces), and 4-byte
   pieces, the size of the deltas a scripted upstream sends here (about what a BPE tokenizer
   gives for JSON).
2. Time to the `scenario` frame at 50 tokens/s. The app runs on 127.0.0.1 against a scripted
   upstream (tests/support/fake_upstream.py) that sends each answer in 4-byte deltas 20 ms
   apart. The patch is timed for real; the rewrite's time is its delta count / 50 (timing it
   would take minutes, which is the point), unless --time-rewrite is given.

Bounded: one request each, a 600 s timeout, loopback only. The figures are in the README
(Scenario blocks and patches).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import httpx  # noqa: E402

from tests.support.servers import STREAM_PATH, FakeUpstream, LiveApp, Plan, iter_frames  # noqa: E402
from upstream.offline.compose import compose  # noqa: E402

_OFFLINE_TOKEN = re.compile(r"\s*\S+\s*|\s+")
PACE_MS = 20.0  # 50 tokens/s
PIECE = 4


def scenario_of(target_bytes: int) -> dict:
    scenario: dict = {"title": "Port closure", "summary": "A storm closes the port for two days.", "setting": "A container port.",
                      "difficulty": "medium", "roles": [], "steps": [], "objectives": ["Reopen safely", "Keep the public informed"]}
    i = 0
    while len(json.dumps(scenario, indent=2)) < target_bytes:
        scenario["roles"].append({"name": f"Officer {i}", "description": "Keeps the quay running, reports to the harbour master every hour."})
        scenario["steps"].append({"title": f"Step {i}", "description": "Something happens at the quay that needs a decision within ten minutes."})
        i += 1
    return scenario


def pieces(text: str) -> list[str]:
    return [text[i:i + PIECE] for i in range(0, len(text), PIECE)]


def time_to_scenario(text: str, scenario: dict, message: str) -> tuple[float, int]:
    """Seconds from the request to the `scenario` frame, and the number of scenario_patch frames."""
    with FakeUpstream() as fake:
        fake.push(Plan(tokens=pieces(text), interval_ms=PACE_MS))
        env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-bench", "OPENAI_MODEL": "bench", "UPSTREAM_MAX_RETRIES": "0",
               "MAX_OUTPUT_TOKENS": "100000"}
        with LiveApp(env) as live:
            started = time.monotonic()
            body = {"message": message, "mode": "modify", "scenario": scenario}
            with httpx.stream("POST", live.url + STREAM_PATH, json=body, timeout=600) as response:
                patches = 0
                for at, kind, _ in iter_frames(response):
                    patches += kind == "scenario_patch"
                    if kind == "scenario":
                        return at - started, patches
                    if kind == "error":
                        raise SystemExit(f"the app answered an error: {_}")
    raise SystemExit("no scenario frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=int, default=40_000, help="size of the scenario (indented JSON)")
    parser.add_argument("--time-rewrite", action="store_true", help="also time the rewrite at 50 tokens/s (minutes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    scenario = scenario_of(args.bytes)
    message = "Rename it to Port closure at night"
    patch_answer = compose("modify", message, scenario, [])
    renamed = dict(scenario, title="Port closure at night")
    rewrite_answer = "Renamed the scenario; everything else is as before.\n```scenario\n" + json.dumps(renamed, indent=2) + "\n```\n"
    assert "```patch" in patch_answer, patch_answer[:200]

    rows = {}
    for name, text in (("patch", patch_answer), ("rewrite", rewrite_answer)):
        rows[name] = {"bytes": len(text.encode()), "offline_tokens": len(_OFFLINE_TOKEN.findall(text)), "deltas_of_4_bytes": len(pieces(text))}
    patch_seconds, patch_frames = time_to_scenario(patch_answer, scenario, message)
    rows["patch"]["seconds_to_scenario_at_50_tps"] = round(patch_seconds, 2)
    rows["patch"]["scenario_patch_frames"] = patch_frames
    if args.time_rewrite:
        rows["rewrite"]["seconds_to_scenario_at_50_tps"] = round(time_to_scenario(rewrite_answer, scenario, message)[0], 2)
    else:
        rows["rewrite"]["seconds_to_scenario_at_50_tps"] = round(rows["rewrite"]["deltas_of_4_bytes"] * PACE_MS / 1000, 1)
        rows["rewrite"]["computed"] = True
    ratio = rows["rewrite"]["deltas_of_4_bytes"] / rows["patch"]["deltas_of_4_bytes"]
    result = {"scenario_bytes": len(json.dumps(scenario, indent=2)), "rows": rows, "fewer_output_tokens": round(ratio, 1)}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"scenario: {result['scenario_bytes']} bytes; one-field rename")
    print(f"{'answer':8} {'bytes':>8} {'offline tokens':>15} {'4-byte deltas':>14} {'s to scenario @50 tok/s':>24}")
    for name, row in rows.items():
        seconds = f"{row['seconds_to_scenario_at_50_tps']}" + (" (computed)" if row.get("computed") else "")
        print(f"{name:8} {row['bytes']:>8} {row['offline_tokens']:>15} {row['deltas_of_4_bytes']:>14} {seconds:>24}")
    print(f"patch: {rows['patch']['scenario_patch_frames']} scenario_patch frame(s); {ratio:.0f}x fewer output tokens than the rewrite")


if __name__ == "__main__":
    main()
