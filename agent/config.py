"""Settings, read once from the environment when the app is created (never at import)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

VERSION = "1.0.0"


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    value = _number(env, name, default)
    if value != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    # Upstream model. With neither a key nor a base URL, the built-in offline model runs.
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    upstream_connect_timeout_seconds: float = 10.0
    upstream_idle_timeout_seconds: float = 60.0
    upstream_max_retries: int = 2
    upstream_token_param: str = "auto"  # auto | max_tokens | max_completion_tokens (upstream/quirks.py)
    offline_token_delay_ms: float = 6.0  # visible streaming, no long wait: Explain ~5 s, Create ~3.5 s
    # Streaming.
    heartbeat_seconds: float = 15.0
    send_timeout_seconds: float = 30.0
    shutdown_grace_seconds: float = 5.0
    # Input limits.
    max_body_bytes: int = 256 * 1024
    max_message_chars: int = 8000
    max_scenario_bytes: int = 64 * 1024
    max_scenario_depth: int = 32
    max_history_turns: int = 50
    max_history_bytes: int = 64 * 1024
    # Abuse and access.
    max_concurrent_streams: int = 100
    rate_limit_per_minute: int = 60
    max_output_tokens: int = 2048
    # Real-model tokens (usage.total_tokens) per UTC day, per process; 0: no budget.
    token_budget_per_day: int = 0
    # Model answers.
    send_reasoning: bool = True
    scenario_repair_attempts: int = 1
    app_access_token: str | None = field(default=None, repr=False)
    allowed_origins: tuple[str, ...] = ()
    # A request body must arrive within this (408 body_timeout); it holds no stream slot meanwhile.
    body_read_timeout_seconds: float = 5.0
    # Host names the API answers to besides loopback names, addresses, this machine's name and
    # the platform's names for the app (web/gate.py) ("*": any name).
    allowed_hosts: tuple[str, ...] = ()
    # Proxies in front whose X-Forwarded-For entries are trusted (1 behind a PaaS router); 0: the peer.
    forwarded_trusted_hops: int = 0
    frame_ancestors: str = "'self'"
    log_level: str = "info"
    # The streaming lab's ?lab= modes (web/lab.py). On for the demo; the Procfile turns them off.
    lab_enabled: bool = True
    # Intents that return a block (modify, create) send this temperature; chat and explain
    # keep the server's default. Negative: never send one.
    scenario_temperature: float = 0.2
    # Runs (runs/): how long a run with no reader keeps reading the model, how long a finished
    # run's log is kept for late joiners, and the bounds on the logs' bytes.
    run_detached_grace_seconds: float = 15.0
    run_retention_seconds: float = 120.0
    run_log_max_bytes: int = 4 * 1024 * 1024
    run_logs_total_bytes: int = 256 * 1024 * 1024
    # Scale-out (scaleout/): shared state in Redis when set; else everything stays in this process.
    redis_url: str | None = field(default=None, repr=False)
    # With Redis unreachable, each process enforces limit / EXPECTED_INSTANCES of the shared limits.
    expected_instances: int = 1
    # With Redis unreachable, the token budget refuses new runs (false) or admits them (true).
    budget_fail_open: bool = False
    # rediss:// URLs: verify the server's certificate (false for stores whose certificate is
    # self-signed, as Heroku Key-Value Store's is; the connection is still encrypted).
    redis_tls_verify: bool = True

    @property
    def provider(self) -> str:
        """'offline' unless an OpenAI-compatible server is configured."""
        if self.openai_api_key or self.openai_base_url:
            return "openai-compatible"
        return "offline"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        origins = tuple(o.strip() for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip())
        return cls(
            openai_api_key=env.get("OPENAI_API_KEY") or None,
            openai_base_url=env.get("OPENAI_BASE_URL") or None,
            openai_model=env.get("OPENAI_MODEL") or cls.openai_model,
            upstream_connect_timeout_seconds=_number(env, "UPSTREAM_CONNECT_TIMEOUT_SECONDS", cls.upstream_connect_timeout_seconds),
            upstream_idle_timeout_seconds=_number(env, "UPSTREAM_IDLE_TIMEOUT_SECONDS", cls.upstream_idle_timeout_seconds),
            upstream_max_retries=_integer(env, "UPSTREAM_MAX_RETRIES", cls.upstream_max_retries),
            upstream_token_param=(env.get("UPSTREAM_TOKEN_PARAM") or cls.upstream_token_param).strip().lower(),
            offline_token_delay_ms=_number(env, "OFFLINE_TOKEN_DELAY_MS", cls.offline_token_delay_ms),
            heartbeat_seconds=_number(env, "HEARTBEAT_SECONDS", cls.heartbeat_seconds),
            send_timeout_seconds=_number(env, "SEND_TIMEOUT_SECONDS", cls.send_timeout_seconds),
            shutdown_grace_seconds=_number(env, "SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds),
            max_body_bytes=_integer(env, "MAX_BODY_BYTES", cls.max_body_bytes),
            max_message_chars=_integer(env, "MAX_MESSAGE_CHARS", cls.max_message_chars),
            max_concurrent_streams=_integer(env, "MAX_CONCURRENT_STREAMS", cls.max_concurrent_streams),
            rate_limit_per_minute=_integer(env, "RATE_LIMIT_PER_MINUTE", cls.rate_limit_per_minute),
            max_output_tokens=_integer(env, "MAX_OUTPUT_TOKENS", cls.max_output_tokens),
            token_budget_per_day=_integer(env, "TOKEN_BUDGET_PER_DAY", cls.token_budget_per_day),
            send_reasoning=_boolean(env, "SEND_REASONING", cls.send_reasoning),
            scenario_repair_attempts=_integer(env, "SCENARIO_REPAIR_ATTEMPTS", cls.scenario_repair_attempts),
            app_access_token=env.get("APP_ACCESS_TOKEN") or None,
            allowed_origins=origins,
            body_read_timeout_seconds=_number(env, "BODY_READ_TIMEOUT_SECONDS", cls.body_read_timeout_seconds),
            allowed_hosts=tuple(h.strip().lower() for h in env.get("ALLOWED_HOSTS", "").split(",") if h.strip()),
            forwarded_trusted_hops=_integer(env, "FORWARDED_TRUSTED_HOPS", cls.forwarded_trusted_hops),
            frame_ancestors=env.get("FRAME_ANCESTORS") or cls.frame_ancestors,
            log_level=(env.get("LOG_LEVEL") or cls.log_level).lower(),
            lab_enabled=_boolean(env, "LAB_ENABLED", cls.lab_enabled),
            scenario_temperature=_number(env, "SCENARIO_TEMPERATURE", cls.scenario_temperature),
            run_detached_grace_seconds=_number(env, "RUN_DETACHED_GRACE_SECONDS", cls.run_detached_grace_seconds),
            run_retention_seconds=_number(env, "RUN_RETENTION_SECONDS", cls.run_retention_seconds),
            run_log_max_bytes=_integer(env, "RUN_LOG_MAX_BYTES", cls.run_log_max_bytes),
            run_logs_total_bytes=_integer(env, "RUN_LOGS_TOTAL_BYTES", cls.run_logs_total_bytes),
            redis_url=env.get("REDIS_URL") or None,
            expected_instances=max(1, _integer(env, "EXPECTED_INSTANCES", cls.expected_instances)),
            budget_fail_open=_boolean(env, "BUDGET_FAIL_OPEN", cls.budget_fail_open),
            redis_tls_verify=_boolean(env, "REDIS_TLS_VERIFY", cls.redis_tls_verify),
        )
