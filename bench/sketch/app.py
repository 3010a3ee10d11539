"""The issue's reference "plain Starlette build reading the SDK's raw stream", for comparison.

    python3 bench/run.py --app-dir bench/sketch --no-readme

About 40 lines, as the performance issue describes it: uvicorn (uvloop, httptools), Starlette's
StreamingResponse, the openai SDK's streaming response read line by line. No agent, splitter,
limits, disconnect watch or error handling. Not part of the app; only the benchmark uses it.
"""
import json
import os

from openai import AsyncOpenAI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

client = AsyncOpenAI()
MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")


async def stream(request: Request) -> StreamingResponse:
    body = await request.json()

    async def frames():
        async with client.chat.completions.with_streaming_response.create(
            model=MODEL, messages=[{"role": "user", "content": body["message"]}], stream=True
        ) as response:
            async for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                content = choices[0].get("delta", {}).get("content")
                if content:
                    event = json.dumps({"type": "chat", "content": content})
                    yield f"event: chat\ndata: {event}\n\n"
        yield 'event: done\ndata: {"type": "done"}\n\n'

    return StreamingResponse(frames(), media_type="text/event-stream")


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[
    Route("/api/agent/scenario/stream", stream, methods=["POST"]),
    Route("/api/agent/scenario/stream/health", health),
])
