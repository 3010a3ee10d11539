"""The offline model as an OpenAI-compatible endpoint (upstream/offline/server.py), and the demo
reaching it through the same client, transport and decoders as a real model.

Over real sockets on 127.0.0.1: the bytes are checked against the wire shape real servers send
(one `data:` event per HTTP chunk, `[DONE]` last) and read back with the app's own decoders.
The last two tests run the whole app (imported there, so the rest needs only upstream/).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import replace
from typing import Any

import h11
import httpx
import pytest

from agent.config import Settings
from agent.intents import INTENTS
from agent.model import Finish
from agent.prompts import build_prompt, build_repair_prompt
from tests.conftest import SAMPLES
from upstream.decode import ChatStreamDecoder
from upstream.offline.compose import compose
from upstream.offline.server import MODEL, TOKEN, OfflineChatServer, offline_server, read_messages, serve_loopback
from upstream.openai_compat import OpenAICompatible
from upstream import decode, sse, transport
from upstream.sse import EventDataDecoder
from upstream.transport import make_http_client


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{name}.json").read_text())


HOSTILE = {
    "title": "Tags </scenario> inside <scenario> & more",
    "summary": "A line\n</scenario>\nthat looks like the end, and {\"braces\": [1, 2]}.",
    "roles": [{"name": "<b>Lead</b>", "description": "Says \"\\u003c\" aloud."}],
    "steps": [{"title": "Step\u2028one", "description": "ünïcödé ✓"}],
}
HISTORY = ({"role": "user", "content": "what is this about?"}, {"role": "assistant", "content": "A hospital under attack."})


# -- reading a request's messages back -----------------------------------------------------------


@pytest.mark.parametrize("intent", sorted(INTENTS))
@pytest.mark.parametrize("scenario", [None, "hospital-ransomware", "hostile"])
@pytest.mark.parametrize("history", [(), HISTORY])
def test_messages_read_back_what_build_prompt_wrote(intent: str, scenario: str | None, history: tuple) -> None:
    current = HOSTILE if scenario == "hostile" else sample(scenario) if scenario else None
    prompt = build_prompt(intent, "make the title shorter", current, history)
    turn = read_messages(json.loads(json.dumps(prompt.messages)))  # as they arrive over HTTP
    assert (turn.intent, turn.message, turn.scenario, turn.history) == (intent, prompt.message, current, list(history))
    assert compose(turn.intent, turn.message, turn.scenario, turn.history) == compose(intent, prompt.message, current, list(history))


@pytest.mark.parametrize("dump", [
    lambda s: json.dumps(s, ensure_ascii=False, indent=2),
    lambda s: json.dumps(s),
    # < > & escaped as JSON \u escapes: still the same object to json.loads
    lambda s: json.dumps(s, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"),
])
def test_the_scenario_is_read_whatever_its_layout_and_escaping(dump) -> None:
    system = INTENTS["modify"].system_prompt + "\n\n<scenario>\n" + dump(HOSTILE) + "\n</scenario>\n\nList items and their pointers:\n/roles/0: x"
    turn = read_messages([{"role": "system", "content": system}, {"role": "user", "content": "hi"}])
    assert turn.intent == "modify" and turn.scenario == HOSTILE


def test_other_clients_are_answered_as_chat() -> None:
    assert read_messages([{"role": "user", "content": "hello"}]) == read_messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}])
    turn = read_messages([{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}, {"role": "user", "content": [{"type": "text", "text": "th"}, {"type": "text", "text": "ree"}]}])
    assert (turn.intent, turn.message, turn.scenario) == ("chat", "three", None)
    assert turn.history == [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}]


def test_a_repair_round_reads_the_correction_as_the_message() -> None:
    """As a real model reads it: the failed answer is history, the correction the last user turn."""
    prompt = build_repair_prompt(build_prompt("modify", "rename it", sample("hospital-ransomware"), ()), "Done.\n```patch\n[]\n```", "a bad path")
    turn = read_messages(prompt.messages)
    assert turn.intent == "modify" and turn.scenario == prompt.scenario
    assert turn.message == prompt.messages[-1]["content"] and "a bad path" in turn.message
    assert turn.history == [{"role": "user", "content": "rename it"}, {"role": "assistant", "content": "Done.\n```patch\n[]\n```"}]


# -- the bytes on the wire -----------------------------------------------------------------------


async def _exchange(port: int, body: Any, *, method: str = "POST", path: str = "/v1/chat/completions") -> tuple[h11.Response, list[bytes]]:
    """One request over a raw socket; the response head and its body's HTTP chunks, as h11 reads them."""
    http = h11.Connection(h11.CLIENT)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = http.send(h11.Request(method=method, target=path, headers=[
        ("host", f"127.0.0.1:{port}"), ("content-type", "application/json"), ("content-length", str(len(content))), ("connection", "close")]))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + http.send(h11.Data(data=content)) + http.send(h11.EndOfMessage()))
    response: h11.Response | None = None
    chunks: list[bytes] = []
    current = b""
    try:
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await asyncio.wait_for(reader.read(65536), 10))
            elif isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                current += event.data
                if event.chunk_end or http.their_state is not h11.SEND_BODY:
                    chunks.append(current)
                    current = b""
            elif isinstance(event, h11.EndOfMessage):
                if current:
                    chunks.append(current)
                break
    finally:
        writer.close()
    assert response is not None
    return response, chunks


def _stream_body(messages: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": messages, "stream": True, **extra}


def _expected_tokens(prompt) -> list[str]:
    text = compose(prompt.intent, prompt.message, prompt.scenario, list(prompt.history))
    tokens = TOKEN.findall(text)
    assert "".join(tokens) == text and len(tokens) > 50
    return tokens


def test_the_wire_is_one_chunk_event_per_http_chunk_then_done() -> None:
    prompt = build_prompt("explain", "Explain this scenario", sample("hospital-ransomware"), ())
    tokens = _expected_tokens(prompt)

    async def main() -> tuple[h11.Response, list[bytes]]:
        async with offline_server(0) as url:
            assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            return await _exchange(port, _stream_body(prompt.messages, max_tokens=100_000, stream_options={"include_usage": True}))

    response, chunks = asyncio.run(main())
    headers = {name.decode(): value.decode() for name, value in response.headers}
    assert response.status_code == 200
    assert headers["content-type"].startswith("text/event-stream") and headers["transfer-encoding"] == "chunked"
    # Every HTTP chunk is exactly one event of one data line, as llama-cpp-python and OpenAI send them.
    for chunk in chunks:
        assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n") and chunk.count(b"\n") == 2, chunk
    datas = [data for chunk in chunks for data in EventDataDecoder().feed(chunk)]
    assert len(datas) == len(chunks) == len(tokens) + 4 and datas[-1] == "[DONE]"
    payloads = [json.loads(data) for data in datas[:-1]]
    for payload in payloads:
        assert payload["object"] == "chat.completion.chunk" and payload["model"] == MODEL
        assert payload["id"] == payloads[0]["id"] and payload["id"].startswith("chatcmpl-")
        assert isinstance(payload["created"], int) and abs(payload["created"] - time.time()) < 60
    first, *middle, final, usage = payloads
    assert first["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
    assert [p["choices"] for p in middle] == [[{"index": 0, "delta": {"content": t}, "finish_reason": None}] for t in tokens]
    assert final["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    prompt_tokens = sum(len(m["content"].split()) for m in prompt.messages)
    assert usage["choices"] == [] and usage["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens), "total_tokens": prompt_tokens + len(tokens)}

    # The app's own decoder, fed the HTTP chunks as they came: exactly the tokens, then the Finish.
    decoder = ChatStreamDecoder()
    items = [item for chunk in chunks for item in decoder.feed(chunk)]
    assert decoder.done and decoder.error is None
    assert items == [*tokens, Finish("stop", usage["usage"])]


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_the_token_limit_cuts_the_answer_with_finish_length(limit: str) -> None:
    prompt = build_prompt("explain", "Explain this scenario", sample("supplier-negotiation"), ())
    tokens = _expected_tokens(prompt)

    async def main() -> list[bytes]:
        async with offline_server(0) as url:
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            return (await _exchange(port, _stream_body(prompt.messages, **{limit: 7})))[1]

    decoder = ChatStreamDecoder()
    items = [item for chunk in asyncio.run(main()) for item in decoder.feed(chunk)]
    # No stream_options: no usage chunk, so the Finish carries none.
    assert items == [*tokens[:7], Finish("length", None)]


@pytest.mark.parametrize("body, status, param", [
    (_stream_body([{"role": "user", "content": "hi"}], stream=False), 400, "stream"),
    ({"messages": [{"role": "user", "content": "hi"}]}, 400, "stream"),
    (_stream_body([]), 400, "messages"),
    (_stream_body([{"role": "user", "content": "hi"}], max_tokens=0), 400, "max_tokens"),
    (b"{not json", 400, None),
    (b"x" * (4 * 1024 * 1024 + 1), 413, None),
])
def test_refusals_come_in_openais_error_shape(body: Any, status: int, param: str | None) -> None:
    async def main() -> tuple[h11.Response, list[bytes]]:
        async with offline_server(0) as url:
            return await _exchange(int(url.rsplit(":", 1)[1].split("/")[0]), body)

    response, chunks = asyncio.run(main())
    assert response.status_code == status
    error = json.loads(b"".join(chunks))["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]


def test_other_paths_and_methods_are_refused() -> None:
    async def main() -> list[int]:
        async with offline_server(0) as url:
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            return [(await _exchange(port, b"", path="/v1/models", method="GET"))[0].status_code,
                    (await _exchange(port, b"", method="GET"))[0].status_code]

    assert asyncio.run(main()) == [404, 405]


# -- through the app's own client ----------------------------------------------------------------


def test_the_apps_client_reads_it_like_a_real_server() -> None:
    """The wiring app.py uses: OpenAICompatible on the offline endpoint's URL, over the transport."""
    prompt = build_prompt("create", "Create a scenario about a flood in a small town", None, ())
    tokens = _expected_tokens(prompt)

    async def main() -> tuple[list, list]:
        async with offline_server(0) as url:
            http = make_http_client()
            try:
                model = OpenAICompatible(replace(Settings(), openai_base_url=url, openai_model=MODEL), http)
                first = [item async for item in model.stream(prompt, 2048)]
                second = [item async for item in model.stream(prompt, 5)]
            finally:
                await http.aclose()
            return first, second

    first, second = asyncio.run(main())
    prompt_tokens = sum(len(m["content"].split()) for m in prompt.messages)
    assert first == [*tokens, Finish("stop", {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens), "total_tokens": prompt_tokens + len(tokens)})]
    assert second == [*tokens[:5], Finish("length", {"prompt_tokens": prompt_tokens, "completion_tokens": 5, "total_tokens": prompt_tokens + 5})]


# -- a guest in the app's process ----------------------------------------------------------------


def test_a_client_that_leaves_ends_the_answer_at_once() -> None:
    """Mid-delay, not after the rest of the answer (about 700 tokens, 14 s at 20 ms)."""
    app = OfflineChatServer(20)
    prompt = build_prompt("explain", "Explain this scenario", sample("hospital-ransomware"), ())

    async def main() -> tuple[int, float]:
        async with serve_loopback(app) as url:
            async with httpx.AsyncClient(base_url=url) as client:
                async with client.stream("POST", "/v1/chat/completions", json=_stream_body(prompt.messages)) as response:
                    reads = 0
                    async for _ in response.aiter_raw():
                        reads += 1
                        if reads == 5:
                            break
                    assert app.streaming == 1
            left = time.monotonic()
            while app.streaming and time.monotonic() - left < 5:
                await asyncio.sleep(0.005)
            return app.streaming, time.monotonic() - left

    streaming, took = asyncio.run(main())
    assert streaming == 0 and took < 1.0, took


def test_leaving_the_context_ends_a_streaming_answer_and_frees_the_port() -> None:
    prompt = build_prompt("explain", "Explain this scenario", sample("hospital-ransomware"), ())

    async def main() -> tuple[float, bytes, int]:
        reader: asyncio.StreamReader
        async with offline_server(50) as url:
            port = int(url.rsplit(":", 1)[1].split("/")[0])
            content = json.dumps(_stream_body(prompt.messages)).encode()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(content), content))
            first = await asyncio.wait_for(reader.read(65536), 5)
            assert first.startswith(b"HTTP/1.1 200")
            leaving = time.monotonic()
        took = time.monotonic() - leaving
        rest = await asyncio.wait_for(reader.read(), 5)  # EOF: the server closed the connection
        writer.close()
        return took, first + rest, port

    took, received, port = asyncio.run(main())
    assert took < 1.0, took  # not the 35 s the answer had left
    assert b"[DONE]" not in received
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_it_takes_no_signal_handler_and_prints_nothing(capfd) -> None:
    """uvicorn's Server.serve would install SIGINT/SIGTERM handlers and log a banner: the app's
    server owns both, and app.py chains its own handlers onto uvicorn's."""
    assert threading.current_thread() is threading.main_thread()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(logging.DEBUG)
    uvicorn_loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    levels = [logger.level for logger in uvicorn_loggers]
    for logger in uvicorn_loggers:
        logger.addHandler(keep)
    seen: list[dict] = []

    def own(signum: int, frame: object) -> None:  # stands for app.py's handler
        pass

    async def main() -> list[Any]:
        previous = signal.signal(signal.SIGTERM, own)
        try:
            handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
            async with offline_server(0) as url:
                seen.append({sig: signal.getsignal(sig) for sig in handlers})
                async with httpx.AsyncClient(base_url=url) as client:
                    body = _stream_body([{"role": "user", "content": "hi"}])
                    statuses = [(await client.post("/chat/completions", json=body)).status_code,
                                (await client.get("/models")).status_code]
            seen.append({sig: signal.getsignal(sig) for sig in handlers})
            seen.append(handlers)
            return statuses
        finally:
            signal.signal(signal.SIGTERM, previous)

    try:
        statuses = asyncio.run(main())
    finally:
        for logger in uvicorn_loggers:
            logger.removeHandler(keep)
    assert statuses == [200, 404]
    inside, after, before = seen
    assert before[signal.SIGTERM] is own and inside == before and after == before
    assert [logger.level for logger in uvicorn_loggers] == levels
    assert [r.getMessage() for r in records if r.levelno >= logging.INFO] == []
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# -- the demo, with no key set --------------------------------------------------------------------


def test_with_no_key_the_demo_reads_the_model_through_the_transport_and_the_sse_decoder() -> None:
    """Counted with a trace hook in the app's server thread: the calls into upstream/transport.py,
    upstream/sse.py and upstream/decode.py, and the bytes the SSE decoder was fed, which must
    hold the very text the page got, one upstream event per chat frame."""
    from tests.support.harness import assert_well_formed, chat_text
    from tests.support.servers import STREAM_PATH, LiveApp, parse_frames

    files = {os.path.abspath(module.__file__): name for name, module in (("transport", transport), ("sse", sse), ("decode", decode))}
    calls = dict.fromkeys(files.values(), 0)
    fed: list[bytes] = []
    feed = EventDataDecoder.feed.__code__

    def trace(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "call":
            name = files.get(frame.f_code.co_filename)
            if name is not None:
                calls[name] += 1
                if frame.f_code is feed:
                    fed.append(frame.f_locals["chunk"])

    threading.setprofile(trace)  # threads started from here on: the app's server thread
    try:
        with LiveApp({"OFFLINE_TOKEN_DELAY_MS": "1"}) as live:
            assert live.settings.openai_api_key is None and live.settings.openai_base_url is None
            health = live.health()
            response = httpx.post(live.url + STREAM_PATH, json={"message": "Who are you?", "mode": "chat"}, timeout=30)
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
    assert health["provider"] == "offline", health
    frames = parse_frames(response.content)
    assert_well_formed(frames)
    assert [data["provider"] for kind, data in frames if kind == "start"] == ["offline"]
    text = chat_text(frames)
    chats = sum(1 for kind, _ in frames if kind == "chat")
    assert chats > 5 and text

    assert fed and calls["decode"] >= len(fed), (calls, len(fed))
    # Every read the SSE decoder got came out of the transport (a callback and a body step each).
    assert calls["transport"] >= 2 * len(fed), (calls, len(fed))
    decoder = ChatStreamDecoder()
    deltas = [item for chunk in fed for item in decoder.feed(chunk)]
    assert decoder.done and isinstance(deltas[-1], Finish)
    assert "".join(deltas[:-1]) == text
    assert len(deltas) - 1 == chats


def test_sigterm_with_an_offline_answer_open_exits_cleanly() -> None:
    """The app's process, no key: SIGTERM still reaches the app (the offline server took no
    handler), the open answer ends with server_shutdown, and the process exits by itself with
    one server's banner."""
    from tests.support.harness import ServerProcess, assert_well_formed, wait_until
    from tests.support.servers import STREAM_PATH, iter_frames

    with ServerProcess({"LOG_LEVEL": "info", "OFFLINE_TOKEN_DELAY_MS": "100", "SHUTDOWN_GRACE_SECONDS": "3"}) as server:
        frames: list[tuple[str, Any]] = []

        def read() -> None:
            with httpx.Client(timeout=30) as client:
                with client.stream("POST", server.url + STREAM_PATH, json={"message": "Explain this scenario", "scenario": sample("hospital-ransomware")}) as response:
                    for _, kind, data in iter_frames(response):
                        frames.append((kind, data))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert wait_until(lambda: sum(1 for kind, _ in frames if kind == "chat") >= 3, 10)
        sent = time.monotonic()
        server.terminate()
        returncode = server.wait(15)
        took = time.monotonic() - sent
        reader.join(5)
        stderr = server.stderr_text()
        stdout = server.stdout_text()
    assert returncode in (0, -signal.SIGTERM), stderr[-2000:]
    assert took < 6, took
    error = assert_well_formed(frames)
    assert error is not None and error["code"] == "server_shutdown"
    assert "Traceback" not in stderr and "Exception in ASGI application" not in stderr, stderr[-2000:]
    assert stderr.count("Started server process") <= 1 and stderr.count("Uvicorn running on") == 1, stderr
    assert stderr.count("Shutting down") <= 1, stderr
    for line in stdout.splitlines():
        assert isinstance(json.loads(line), dict), line
