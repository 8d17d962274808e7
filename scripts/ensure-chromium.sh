#!/bin/sh
# The console tests (tests/console) drive Debian's Chromium at /usr/bin/chromium through
# Playwright; install it when it is missing. Idempotent and quiet: does nothing when present.
# Needs root (or sudo) on Debian/Ubuntu; elsewhere, install Chromium at that path by hand.
set -eu

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: $CHROMIUM is missing and apt-get is not available: install Chromium there" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

echo "ensure-chromium: installing Debian's chromium for the console tests" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq chromium >/dev/null

if [ ! -x "$CHROMIUM" ]; then
    echo "ensure-chromium: chromium was installed but $CHROMIUM is still missing" >&2
    exit 1
fi
