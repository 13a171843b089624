#!/usr/bin/env bash
# The kept local environment (dockerd and a registry on 127.0.0.1:5055) that the demo
# leaves running:
#   scripts/dev.sh up        start it (or reuse it), publish the upstream stand-in bases
#   scripts/dev.sh env       print the exports for a shell: eval "$(scripts/dev.sh env)"
#   scripts/dev.sh status    what runs, where (exit 3 when it is not running)
#   scripts/dev.sh down      stop it (the registry's storage stays in .imagectl-run/)
# IMAGECTL_DEV_PORT chooses another port; a taken port is replaced by a free one, printed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  bash scripts/setup.sh >&2
fi
exec .venv/bin/python -m devenv.local "$@"
