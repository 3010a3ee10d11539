"""The output-token limit reaches every server (upstream/quirks.py, OpenAICompatible._open):
`max_completion_tokens` to OpenAI and Azure OpenAI, `max_tokens` elsewhere, one retry with the
other name on a 400 `unsupported_parameter`, remembered for the life of the instance.
`temperature` (SCENARIO_TEMPERATURE) goes with modify and create only, and is dropped the same
way, once, when a server refuses it."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from agent.config import Settings
from agent.errors import AgentError
from agent.intents import INTENTS
from agent.model import Finish
from agent.prompts import build_prompt
from tests.conftest import upstream_env
from tests.support.fake_upstream import FakeUpstream, Plan, unsupported_parameter
from tests.support.models import answer
from tests.support.servers import STREAM_PATH, LiveApp, parse_frames
from upstream import quirks
from upstream.openai_compat import OpenAICompatible


@pytest.mark.parametrize("base_url, expected", [
    (None, "max_completion_tokens"),
    ("https://api.openai.com/v1", "max_completion_tokens"),
    ("https://my-resource.openai.azure.com/openai/deployments/gpt-5-mini", "max_completion_tokens"),
    ("http://localhost:11434/v1", "max_tokens"),
    ("https://openrouter.ai/api/v1", "max_tokens"),
    ("http://127.0.0.1:8000/v1", "max_tokens"),
    ("https://api.openai.com.evil.example/v1", "max_tokens"),
])
def test_first_choice_by_host(base_url, expected):
    assert quirks.token_param_for(base_url) == expected


def test_the_setting_overrides_the_host():
    assert quirks.token_param_for("http://127.0.0.1/v1", "max_completion_tokens") == "max_completion_tokens"
    assert quirks.token_param_for(None, "max_tokens") == "max_tokens"


def test_openais_exact_refusal_names_max_tokens():
    body = {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}
    assert quirks.rejected_token_param(400, body, "max_tokens")
    assert not quirks.rejected_token_param(400, body, "max_completion_tokens")
    assert not quirks.rejected_token_param(401, body, "max_tokens")
    without_param = dict(body, param=None)
    assert quirks.rejected_token_param(400, without_param, "max_tokens")
    assert not quirks.rejected_token_param(400, without_param, "max_completion_tokens")


def test_other_servers_refusals():
    azure_old = {"message": "Unrecognized request argument supplied: max_completion_tokens", "type": "invalid_request_error", "param": None, "code": None}
    assert quirks.rejected_token_param(400, azure_old, "max_completion_tokens")
    fastapi = {"detail": [{"type": "extra_forbidden", "loc": ["body", "max_completion_tokens"], "msg": "Extra inputs are not permitted"}]}
    assert quirks.rejected_token_param(422, fastapi, "max_completion_tokens")
    unrelated = {"message": "model 'x' not found", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    assert not quirks.rejected_token_param(400, unrelated, "max_tokens")


def streams(fake: FakeUpstream, count: int = 1, **env: str) -> tuple[OpenAICompatible, list[tuple[list, str | None]]]:
    """`count` answers in turn from one OpenAICompatible instance: (the model, [(items, error code)])."""
    settings = Settings.from_env({"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-test", "UPSTREAM_MAX_RETRIES": "0",
                                  "OPENAI_MODEL": "gpt-5-mini", **env})

    async def main() -> tuple[OpenAICompatible, list[tuple[list, str | None]]]:
        async with httpx.AsyncClient() as client:
            model = OpenAICompatible(settings, client)
            return model, [await answer(model) for _ in range(count)]

    return asyncio.run(main())




def params(fake: FakeUpstream) -> list[str]:
    return [next(name for name in quirks.TOKEN_PARAMS if name in request) for request in fake.requests]


def test_a_server_that_refuses_max_tokens_answers_and_the_choice_is_kept():
    with FakeUpstream(default=Plan(tokens=["Hi", "!"], reject_param="max_tokens")) as fake:
        model, [(items, code), (items2, code2)] = streams(fake, 2)
    assert code is None and items[:2] == ["Hi", "!"] and isinstance(items[-1], Finish)
    assert code2 is None and items2 == items
    # One failed round trip for the instance: max_tokens, then max_completion_tokens twice.
    assert params(fake) == ["max_tokens", "max_completion_tokens", "max_completion_tokens"]
    assert all(request[name] == 64 for request, name in zip(fake.requests, params(fake)))
    assert model.token_param == "max_completion_tokens"


def test_a_server_that_refuses_max_completion_tokens_answers_too():
    with FakeUpstream(default=Plan(tokens=["Hi"], reject_param="max_completion_tokens")) as fake:
        # As for api.openai.com (the fake is on 127.0.0.1, so the setting says it).
        _, [(items, code), (items2, code2)] = streams(fake, 2, UPSTREAM_TOKEN_PARAM="max_completion_tokens")
    assert code is None and code2 is None and items[0] == "Hi" and items2[0] == "Hi"
    assert params(fake) == ["max_completion_tokens", "max_tokens", "max_tokens"]


def test_a_server_that_refuses_both_is_rejected_after_one_retry():
    with FakeUpstream() as fake:
        fake.selector = lambda request: Plan(reject_param=next(n for n in quirks.TOKEN_PARAMS if n in request))
        _, [(items, code)] = streams(fake)
    assert items == [] and code == "upstream_rejected"
    assert params(fake) == ["max_tokens", "max_completion_tokens"]  # no loop


def test_other_400s_are_not_retried():
    with FakeUpstream() as fake:
        fake.push(Plan(status=400, error={"message": "model 'x' not found", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}))
        _, [(items, code)] = streams(fake)
    assert code == "upstream_rejected" and len(fake.requests) == 1


def test_the_unsupported_parameter_body_is_openais():
    assert unsupported_parameter("max_tokens") == {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}


def test_an_invalid_setting_is_refused_at_start():
    with pytest.raises(ValueError, match="UPSTREAM_TOKEN_PARAM"):
        OpenAICompatible(Settings.from_env({"OPENAI_API_KEY": "k", "UPSTREAM_TOKEN_PARAM": "max_output_tokens"}), None)  # type: ignore[arg-type]


def test_gpt_5_mini_through_the_app_answers_and_the_second_request_makes_one_upstream_call():
    with FakeUpstream(default=Plan(tokens=["Hello", " there."], reject_param="max_tokens")) as fake:
        with LiveApp(upstream_env(fake, OPENAI_MODEL="gpt-5-mini")) as live:
            first = parse_frames(httpx.post(live.url + STREAM_PATH, json={"message": "hi", "mode": "chat"}, timeout=20).content)
            calls_after_first = len(fake.requests)
            second = parse_frames(httpx.post(live.url + STREAM_PATH, json={"message": "hi", "mode": "chat"}, timeout=20).content)
            calls_for_second = len(fake.requests) - calls_after_first
    for frames in (first, second):
        kinds = [k for k, _ in frames if k != "comment"]
        assert "error" not in kinds, frames
        assert "".join(d["content"] for k, d in frames if k == "chat") == "Hello there."
        assert [d for k, d in frames if k == "done"][0]["finish_reason"] == "stop"
    assert calls_after_first == 2 and calls_for_second == 1
    assert "max_completion_tokens" in fake.requests[-1] and "max_tokens" not in fake.requests[-1]


# -- temperature: sent for the intents that return a block, dropped once when refused --------------

SCENARIO = {"title": "Night shift", "summary": "s", "roles": [], "steps": [], "objectives": []}


def answers_for(fake: FakeUpstream, intents: list[str], **env: str) -> tuple[OpenAICompatible, list[str | None]]:
    """One answer per intent in turn from one OpenAICompatible instance: (the model, [error code])."""
    settings = Settings.from_env({"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-test", "UPSTREAM_MAX_RETRIES": "0",
                                  "OPENAI_MODEL": "o4-mini", **env})

    async def one(model: OpenAICompatible, intent: str) -> str | None:
        try:
            async for _ in model.stream(build_prompt(intent, "make it harder", SCENARIO, ()), 64):
                pass
        except AgentError as exc:
            return exc.code
        return None

    async def main() -> tuple[OpenAICompatible, list[str | None]]:
        async with httpx.AsyncClient() as client:
            model = OpenAICompatible(settings, client)
            return model, [await one(model, intent) for intent in intents]

    return asyncio.run(main())


def test_modify_and_create_send_the_scenario_temperature_chat_and_explain_send_none():
    intents = ["modify", "create", "chat", "explain"]
    assert [INTENTS[i].block is not None for i in intents] == [True, True, False, False]
    with FakeUpstream() as fake:
        _, codes = answers_for(fake, intents)
    assert codes == [None] * 4
    assert [request.get("temperature", "none") for request in fake.requests] == [0.2, 0.2, "none", "none"]
    with FakeUpstream() as fake:
        answers_for(fake, ["create", "chat"], SCENARIO_TEMPERATURE="0.7")
    assert [request.get("temperature", "none") for request in fake.requests] == [0.7, "none"]


def test_a_negative_scenario_temperature_is_never_sent():
    with FakeUpstream() as fake:
        _, codes = answers_for(fake, ["modify", "create"], SCENARIO_TEMPERATURE="-1")
    assert codes == [None, None] and all("temperature" not in request for request in fake.requests)


def test_a_server_that_refuses_temperature_answers_and_it_is_never_sent_again():
    # OpenAI's reasoning models (o1, o3, o4-mini): 400 unsupported_parameter, param "temperature".
    with FakeUpstream(default=Plan(tokens=["ok"], reject_param="temperature")) as fake:
        model, codes = answers_for(fake, ["modify", "modify", "create"])
    assert codes == [None, None, None]
    # One failed round trip for the process's instance: with, without, then without from the start.
    assert [("temperature" in request) for request in fake.requests] == [True, False, False, False]
    assert all(request["max_tokens"] == 64 for request in fake.requests)  # the token limit untouched


def test_a_server_that_refuses_max_tokens_and_temperature_learns_both_in_three_requests():
    with FakeUpstream(default=Plan(tokens=["ok"], reject_param=("max_tokens", "temperature"))) as fake:
        model, codes = answers_for(fake, ["modify", "modify"])
    assert codes == [None, None]
    sent = [(params_of(request), "temperature" in request) for request in fake.requests]
    assert sent == [("max_tokens", True), ("max_completion_tokens", True), ("max_completion_tokens", False),
                    ("max_completion_tokens", False)]
    assert model.token_param == "max_completion_tokens"


def test_a_server_that_refuses_everything_is_rejected_without_a_loop():
    with FakeUpstream(default=Plan(reject_param=("max_tokens", "max_completion_tokens", "temperature"))) as fake:
        _, codes = answers_for(fake, ["modify"])
    assert codes == ["upstream_rejected"]
    # max_tokens refused, then max_completion_tokens refused: the token limit was tried once
    # already, so that refusal ends it (temperature, never named, is still sent).
    assert [(params_of(r), "temperature" in r) for r in fake.requests] == [("max_tokens", True), ("max_completion_tokens", True)]


def params_of(request: dict) -> str:
    return next(name for name in quirks.TOKEN_PARAMS if name in request)


@pytest.mark.parametrize("error, refused", [
    (unsupported_parameter("temperature"), True),
    # gpt-5: any value but the default is refused as unsupported_value.
    ({"message": "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is supported.",
      "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}, True),
    ({"message": "Unsupported value: 'temperature' does not support 0.2 with this model.", "type": "invalid_request_error",
      "param": None, "code": "unsupported_value"}, True),
    (unsupported_parameter("max_tokens"), False),
    ({"message": "model 'x' not found", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}, False),
    ({"message": "temperature is fine, the model is not", "param": "model", "code": "model_not_found"}, False),
])
def test_which_refusals_name_temperature(error, refused):
    assert quirks.rejected_temperature(400, error) is refused
    assert not quirks.rejected_temperature(500, error)


def test_modify_through_the_app_sends_the_temperature_and_chat_does_not():
    with FakeUpstream() as fake:
        with LiveApp(upstream_env(fake, SCENARIO_TEMPERATURE="0.3")) as live:
            for mode in ("modify", "chat"):
                httpx.post(live.url + STREAM_PATH, json={"message": "make it harder", "mode": mode, "scenario": SCENARIO}, timeout=20)
    # The modify may ask again (a repair round: the fake's answer carries no block); chat once.
    *modify, chat = [request.get("temperature", "none") for request in fake.requests]
    assert modify and set(modify) == {0.3} and chat == "none"
