"""The model side: backends behind agent/model.py's `Model` interface.

    openai_compat   the request through the openai SDK; provider quirks (token-limit
                    parameter, reasoning fields, inline <think>)
    errors          openai/httpx failures -> the agent's typed errors; what the log records
    transport       the HTTP/1.1 connection: asyncio.Protocol + h11 framing, idle timer, pool
    sse, decode     upstream bytes -> lines -> events -> deltas, every buffer bounded
    offline/        the built-in offline model, its templates as data

`agent/` never imports this package; `app.py` picks a backend and hands it to each Run.
"""
