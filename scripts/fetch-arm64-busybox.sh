#!/usr/bin/env bash
# Fetch Debian's static busybox for arm64 (busybox-static:arm64) without installing it:
# the offline multi-platform tests build their arm64 upstream base FROM scratch with it.
# Idempotent: a second run finds the binary and prints one line.
# Destination: $IMAGECTL_ARM64_BUSYBOX, default ~/.cache/imagectl/arm64/busybox.
set -euo pipefail
dest="${IMAGECTL_ARM64_BUSYBOX:-${XDG_CACHE_HOME:-$HOME/.cache}/imagectl/arm64/busybox}"
if [ -x "$dest" ]; then
  echo "fetch-arm64-busybox: ready ($dest)"
  exit 0
fi
SUDO=()
[ "$(id -u)" -eq 0 ] || SUDO=(sudo)
log=$(mktemp)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$log"' EXIT
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  "${SUDO[@]}" dpkg --add-architecture arm64
fi
if ! apt-cache show busybox-static:arm64 >/dev/null 2>&1; then
  if ! "${SUDO[@]}" apt-get -qq update >"$log" 2>&1; then
    cat "$log" >&2
    echo "fetch-arm64-busybox: apt-get update failed (output above)" >&2
    exit 1
  fi
fi
# apt-get download writes into the current directory and needs no root
if ! (cd "$tmp" && apt-get -qq download busybox-static:arm64) >"$log" 2>&1; then
  cat "$log" >&2
  echo "fetch-arm64-busybox: apt-get download busybox-static:arm64 failed (output above)" >&2
  exit 1
fi
dpkg-deb -x "$tmp"/busybox-static_*_arm64.deb "$tmp/root"
mkdir -p "$(dirname "$dest")"
install -m 0755 "$tmp/root/bin/busybox" "$dest.partial"
mv "$dest.partial" "$dest"
echo "fetch-arm64-busybox: ready ($dest)"
