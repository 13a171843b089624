#!/usr/bin/env bash
# Install what imagectl and its tests need on a fresh Debian machine:
# the Debian packages (docker engine, reference registry, buildah, static busybox, git)
# and a Python virtual environment with imagectl and its dev tools.  Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(docker.io docker-registry buildah runc busybox-static git apache2-utils openssl ca-certificates shellcheck)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  # a docker engine from another source (e.g. docker-ce on GitHub runners) will do
  if [ "$pkg" = docker.io ] && command -v dockerd >/dev/null 2>&1; then continue; fi
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "imagectl needs Python 3.11+")'
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import imagectl, pytest' # fail loudly if the install did not work
bash scripts/fetch-verifiers.sh >/dev/null # cosign 2.5 (Debian trixie .deb) for the supply-chain tests
echo "setup: ready (.venv/bin/imagectl)"
