"""The model server's health as seen by real traffic: nothing here ever calls the model.

    upstream = UpstreamHealth()
    upstream.observe("200", None)                    # an upstream request that went well
    upstream.observe("503", "upstream_unavailable")  # one that failed
    upstream.degraded                                # the last DEGRADED_AFTER requests all failed
    upstream.snapshot()  # {"last_success_at", "last_failure_at", "last_error_code", "consecutive_failures"}

`observe` is called once per upstream HTTP request (upstream/openai_compat.py's `observe=`
callback). A request counts as a failure when its error says the model server is not
serving (unreachable, 5xx, timeouts, cut-off or unreadable streams, rejected credentials,
rate limits). Errors about this request's content (context too long, output limit,
content filter) count as successes: the server answered. An HTTP 200 whose body closes before
its framing's end is `upstream_interrupted`, a failure, even with no byte of an answer (a
server process that died); only an empty body that ends cleanly is `context_too_long`
(llama.cpp's answer to a prompt over its context).

Health stays HTTP 200 when degraded: a platform that restarts instances whose health
check fails would restart this one without making the model server come back.
The state is this process's: each worker and instance sees only its own traffic.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable

DEGRADED_AFTER = 3

# The server answered; the request itself was the problem.
ANSWERED_CODES = frozenset({"context_too_long", "output_truncated", "content_filtered"})


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class UpstreamHealth:
    def __init__(self, degraded_after: int = DEGRADED_AFTER, clock: Callable[[], float] = time.time) -> None:
        self.degraded_after = degraded_after
        self._clock = clock
        self.last_success_at: float | None = None
        self.last_failure_at: float | None = None
        self.last_error_code: str | None = None
        self.consecutive_failures = 0

    def observe(self, status: int | str | None, error_code: str | None) -> None:
        """One upstream request's result: its HTTP status ("200", or why none came) and error code (None: success)."""
        now = self._clock()
        if error_code is None or error_code in ANSWERED_CODES:
            self.last_success_at = now
            self.consecutive_failures = 0
        else:
            self.last_failure_at = now
            self.last_error_code = error_code
            self.consecutive_failures += 1

    @property
    def degraded(self) -> bool:
        return self.consecutive_failures >= self.degraded_after

    def snapshot(self) -> dict[str, Any]:
        return {
            "last_success_at": _iso(self.last_success_at),
            "last_failure_at": _iso(self.last_failure_at),
            "last_error_code": self.last_error_code,
            "consecutive_failures": self.consecutive_failures,
        }
