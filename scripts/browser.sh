#!/usr/bin/env bash
# Chromium for newsdedup's browser tests (tests/browser), without a browser download: Debian's
# packages `chromium` and `chromium-driver`. Playwright for Python drives /usr/bin/chromium
# (its wheel carries the driver; `playwright install` fetches a browser over the network, which
# this machine's closed network refuses); /usr/bin/chromedriver is there for Selenium.
#
#   bash scripts/browser.sh install
#       apt-get installs `chromium` and `chromium-driver` if either binary is missing (idempotent).
#   bash scripts/browser.sh version
#       What /usr/bin/chromium --version says.
#   bash scripts/browser.sh check
#       Starts headless Chromium once with the flags the tests use, on a blank page, and prints
#       the DOM it dumped (proves the binary runs here: sandbox, shared libraries, /dev/shm).
#
# The flags (tests/browser/conftest.py uses the same): --headless --no-sandbox --disable-gpu
# --disable-quic --no-first-run --disable-background-networking --disable-component-update
# --disable-sync and a fresh --user-data-dir. Without the background-networking flags Chromium
# keeps connecting to Google's hosts, which this closed network refuses, at every start.
# CHROMIUM_BIN overrides the binary's path (not a NEWSDEDUP_ name: every newsdedup command refuses
# NEWSDEDUP_ variables it does not know, and the tests pass their environment on).
set -euo pipefail

CHROMIUM=${CHROMIUM_BIN:-/usr/bin/chromium}
CHROMEDRIVER=/usr/bin/chromedriver
FLAGS=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync)

log() { printf 'browser: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

chromium_version() { "$CHROMIUM" --version 2>/dev/null | head -n 1; }

cmd_install() {
  if [[ -x $CHROMIUM && -x $CHROMEDRIVER ]]; then
    log "already installed: $(chromium_version)"
    return 0
  fi
  [[ $EUID -eq 0 ]] || die "need root to apt-get install chromium chromium-driver (or install them yourself)"
  command -v apt-get >/dev/null || die "no apt-get here: install Chromium ($CHROMIUM) and chromedriver yourself"
  log "apt-get install chromium chromium-driver"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver >&2
  [[ -x $CHROMIUM ]] || die "$CHROMIUM still missing after apt-get install chromium"
  log "installed: $(chromium_version)"
}

cmd_version() {
  [[ -x $CHROMIUM ]] || die "$CHROMIUM is missing: bash scripts/browser.sh install"
  chromium_version
}

cmd_check() {
  [[ -x $CHROMIUM ]] || die "$CHROMIUM is missing: bash scripts/browser.sh install"
  local profile
  profile=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: the folder to remove
  trap "rm -rf '$profile'" EXIT
  timeout 60 "$CHROMIUM" "${FLAGS[@]}" --user-data-dir="$profile" --dump-dom \
    'data:text/html,<title>ok</title><p>chromium runs</p>' 2>/dev/null
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    install) cmd_install ;;
    version) cmd_version ;;
    check) cmd_check ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
