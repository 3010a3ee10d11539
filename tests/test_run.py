"""agent/run.py without a server: a scripted model, the events out, the machine's last state."""

from __future__ import annotations

import asyncio

from agent.model import Finish
from agent.request import AgentRequest
from agent.run import Run


class ScriptedModel:
    provider, model = "scripted", "scripted-1"

    def __init__(self, *items, fail: Exception | None = None) -> None:
        self.items = items
        self.fail = fail
        self.closed = False

    async def stream(self, prompt, max_tokens):
        try:
            for item in self.items:
                await asyncio.sleep(0)
                yield item
            if self.fail:
                raise self.fail
        finally:
            self.closed = True


def run_all(model, mode="chat", scenario=None) -> tuple[list[dict], Run]:
    run = Run(AgentRequest("hi", scenario, (), mode), model, "req-1", 100)

    async def collect():
        return [event.to_dict() async for event in run.events()]

    return asyncio.run(collect()), run


def test_chat_deltas_in_order_then_done():
    model = ScriptedModel("a", "b", Finish("stop", {"total_tokens": 2}))
    events, run = run_all(model)
    assert [e["type"] for e in events] == ["start", "chat", "chat", "done"]
    assert [e["content"] for e in events[1:3]] == ["a", "b"]
    assert events[-1]["usage"] == {"total_tokens": 2} and events[-1]["finish_reason"] == "stop"
    assert run.machine.state == "done" and model.closed
    assert [event for _, event, _, _ in run.machine.trace] == ["route", "open", "finish", "complete"]


def test_a_model_stream_without_finish_is_an_interrupted_error():
    events, run = run_all(ScriptedModel("a"))
    assert [e["type"] for e in events] == ["start", "chat", "error", "done"]
    assert events[2]["code"] == "upstream_interrupted"
    assert run.machine.state == "failed"


def test_an_unexpected_exception_is_an_internal_error_without_details():
    events, run = run_all(ScriptedModel("a", fail=ZeroDivisionError("secret detail")))
    error = events[-2]
    assert error["code"] == "internal" and "secret" not in error["message"]
    assert events[-1]["type"] == "done" and run.machine.state == "failed"


def test_closing_the_run_mid_stream_closes_the_model_and_records_cancel():
    model = ScriptedModel(*"abcdef", Finish("stop", None))
    run = Run(AgentRequest("hi", None, (), "chat"), model, "req-2", 100)

    async def take_two_then_leave():
        events = run.events()
        seen = [(await anext(events)).to_dict(), (await anext(events)).to_dict()]
        await events.aclose()
        return seen

    seen = asyncio.run(take_two_then_leave())
    assert [e["type"] for e in seen] == ["start", "chat"]
    assert model.closed and run.machine.state == "cancelled"


def test_a_reader_sends_each_frame_as_its_own_body_message_in_order_then_ends_the_body():
    """web/stream.py: the response head, then one body message per frame (ids included), then the end."""
    from agent.config import Settings
    from runs.registry import Runs
    from web.stream import EventStreamWriter, Policy, ReaderResponse

    model = ScriptedModel("a", "b", Finish("stop", None))
    sent: list[dict] = []
    live = None

    async def send(message):
        sent.append(message)

    async def receive():
        await asyncio.sleep(60)  # the client never leaves
        return {"type": "http.disconnect"}

    async def detach(outcome):
        live.detach()

    async def serve():
        nonlocal live
        runs = Runs(Settings(run_detached_grace_seconds=0))
        live = runs.open(Run(AgentRequest("hi", None, (), "chat"), model, "r" * 32, 100), "r" * 32, joinable=True, on_end=lambda live: None)
        live.attach()
        live.start()
        policy = Policy(send_timeout=5, grace=1, shutdown=asyncio.Event(), heartbeat=15)
        await ReaderResponse(lambda deliver: live.log.read(0, deliver), EventStreamWriter(), policy, detach)({"type": "http"}, receive, send)

    asyncio.run(serve())
    assert sent[0]["type"] == "http.response.start"
    heads = [m["body"].split(b"\n")[-4] for m in sent[1:-1]]
    assert heads == [b"event: start", b"event: chat", b"event: chat", b"event: done"]
    assert [m["body"].split(b"\n")[0 if i else 1] for i, m in enumerate(sent[1:-1])] == [b"id: %s-%d" % (b"r" * 32, n) for n in range(1, 5)]
    assert all(m["more_body"] for m in sent[1:-1])
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
