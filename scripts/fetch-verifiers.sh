#!/usr/bin/env bash
# Fetch the third-party verifiers the supply-chain tests run (cosign 2.5, skopeo 1.18) as
# Debian 13 (trixie) .debs and unpack them into a cache directory, WITHOUT touching the
# system's apt sources, lists or dpkg status: apt runs under a private state directory whose
# sources list names the same Debian mirror as the system's, suite trixie.
# Debian 12's skopeo is built with sigstore disabled, hence trixie. trixie's skopeo needs
# glibc 2.38: its runtime libraries (libc6, gpgme, sqlite) are unpacked beside it and a
# wrapper runs it through trixie's dynamic loader, so it runs on Debian 12 too. Idempotent.
# Usage: scripts/fetch-verifiers.sh [CACHE_DIR]   (default: ~/.cache/imagectl/verifiers)
# Prints the directory holding `cosign` and `skopeo` (CACHE_DIR/bin) on its last line.
set -euo pipefail
CACHE="${1:-${IMAGECTL_VERIFIERS_CACHE:-$HOME/.cache/imagectl/verifiers}}"
BIN="$CACHE/bin"
ROOT="$CACHE/root"
PACKAGES=(cosign skopeo libc6 libgpgme11t64 libsqlite3-0 libassuan9 libgpg-error0)
if [ -x "$BIN/cosign" ] && [ -x "$BIN/skopeo" ]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial" "$CACHE/debs" "$CACHE/root"
: >"$CACHE/apt/status"
# the mirror the system already uses (deb822 or one-line sources), suite trixie
MIRROR="$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | grep -v security | grep -oE 'https?://[^ ]+/debian' | head -n1 || true)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
cat >"$CACHE/apt/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main
SRC
APT_OPTS=(
  -o "Dir::Etc::sourcelist=$CACHE/apt/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State=$CACHE/apt"
  -o "Dir::State::lists=$CACHE/apt/lists"
  -o "Dir::State::status=$CACHE/apt/status"
  -o "Dir::Cache=$CACHE/apt/cache"
  -o "APT::Get::List-Cleanup=0"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
)
apt-get "${APT_OPTS[@]}" -qq update >&2
(cd "$CACHE/debs" && apt-get "${APT_OPTS[@]}" -qq download "${PACKAGES[@]}" >&2)
for deb in "$CACHE"/debs/*.deb; do
  dpkg-deb -x "$deb" "$ROOT"
done
mkdir -p "$BIN"
ln -sf "$ROOT/usr/bin/cosign" "$BIN/cosign" # static: runs as it is
loader="$(find "$ROOT/usr/lib" -maxdepth 2 -name 'ld-linux*.so.*' | head -n1)"
cat >"$BIN/skopeo" <<WRAP
#!/bin/sh
# skopeo 1.18 from Debian trixie, with trixie's own C library (written by fetch-verifiers.sh)
exec "$loader" --library-path "$(dirname "$loader")" "$ROOT/usr/bin/skopeo" "\$@"
WRAP
chmod +x "$BIN/skopeo"
"$BIN/cosign" version >/dev/null 2>&1 || { echo "fetch-verifiers: cosign does not run" >&2; exit 1; }
"$BIN/skopeo" --version >/dev/null 2>&1 || echo "fetch-verifiers: skopeo does not run here" >&2
echo "$BIN"
