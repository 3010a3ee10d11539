"""TOKEN_BUDGET_PER_DAY: a cap on real-model tokens per UTC day, held as reservations.

A run reserves its prompt estimate plus MAX_OUTPUT_TOKENS when it is admitted, and settles
when it ends (the server's usage, else the estimate plus what was streamed). A reservation
that does not fit is refused with 429 budget_exhausted, without calling the model. The
parallel and early-disconnect bars are in tests/test_budget_cap.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import threading
import time

import httpx
import pytest

from agent.config import Settings
from agent.prompts import build_prompt, estimate_tokens
from tests.conftest import upstream_env
from tests.support.harness import wait_until
from tests.support.servers import BUFFERED_PATH, STREAM_PATH, FakeUpstream, LiveApp, Plan, iter_frames, parse_frames
from web import budget as budget_module
from web.budget import TokenBudget

BODY = {"message": "hello", "mode": "chat"}
# The fake upstream's usage: prompt_tokens 7, completion_tokens = the plan's token count.
MAX_OUTPUT = 50


def prompt_estimate(body: dict) -> int:
    """What the app reserves for the prompt (agent.prompts.estimate_tokens of the chat prompt)."""
    return estimate_tokens(build_prompt(body["mode"], body["message"], body.get("scenario"), tuple(body.get("history", ()))))


RESERVATION = prompt_estimate(BODY) + MAX_OUTPUT


def seconds_to_utc_midnight() -> float:
    now = dt.datetime.now(dt.timezone.utc)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    return (midnight - now).total_seconds()


def run(coro):
    return asyncio.run(coro)


# -- over a real socket ------------------------------------------------------------------------------


def test_a_reservation_that_does_not_fit_is_refused_and_the_model_is_not_called() -> None:
    # Room for one reservation plus 40 tokens: the first run fits, is charged its usage (7 + 40),
    # and then the next reservation no longer fits.
    limit = RESERVATION + 40
    with FakeUpstream() as fake:
        env = upstream_env(fake, TOKEN_BUDGET_PER_DAY=str(limit), MAX_OUTPUT_TOKENS=str(MAX_OUTPUT))
        with LiveApp(env) as live:
            assert live.health()["budget"]["used"] == 0
            fake.push(Plan(tokens=["a "] * 40))
            first = httpx.post(live.url + STREAM_PATH, json=BODY, timeout=10)
            assert first.status_code == 200 and parse_frames(first.content)[-1][0] == "done"
            assert wait_until(lambda: live.health()["budget"]["reserved"] == 0, 5)
            budget = live.health()["budget"]
            # Charged the server's usage, not the reservation: the rest came back.
            assert (budget["limit"], budget["used"], budget["reserved"], budget["remaining"]) == (limit, 47, 0, limit - 47)

            expected_wait = seconds_to_utc_midnight()
            for path in (STREAM_PATH, BUFFERED_PATH):
                refused = httpx.post(live.url + path, json=BODY, timeout=10)
                assert refused.status_code == 429, refused.text
                error = refused.json()["error"]
                assert error["code"] == "budget_exhausted"
                assert "budget" in error["message"].lower()
                retry_after = int(refused.headers["retry-after"])
                assert abs(retry_after - expected_wait) <= 5, (retry_after, expected_wait)
            assert len(fake.requests) == 1  # the model was not called again
            budget = live.health()["budget"]
            tomorrow = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)).date() + dt.timedelta(days=1)
            assert budget == {"limit": limit, "used": 47, "reserved": 0, "remaining": limit - 47, "resets_at": f"{tomorrow.isoformat()}T00:00:00Z"}


def test_a_running_stream_holds_its_reservation_until_it_ends() -> None:
    """Two reservations do not fit: while the slow run is open the second request is refused
    with a short Retry-After (the reservation comes back soon), and admitted after it ends."""
    slow = Plan(tokens=[f"t{i} " for i in range(30)], interval_ms=50)
    with FakeUpstream() as fake:
        fake.selector = lambda body: slow if "slow please" in json.dumps(body) else None
        env = upstream_env(fake, TOKEN_BUDGET_PER_DAY=str(2 * RESERVATION - 1), MAX_OUTPUT_TOKENS=str(MAX_OUTPUT))
        with LiveApp(env) as live:
            result: dict = {}

            def read_slow() -> None:
                response = httpx.post(live.url + STREAM_PATH, json={"message": "slow please", "mode": "chat"}, timeout=20)
                result["frames"] = parse_frames(response.content)

            reader = threading.Thread(target=read_slow)
            reader.start()
            assert wait_until(lambda: fake.open_streams == 1, 10)
            held = live.health()["budget"]
            assert held["reserved"] >= MAX_OUTPUT and held["used"] == 0
            refused = httpx.post(live.url + STREAM_PATH, json=BODY, timeout=10)
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "budget_exhausted"
            assert int(refused.headers["retry-after"]) == budget_module.RETRY_WHILE_RESERVED_SECONDS
            reader.join(20)
            assert wait_until(lambda: live.health()["budget"]["reserved"] == 0, 5)
            assert live.health()["budget"]["used"] == 7 + 30
            assert httpx.post(live.url + STREAM_PATH, json=BODY, timeout=10).status_code == 200
    kinds = [kind for kind, _ in result["frames"] if kind != "comment"]
    assert kinds[-1] == "done" and "error" not in kinds
    assert sum(1 for kind in kinds if kind == "chat") == 30


def test_offline_answers_do_not_count() -> None:
    with LiveApp({"TOKEN_BUDGET_PER_DAY": "1"}) as live:
        for _ in range(3):
            assert httpx.post(live.url + STREAM_PATH, json=BODY, timeout=10).status_code == 200
        budget = live.health()["budget"]
        assert (budget["used"], budget["reserved"]) == (0, 0)


def test_no_budget_by_default(fake_upstream: FakeUpstream) -> None:
    with LiveApp(upstream_env(fake_upstream)) as live:
        assert "budget" not in live.health()
        assert live.service.budget is None
    assert Settings.from_env({}).token_budget_per_day == 0


def test_answers_without_usage_are_charged_the_prompt_estimate_and_the_deltas() -> None:
    with FakeUpstream(Plan(tokens=["a", "b", "c", "d", "e"], usage=False)) as fake:
        with LiveApp(upstream_env(fake, TOKEN_BUDGET_PER_DAY="100000", MAX_OUTPUT_TOKENS=str(MAX_OUTPUT))) as live:
            assert httpx.post(live.url + STREAM_PATH, json=BODY, timeout=10).status_code == 200
            assert wait_until(lambda: live.health()["budget"]["reserved"] == 0, 5)
            used = live.health()["budget"]["used"]
    assert used >= prompt_estimate(BODY) + 5


def test_a_client_leaving_early_is_charged_its_prompt_too() -> None:
    """Leaving before the end must not be a way around the budget: the prompt the server read
    is charged, and what was streamed."""
    with FakeUpstream(Plan(tokens=["tick "] * 300, interval_ms=10)) as fake:
        env = upstream_env(fake, TOKEN_BUDGET_PER_DAY="100000", RUN_DETACHED_GRACE_SECONDS="0")
        with LiveApp(env) as live:
            received = 0
            with httpx.Client(timeout=10) as client:
                with client.stream("POST", live.url + STREAM_PATH, json=BODY) as response:
                    for _, kind, _ in iter_frames(response):
                        received += kind == "chat"
                        if received >= 20:
                            break
            assert wait_until(lambda: live.health()["budget"]["reserved"] == 0, 10)
            used = live.health()["budget"]["used"]
    assert used >= prompt_estimate(BODY) + 20, used


# -- the class ---------------------------------------------------------------------------------------


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


def test_reservations_count_until_settled_and_settling_frees_the_rest() -> None:
    async def scenario() -> None:
        budget = TokenBudget(1000, clock=Clock("2026-03-01T12:00:00+00:00"))
        assert await budget.reserve("a", 600) == 0
        assert (await budget.snapshot())["remaining"] == 400
        # 600 held + 500 > 1000: refused, and soon (the holder's reservation will come back).
        assert await budget.reserve("b", 500) == budget_module.RETRY_WHILE_RESERVED_SECONDS
        assert await budget.reserve("b", 400) == 0  # exactly fits
        snap = await budget.snapshot()
        assert (snap["used"], snap["reserved"], snap["remaining"]) == (0, 1000, 0)
        await budget.settle("a", 600, 150)  # used 150 of its 600
        snap = await budget.snapshot()
        assert (snap["used"], snap["reserved"], snap["remaining"]) == (150, 400, 450)
        assert await budget.reserve("c", 450) == 0
        await budget.settle("b", 400, 400)
        await budget.settle("c", 450, 0)  # refused upstream: nothing charged, all freed
        assert await budget.snapshot() == {"limit": 1000, "used": 550, "reserved": 0, "remaining": 450, "resets_at": "2026-03-02T00:00:00Z"}

    run(scenario())


def test_settle_frees_what_was_held_whatever_the_caller_says() -> None:
    async def scenario() -> None:
        budget = TokenBudget(1000, clock=Clock("2026-03-01T12:00:00+00:00"))
        assert await budget.reserve("a", 300) == 0
        assert await budget.reserve("a", 100) == 0  # a second reservation under the same run adds up
        assert budget.reserved == 400
        await budget.settle("a", 0, 50)  # the whole 400 is freed
        assert (budget.used, budget.reserved) == (50, 0)
        # Settling again (or a repair round's answer, never reserved) only charges.
        await budget.settle("a", 300, 70)
        await budget.settle("never-reserved", 999, 30)
        assert (budget.used, budget.reserved) == (150, 0)
        # Used above the reservation (a repair round) is charged in full.
        assert await budget.reserve("b", 100) == 0
        await budget.settle("b", 100, 400)
        assert (budget.used, budget.reserved) == (550, 0)

    run(scenario())


def test_a_reservation_above_the_limit_never_fits() -> None:
    async def scenario() -> None:
        clock = Clock("2026-03-01T23:00:00+00:00")
        budget = TokenBudget(100, clock=clock)
        assert await budget.reserve("big", 101) == 3600  # until midnight; the caller can see 101 > limit
        assert budget.reserved == 0
        assert await budget.reserve("ok", 100) == 0

    run(scenario())


def test_parallel_reservations_never_exceed_the_limit() -> None:
    """Fifty runs reserving at once: exactly as many as fit are admitted."""

    async def scenario() -> list[int]:
        budget = TokenBudget(20_000)
        waits = await asyncio.gather(*(budget.reserve(f"run-{i}", 3_000) for i in range(50)))
        assert budget.reserved == 6 * 3_000
        return waits

    waits = run(scenario())
    assert waits.count(0) == 6
    assert all(w == budget_module.RETRY_WHILE_RESERVED_SECONDS for w in waits if w)


def test_budget_resets_at_utc_midnight() -> None:
    async def scenario() -> None:
        clock = Clock("2026-03-01T23:59:30+00:00")
        budget = TokenBudget(100, clock=clock)
        assert await budget.reserve("a", 60) == 0
        await budget.settle("a", 60, 60)
        assert await budget.reserve("b", 40) == 0
        await budget.settle("b", 40, 40)
        assert await budget.reserve("c", 1) == 30  # until 00:00 UTC
        assert await budget.snapshot() == {"limit": 100, "used": 100, "reserved": 0, "remaining": 0, "resets_at": "2026-03-02T00:00:00Z"}
        clock.now += 29.5
        assert await budget.reserve("c", 1) == 1  # never 0 while spent
        clock.now += 1
        assert await budget.reserve("c", 1) == 0
        assert await budget.snapshot() == {"limit": 100, "used": 0, "reserved": 1, "remaining": 99, "resets_at": "2026-03-03T00:00:00Z"}

    run(scenario())


def test_a_reservation_held_over_midnight_is_charged_to_the_day_it_ends() -> None:
    async def scenario() -> None:
        clock = Clock("2026-03-01T23:59:50+00:00")
        budget = TokenBudget(100, clock=clock)
        assert await budget.reserve("late", 80) == 0
        clock.now += 20  # 00:00:10 on the next day: the day's count starts again, the run still holds 80
        snap = await budget.snapshot()
        assert (snap["used"], snap["reserved"], snap["remaining"]) == (0, 80, 20)
        assert await budget.reserve("early", 30) == budget_module.RETRY_WHILE_RESERVED_SECONDS
        await budget.settle("late", 80, 50)
        assert (budget.used, budget.reserved) == (50, 0)

    run(scenario())


def test_budget_day_is_utc_whatever_the_local_zone() -> None:
    async def scenario() -> None:
        # 23:30 in New York on 1 March is 04:30 UTC on 2 March: the UTC day decides.
        budget = TokenBudget(1, clock=Clock("2026-03-01T23:30:00-05:00"))
        await budget.settle("x", 0, 1)
        assert (await budget.snapshot())["resets_at"] == "2026-03-03T00:00:00Z"
        assert await budget.reserve("y", 1) == math.ceil(19.5 * 3600)

    run(scenario())


def test_negative_and_zero_counts_are_ignored() -> None:
    async def scenario() -> None:
        budget = TokenBudget(10, clock=Clock("2026-03-01T12:00:00+00:00"))
        await budget.settle("a", 0, 0)
        await budget.settle("b", 0, -50)
        assert await budget.reserve("c", -5) == 0
        assert (budget.used, budget.reserved) == (0, 0)

    run(scenario())


def test_reserve_and_settle_are_cheap() -> None:
    async def scenario() -> float:
        budget = TokenBudget(10**12)
        started = time.perf_counter()
        for index in range(10_000):
            await budget.reserve(str(index), 1000)
            await budget.settle(str(index), 1000, 10)
        return time.perf_counter() - started

    assert run(scenario()) < 0.5
