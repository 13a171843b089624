#!/usr/bin/env bash
# Install what imagectl and its tests need on a fresh Debian machine:
# the Debian packages (Python, docker engine, reference registry, buildah, static busybox,
# git, shellcheck, CA certificates) and a Python virtual environment with imagectl and its
# dev tools.  Idempotent and quiet: a second run installs nothing and prints one line.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3 python3-venv ca-certificates docker.io docker-registry buildah runc
  busybox-static git apache2-utils openssl shellcheck)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  # a docker engine from another source (e.g. docker-ce on GitHub runners) will do
  if [ "$pkg" = docker.io ] && command -v dockerd >/dev/null 2>&1; then continue; fi
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=()
  [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
  # `env` carries the variables through sudo (which resets the environment); the log
  # keeps apt's and debconf's chatter off the terminal unless something fails
  APT=("${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get -y -qq
    -o Dpkg::Use-Pty=0)
  log=$(mktemp)
  if ! { "${APT[@]}" update && "${APT[@]}" install --no-install-recommends "${missing[@]}"; } \
    >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "setup: apt-get failed (output above)" >&2
    exit 1
  fi
  rm -f "$log"
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "imagectl needs Python 3.11+")'
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# Reinstall only when pyproject.toml (dependencies, entry points, package data) changed.
stamp=.venv/.imagectl-setup
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $(.venv/bin/python -V 2>&1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c 'import imagectl' 2>/dev/null; then
  echo "setup: installing imagectl and its dev tools into .venv"
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
  log=.venv/setup-pip.log
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
    .venv/bin/python -m pip install -q -e '.[dev]'; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: pip install failed (output above, also in $log)" >&2
    exit 1
  fi
  echo "$want" >"$stamp"
fi
bash scripts/fetch-arm64-busybox.sh >/dev/null # arm64 stand-in base of the multi-platform tests
.venv/bin/python -c 'import imagectl, pytest' # fail loudly if the install did not work
# cosign 2.5 and skopeo 1.18 (Debian trixie .debs, private apt state) for the supply-chain tests
if [ -f scripts/fetch-verifiers.sh ]; then bash scripts/fetch-verifiers.sh >/dev/null; fi
echo "setup: ready (.venv/bin/imagectl)"
