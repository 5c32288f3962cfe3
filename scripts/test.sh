#!/usr/bin/env bash
# The README's second command: install everything, start the real services, run the whole suite.
#
#   bash scripts/test.sh [PYTEST ARGS...]
#
# 1. a virtualenv in .venv with the project and its dev tools (pip, from PyPI);
# 2. the tools the tests run: Prometheus and promtool (scripts/prometheus.sh, Debian's package) and the
#    Compose plugin that checks docker-compose.yml without an engine (scripts/compose.sh), and Chromium for
#    the browser tests (scripts/browser.sh, Debian's package);
# 3. Kafka and PostgreSQL on 127.0.0.1 through scripts/services.sh (installs Java, Maven and
#    PostgreSQL with apt-get when missing; Kafka's jars come from Maven Central);
# 4. ruff, then pytest: unit tests and integration tests against those services.
# Every step installs what is missing, so a fresh machine needs nothing beforehand but Python 3.11.
# Services are stopped at the end unless NEWSDEDUP_KEEP_SERVICES=1.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'test: %s\n' "$*" >&2; }

if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  say "Python 3.11 or newer is needed (found: $(python3 --version 2>&1))"; exit 2
fi
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv || { apt-get update -qq && apt-get install -y -qq python3-venv && python3 -m venv .venv; }
fi
say "installing the project and its dev tools into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

say "installing the test tools (Prometheus, promtool, the Compose plugin, Chromium) where missing"
bash scripts/prometheus.sh install
bash scripts/compose.sh install
bash scripts/browser.sh install  # Chromium and chromedriver (Debian's) for tests/browser

say "starting services"
settings=$(bash scripts/services.sh up) && eval "$settings"
if [ "${NEWSDEDUP_KEEP_SERVICES:-0}" != 1 ]; then
  trap 'bash scripts/services.sh down >/dev/null 2>&1 || true' EXIT
fi

say "ruff"
.venv/bin/ruff check .
say "pytest"
# tests/faults (fault injection) starts a Kafka and PostgreSQL of its own on other ports, because it
# kills and restarts them; its long variants (marked slow) run with `pytest -m "faults and slow"`.
.venv/bin/python -m pytest "$@"
