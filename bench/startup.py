"""Scenario `startup`: wall time of `imagectl --version` and `--help` against `python -c pass`.

Each command runs ``--runs`` times (at least 5) as a fresh process; the best run
counts, so that other load on the machine inflates the figures as little as it can.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.goals import Figure

GOAL_STARTUP = 4.0


def imagectl_binary() -> str:
    """The `imagectl` beside the running interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("imagectl")
    return str(beside) if beside.exists() else (shutil.which("imagectl") or "imagectl")


def wall(argv: list[str], runs: int) -> tuple[float, int]:
    """Best wall time of `argv` over `runs` runs, and its last exit code."""
    times: list[float] = []
    code = 0
    for _ in range(runs):
        start = time.perf_counter()
        code = subprocess.run(argv, capture_output=True, check=False).returncode
        times.append(time.perf_counter() - start)
    return min(times), code


def measure(runs: int) -> list[Figure]:
    runs = max(runs, 5)
    baseline, _ = wall([sys.executable, "-c", "pass"], runs)
    figures = [Figure("`python -c pass`, wall", baseline, "s", "time")]
    for flag in ("--version", "--help"):
        seconds, code = wall([imagectl_binary(), flag], runs)
        failed = f" (exit {code})" if code else ""
        figures.append(Figure(f"`imagectl {flag}`, wall{failed}", seconds, "s", "time"))
        figures.append(
            Figure(
                f"`imagectl {flag}` / `python -c pass`",
                seconds / baseline,
                "x",
                "ratio",
                GOAL_STARTUP,
            )
        )
    return figures
