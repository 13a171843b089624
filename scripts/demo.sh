#!/usr/bin/env bash
# Quick start, command 1: set everything up, then run the main job — a real reconcile of
# examples/ against a local registry (dockerd and the registry are started as needed,
# upstream bases are built from the static busybox, so it runs offline).  Afterwards the
# registry (127.0.0.1:5055) and dockerd keep running for the README's next steps:
# scripts/dev.sh status|env|down.  `--no-keep` stops the registry at the end instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m devenv.demo "$@"
