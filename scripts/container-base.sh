#!/usr/bin/env bash
# Make sure the base image the Dockerfile starts FROM (debian:bookworm-slim) exists locally.
#
# Elsewhere the engine pulls it. Where no container registry can be reached (this machine), it
# is made from Debian's own packages with mmdebstrap (the Debian mirror is reachable) and tagged
# docker.io/library/debian:bookworm-slim, so the same Dockerfile builds here and elsewhere.
# Like the real slim image it carries no docs, man pages or locales.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/container-engine.sh

BASE="${BASE_IMAGE:-docker.io/library/debian:bookworm-slim}"

if engine image inspect "$BASE" >/dev/null 2>&1; then
    exit 0
fi
if timeout 60 engine pull -q "$BASE" >/dev/null 2>&1; then
    exit 0
fi

echo "container-base: $BASE cannot be pulled: making it with mmdebstrap" >&2
if ! command -v mmdebstrap >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "container-base: mmdebstrap is missing (apt-get install mmdebstrap)" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
mmdebstrap --variant=minbase --include=ca-certificates \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --aptopt='Acquire::Languages "none"' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log' \
    bookworm "$work/base.tar" \
    "deb $MIRROR bookworm main" \
    "deb $MIRROR bookworm-updates main" \
    "deb $SECURITY bookworm-security main"
engine import --change 'CMD ["bash"]' "$work/base.tar" "$BASE" >/dev/null
echo "container-base: made $BASE" >&2
