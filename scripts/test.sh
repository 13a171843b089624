#!/usr/bin/env bash
# Set everything up, then run what CI runs: ruff, mypy (strict), the documentation site
# (mkdocs --strict: a broken link fails) and pytest (unit, integration on a real registry
# and git, e2e on real dockerd and buildah).  A kept local environment (scripts/dev.sh)
# plays no part: tests start their own registries on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check imagectl tests devenv bench
.venv/bin/ruff format --check imagectl tests devenv bench
echo "== mypy --strict"
.venv/bin/mypy
echo "== docs (mkdocs build --strict)"
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site"
echo "== pytest"
if [ "$#" -eq 0 ]; then
  # the whole suite: its reliability records regenerate docs/reliability.md
  results=$(mktemp)
  trap 'rm -rf "$site" "$results"' EXIT
  IMAGECTL_RELIABILITY_RESULTS="$results" .venv/bin/pytest -q
  .venv/bin/python docs/make_reliability_report.py --results "$results" \
    --source "bash scripts/test.sh (the whole suite)" >/dev/null
  echo "docs/reliability.md: regenerated from this run"
else
  .venv/bin/pytest -q "$@"
fi
