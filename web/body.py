"""Reading a JSON request body within a byte limit and a deadline, before the whole body is in memory."""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from starlette.requests import ClientDisconnect, Request

from agent.scenario import has_lone_surrogate
from web.errors import ApiError

# text/plain is accepted because fetch() sends a string body without a Content-Type
# header as text/plain, and existing front-end code does exactly that.
_JSON_TYPES = ("application/json", "text/plain", "")


# A \u escape of a UTF-16 surrogate. Paired ones decode to one character; a lone one
# decodes to a str that cannot be encoded as UTF-8 again (prompt, log line, SSE frame).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


async def read_json(request: Request, max_bytes: int, timeout: float) -> Any:
    """The body as JSON, or ApiError: 415, 413 (past `max_bytes`), 408 `body_timeout` (not all
    there within `timeout` seconds: a client trickling its body cannot hold a connection, or
    the app's attention, for longer), 400 `client_disconnected` (the client left mid-body: the
    answer is never read, but the request ends as an ordinary error, in one log line), 400
    `invalid_json` / `invalid_encoding`."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _JSON_TYPES and not media.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"Send the body as JSON (application/json or text/plain), not {media[:100]}.")
    too_large = ApiError(413, "body_too_large", f"The body is larger than {max_bytes} bytes.", {"connection": "close"})
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise too_large  # stop reading: the rest never reaches memory
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, "body_timeout", f"The body did not arrive within {timeout:g} s.", {"connection": "close"}) from None
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "The client closed the connection before the whole body arrived.", {"connection": "close"}) from None
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_encoding", f"The body is not valid UTF-8 (byte {exc.start}).") from None
    if not text.strip():
        raise ApiError(400, "invalid_json", "The body is empty; send a JSON object with at least a 'message'.")
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.") from None
    except RecursionError:
        raise ApiError(400, "invalid_json", "The body is not valid JSON: it is nested too deeply.") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc}.") from None
    if _SURROGATE_ESCAPE.search(text) and has_lone_surrogate(value):
        raise ApiError(400, "invalid_encoding", "The body holds an unpaired UTF-16 surrogate escape (\\uD800-\\uDFFF), which is not a Unicode character.")
    return value
