"""The real-model suite's figures, printed after the run (`make test-real`)."""

from __future__ import annotations

FIGURES: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    if FIGURES:
        terminalreporter.section("real model figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
