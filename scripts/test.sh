#!/usr/bin/env bash
# Set everything up, then run the whole suite: ruff, mypy (strict) and pytest
# (unit, integration on a real registry and git, e2e on real dockerd and buildah).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check imagectl tests devenv bench
.venv/bin/ruff format --check imagectl tests devenv bench
echo "== mypy --strict"
.venv/bin/mypy
echo "== pytest"
.venv/bin/pytest -q "$@"
