"""TOKEN_BUDGET_PER_DAY: real-model tokens per UTC day; once spent, 429 budget_exhausted without calling the model."""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import time

import httpx
import pytest

from agent.config import Settings
from tests.conftest import upstream_env
from tests.support.harness import wait_until
from tests.support.servers import BUFFERED_PATH, STREAM_PATH, FakeUpstream, LiveApp, Plan, iter_frames, parse_frames
from web.budget import TokenBudget

BODY = {"message": "hello", "mode": "chat"}
# The fake upstream's usage: prompt_tokens 7, completion_tokens = the plan's token count.


def seconds_to_utc_midnight() -> float:
    now = dt.datetime.now(dt.timezone.utc)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    return (midnight - now).total_seconds()


def test_budget_refuses_the_request_after_the_one_that_used_it_up() -> None:
    with FakeUpstream() as fake:
        with LiveApp(upstream_env(fake, TOKEN_BUDGET_PER_DAY="20")) as live:
            assert live.health()["budget"]["used"] == 0
            fake.push(Plan(tokens=["a", "b", "c", "d", "e"]))  # 7 + 5 = 12 tokens: 8 left
            first = httpx.post(live.url + STREAM_PATH, json=BODY, timeout=10)
            assert first.status_code == 200 and parse_frames(first.content)[-1][0] == "done"
            budget = live.health()["budget"]
            assert (budget["limit"], budget["used"], budget["remaining"]) == (20, 12, 8)
            fake.push(Plan(tokens=["a", "b", "c", "d", "e"]))  # 12 more: 24 of 20, spent
            second = httpx.post(live.url + BUFFERED_PATH, json=BODY, timeout=10)
            assert second.status_code == 200
            assert len(fake.requests) == 2

            expected_wait = seconds_to_utc_midnight()
            for path in (STREAM_PATH, BUFFERED_PATH):
                refused = httpx.post(live.url + path, json=BODY, timeout=10)
                assert refused.status_code == 429, refused.text
                error = refused.json()["error"]
                assert error["code"] == "budget_exhausted"
                assert "budget" in error["message"].lower()
                retry_after = int(refused.headers["retry-after"])
                assert 1 <= retry_after <= 86400
                assert abs(retry_after - expected_wait) <= 5, (retry_after, expected_wait)
            assert len(fake.requests) == 2  # the model was not called

            budget = live.health()["budget"]
            tomorrow = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)).date() + dt.timedelta(days=1)
            assert budget == {"limit": 20, "used": 24, "remaining": 0, "resets_at": f"{tomorrow.isoformat()}T00:00:00Z"}


def test_streams_already_running_finish_when_the_budget_runs_out() -> None:
    slow = Plan(tokens=[f"t{i} " for i in range(30)], interval_ms=50)
    with FakeUpstream() as fake:
        fake.selector = lambda body: slow if "slow please" in json.dumps(body) else None
        with LiveApp(upstream_env(fake, TOKEN_BUDGET_PER_DAY="10")) as live:
            result: dict = {}

            def read_slow() -> None:
                response = httpx.post(live.url + STREAM_PATH, json={"message": "slow please", "mode": "chat"}, timeout=20)
                result["frames"] = parse_frames(response.content)

            reader = threading.Thread(target=read_slow)
            reader.start()
            assert wait_until(lambda: fake.open_streams == 1, 10)
            # A quick answer spends the whole budget (7 + 5 tokens) while the slow one runs.
            assert httpx.post(live.url + STREAM_PATH, json=BODY, timeout=10).status_code == 200
            assert wait_until(lambda: live.health()["budget"]["remaining"] == 0, 5)
            assert httpx.post(live.url + STREAM_PATH, json=BODY, timeout=10).status_code == 429
            reader.join(20)
            assert live.health()["budget"]["used"] == 12 + 37  # the slow one counted when it ended
    kinds = [kind for kind, _ in result["frames"] if kind != "comment"]
    assert kinds[-1] == "done" and "error" not in kinds
    assert sum(1 for kind in kinds if kind == "chat") == 30


def test_offline_answers_do_not_count() -> None:
    with LiveApp({"TOKEN_BUDGET_PER_DAY": "1"}) as live:
        for _ in range(3):
            assert httpx.post(live.url + STREAM_PATH, json=BODY, timeout=10).status_code == 200
        assert live.health()["budget"]["used"] == 0


def test_no_budget_by_default(fake_upstream: FakeUpstream) -> None:
    with LiveApp(upstream_env(fake_upstream)) as live:
        assert "budget" not in live.health()
        assert live.service.budget is None
    assert Settings.from_env({}).token_budget_per_day == 0


def test_budget_setting_must_be_positive() -> None:
    with pytest.raises(ValueError):
        TokenBudget(-5)
    with pytest.raises(ValueError):
        Settings.from_env({"TOKEN_BUDGET_PER_DAY": "ten"})


class Clock:
    def __init__(self, iso: str) -> None:
        self.now = dt.datetime.fromisoformat(iso).timestamp()

    def __call__(self) -> float:
        return self.now


def test_budget_resets_at_utc_midnight() -> None:
    clock = Clock("2026-03-01T23:59:30+00:00")
    budget = TokenBudget(100, clock=clock)
    assert budget.retry_after() == 0
    budget.spend(60)
    assert budget.retry_after() == 0
    budget.spend(40)
    assert budget.retry_after() == 30  # until 00:00 UTC
    assert budget.snapshot() == {"limit": 100, "used": 100, "remaining": 0, "resets_at": "2026-03-02T00:00:00Z"}
    clock.now += 29.5
    assert budget.retry_after() == 1  # never 0 while spent
    clock.now += 1
    assert budget.retry_after() == 0
    assert budget.snapshot() == {"limit": 100, "used": 0, "remaining": 100, "resets_at": "2026-03-03T00:00:00Z"}


def test_budget_day_is_utc_whatever_the_local_zone() -> None:
    # 23:30 in New York on 1 March is 04:30 UTC on 2 March: the UTC day decides.
    clock = Clock("2026-03-01T23:30:00-05:00")
    budget = TokenBudget(1, clock=clock)
    budget.spend(1)
    assert budget.snapshot()["resets_at"] == "2026-03-03T00:00:00Z"
    assert budget.retry_after() == math.ceil(19.5 * 3600)


def test_negative_and_zero_spends_are_ignored() -> None:
    budget = TokenBudget(10, clock=Clock("2026-03-01T12:00:00+00:00"))
    budget.spend(0)
    budget.spend(-50)
    assert budget.used == 0


def test_check_is_cheap() -> None:
    budget = TokenBudget(10**9)
    started = time.perf_counter()
    for _ in range(10_000):
        budget.retry_after()
    assert time.perf_counter() - started < 0.5


def test_answers_without_usage_count_an_estimate() -> None:
    with FakeUpstream(Plan(tokens=["a", "b", "c", "d", "e"], usage=False)) as fake:
        with LiveApp(upstream_env(fake, TOKEN_BUDGET_PER_DAY="100000")) as live:
            assert httpx.post(live.url + STREAM_PATH, json=BODY, timeout=10).status_code == 200
            used = live.health()["budget"]["used"]
    assert used >= 5 + 1  # the 5 answer tokens and at least some of the prompt


def test_a_client_leaving_early_still_spends() -> None:
    """Leaving before the end must not be a way around the budget: what was sent is counted."""
    with FakeUpstream(Plan(tokens=["tick "] * 300, interval_ms=10)) as fake:
        with LiveApp(upstream_env(fake, TOKEN_BUDGET_PER_DAY="100000")) as live:
            received = 0
            with httpx.Client(timeout=10) as client:
                with client.stream("POST", live.url + STREAM_PATH, json=BODY) as response:
                    for _, kind, _ in iter_frames(response):
                        received += kind == "chat"
                        if received >= 20:
                            break
            assert wait_until(lambda: live.service.active_streams == 0, 5)
            used = live.health()["budget"]["used"]
    assert used >= 20, used
