"""Reading a JSON request body within a byte limit, before the whole body is in memory."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from web.errors import ApiError

# text/plain is accepted because fetch() sends a string body without a Content-Type
# header as text/plain, and existing front-end code does exactly that.
_JSON_TYPES = ("application/json", "text/plain", "")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request, max_bytes: int) -> Any:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _JSON_TYPES and not media.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"Send the body as JSON (application/json or text/plain), not {media}.")
    too_large = ApiError(413, "body_too_large", f"The body is larger than {max_bytes} bytes.", {"connection": "close"})
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large  # stop reading: the rest never reaches memory
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_encoding", f"The body is not valid UTF-8 (byte {exc.start}).") from None
    if not text.strip():
        raise ApiError(400, "invalid_json", "The body is empty; send a JSON object with at least a 'message'.")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc}.") from None
