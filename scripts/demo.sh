#!/usr/bin/env bash
# Quick start, command 1: set everything up, then run the main job — a real reconcile of
# examples/ against a local registry (dockerd and the registry are started as needed,
# upstream bases are built from the static busybox, so it runs offline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m devenv.demo "$@"
