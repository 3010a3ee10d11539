# The README's commands. `make run` starts the app on the built-in offline model;
# `make test` installs the dev tools (and Debian's chromium for the browser tests) and runs every test.
PORT ?= 8000

.PHONY: run test bench soak

run:
	pip install -r requirements.txt
	uvicorn app:app --host 127.0.0.1 --port $(PORT)

test:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	pip install -r requirements-dev.txt
	python3 -m pytest

bench:
	pip install -r requirements-dev.txt
	python3 bench/run.py

soak:
	SOAK_REQUESTS=3000 python3 -m pytest -q tests/test_soak.py
