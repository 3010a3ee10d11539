"""First run: the Python version, where packages go, and the README's commands are what the files say."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import app
from agent.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


# -- the Python version ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [(3, 10, 13), (3, 9, 18), (2, 7, 18)])
def test_server_refuses_an_old_python_with_one_line(version: tuple[int, int, int], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        app.check_python_version(version)
    # uvicorn's "cannot start" status: its supervisor stops rather than restarting workers forever.
    assert raised.value.code == app.STARTUP_FAILURE == 3
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "3.11 or newer" in lines[0] and ".".join(map(str, version)) in lines[0]


@pytest.mark.parametrize("version", [(3, 11, 0), (3, 12, 1), (3, 13, 0), tuple(sys.version_info)])
def test_server_starts_on_a_supported_python(version: tuple[int, ...]) -> None:
    app.check_python_version(version)


def test_refusal_is_one_line_on_stderr_and_exit_status_3() -> None:
    """What `uvicorn app:app` prints on Python 3.10 (checked there by hand: the same line, status 3)."""
    code = "import app; app.check_python_version((3, 10, 13))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == ["scenario-agent needs Python 3.11 or newer; this is Python 3.10.13."]


def test_create_app_checks_the_version_first() -> None:
    source = (ROOT / "app.py").read_text()
    body = source[source.index("def create_app(") :]
    assert body.index("check_python_version()") < body.index("Service(")


def test_python_version_file_and_readme_agree() -> None:
    pinned = (ROOT / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", pinned), pinned  # a minor version: buildpacks take its latest patch
    assert tuple(int(p) for p in pinned.split(".")) >= app.MIN_PYTHON
    minimum = f"{app.MIN_PYTHON[0]}.{app.MIN_PYTHON[1]}"
    assert f"Python {minimum} or newer" in README
    assert f"`.python-version` ({pinned})" in README


# -- where packages go -----------------------------------------------------------------------------


def dry_run(target: str, tmp_path: Path, virtual_env: str | None) -> list[str]:
    """The commands `make -n <target>` would run in a fresh checkout with this VIRTUAL_ENV."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    if virtual_env:
        env["VIRTUAL_ENV"] = virtual_env
    done = subprocess.run(["make", "-n", target], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("target", ["run", "test"])
def test_make_creates_and_uses_dot_venv_when_no_environment_is_active(target: str, tmp_path: Path) -> None:
    lines = dry_run(target, tmp_path, None)
    assert lines[0].startswith("python3 -m venv .venv")
    assert "apt-get install -y python3-venv" in lines[0]  # Debian's python3 needs it for -m venv
    installs = [line for line in lines if " -m pip install " in line]
    assert installs and all(line.startswith(".venv/bin/python -m pip install") for line in installs)
    assert not any(re.match(r"^(sudo )?pip3? ", line) for line in lines)  # never the system's pip


def test_make_uses_the_active_environment(tmp_path: Path) -> None:
    lines = dry_run("test", tmp_path, "/opt/someenv")
    assert not any("-m venv" in line for line in lines)
    assert "/opt/someenv/bin/python -m pip install -q -r requirements-dev.txt" in lines
    assert "/opt/someenv/bin/python -m pytest" in lines


@pytest.mark.skipif(not Path("/usr/lib/python3.11/EXTERNALLY-MANAGED").exists() and not list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED")), reason="needs a system Python marked externally managed (PEP 668), as on Debian 12")
def test_make_venv_works_with_an_externally_managed_system_python(tmp_path: Path) -> None:
    """The Makefile's own venv rule, run with Debian's /usr/bin/python3 (PEP 668): a venv whose pip installs."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["make", ".venv/bin/python", "PYTHON3=/usr/bin/python3"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    python = tmp_path / ".venv" / "bin" / "python"
    check = subprocess.run([str(python), "-c", "import sys; print(sys.prefix != sys.base_prefix)"], capture_output=True, text=True, timeout=30)
    assert check.stdout.strip() == "True"
    pip = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--dry-run", "pip"], capture_output=True, text=True, timeout=120)
    assert "externally-managed-environment" not in pip.stderr, pip.stderr


def test_ci_runs_exactly_the_readme_test_command() -> None:
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[-1] == "make test"
    assert "    make test " in README or "    make test\n" in README


# -- every test runs on a clean checkout -------------------------------------------------------------


def test_optional_test_modules_are_dev_requirements() -> None:
    """A module a test imports with importorskip is installed by `make test`, so it never silently skips."""
    requirements = (ROOT / "requirements-dev.txt").read_text().lower()
    names = set()
    for path in (ROOT / "tests").rglob("*.py"):
        if "real" in path.relative_to(ROOT / "tests").parts[:1]:
            continue  # the real-model suite installs its own packages (`make test-real`)
        names.update(re.findall(r'importorskip\(\s*"([\w.]+)"', path.read_text()))
    for name in names | {"openapi_spec_validator", "prometheus_client"}:
        distribution = name.split(".")[0].replace("_", "-")
        assert re.search(rf"^{re.escape(distribution)}\b", requirements, re.M), f"{distribution} is not in requirements-dev.txt"
        __import__(name)


# -- the documented commands and settings ---------------------------------------------------------------


def test_documented_soak_command_is_the_makefile_one() -> None:
    recipe = MAKEFILE[MAKEFILE.index("\nsoak:") + 1 :].splitlines()[1].strip().replace("$(PYTHON)", "python")
    documented = re.search(r"`make soak` runs 3000:\s+`([^`]+)`", OPERATIONS)
    assert documented, "docs/operations.md should show what `make soak` runs"
    assert documented.group(1) == recipe
    assert " -s " in recipe


def test_readme_vllm_example_does_not_collide_with_the_app_port() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| vLLM |"))
    port = re.search(r"127\.0\.0\.1:(\d+)", row)
    assert port and port.group(1) != "8000"
    assert "PORT ?= 8000" in MAKEFILE


def test_readme_documents_chromium_path_web_concurrency_and_the_budget() -> None:
    for name in ("CHROMIUM_PATH", "WEB_CONCURRENCY", "TOKEN_BUDGET_PER_DAY", "docs/deploy.md"):
        assert name in README, name
    assert (ROOT / "docs" / "deploy.md").exists()


def test_procfile_flags_are_valid_uvicorn_options_and_cap_no_connections() -> None:
    from uvicorn.main import main

    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    args = shlex.split(line.split(":", 1)[1].replace("$PORT", "8000"))
    assert args[0] == "uvicorn"
    params = main.make_context("uvicorn", args[1:]).params
    defaults = Settings()
    assert params["workers"] is None  # so uvicorn takes WEB_CONCURRENCY
    # No cap on connections (idle sockets could fill it and lock everyone out, health included):
    # a connection that sends no request head in time is closed instead (web/limits.py).
    assert params["limit_concurrency"] is None
    assert params["http"] == "web.limits:HeadDeadlineProtocol" and params["env_file"] == "deploy.env"
    assert 5 < params["timeout_keep_alive"] <= 120
    assert params["timeout_graceful_shutdown"] > defaults.shutdown_grace_seconds
