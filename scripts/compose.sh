#!/usr/bin/env bash
# `docker compose` without Docker Desktop or Docker's apt repository: builds the real Compose
# plugin (Go) from the Go module proxy and installs it as a Docker CLI plugin. No Docker
# engine is needed for `docker compose config` (the check the tests run); `up` needs one.
#
#   bash scripts/compose.sh install    # idempotent: does nothing when the pinned version is there
#   bash scripts/compose.sh version    # what `docker compose version` says
#   bash scripts/compose.sh config     # docker compose config --quiet on ./docker-compose.yml
#
# The plugin lands in ${DOCKER_CONFIG:-~/.docker}/cli-plugins/docker-compose, where the docker
# CLI looks for it; the binary also runs on its own (`docker-compose config`) where there is
# no docker CLI. It is built from the module's source (`go mod download` + `go build ./cmd`),
# because `go install module/cmd@version` refuses a go.mod with exclude directives, as
# Compose's has. First install: about 2 minutes on 2 cores (downloads plus compile); the Go
# module and build caches make a rebuild much faster.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)

# Pinned: Compose v5 is the continuation of the v2 plugin (same code, same CLI). Each version
# needs at least the Go version its go.mod names; the first one this Go can build is used.
#   module path                    version  needs go
CANDIDATES=(
  "github.com/docker/compose/v5    v5.6.0   1.26.8"
  "github.com/docker/compose/v2    v2.40.3  1.24.9"
)

PLUGIN_DIR=${DOCKER_CONFIG:-${HOME:-/root}/.docker}/cli-plugins
PLUGIN=$PLUGIN_DIR/docker-compose

log() { printf 'compose: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

# "1.26.8" -> comparable number
version_number() {
  local IFS=. major minor patch
  read -r major minor patch <<<"$1"
  echo $((major * 1000000 + ${minor:-0} * 1000 + ${patch:-0}))
}

go_version() {
  go env GOVERSION 2>/dev/null | sed -E 's/^go//; s/[^0-9.].*$//'
}

# The command that runs compose: the docker CLI with the plugin, else the plugin alone.
compose_cmd() {
  if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
    echo docker compose
  elif [[ -x $PLUGIN ]]; then
    echo "$PLUGIN"
  else
    return 1
  fi
}

installed_version() {
  [[ -x $PLUGIN ]] || return 1
  "$PLUGIN" version --short 2>/dev/null | sed 's/^v//'
}

cmd_install() {
  command -v go >/dev/null || die "Go is needed to build the Compose plugin (this machine kind ships it in /usr/local/go)"
  local have module version needs
  have=$(go_version)
  [[ -n $have ]] || die "cannot tell the Go version (go env GOVERSION)"
  local chosen=
  for line in "${CANDIDATES[@]}"; do
    read -r module version needs <<<"$line"
    if (($(version_number "$have") >= $(version_number "$needs"))); then chosen=$line; break; fi
  done
  [[ -n $chosen ]] || die "Go $have is too old for every pinned Compose version (${CANDIDATES[*]})"
  read -r module version needs <<<"$chosen"

  if [[ $(installed_version || true) == "${version#v}" ]]; then
    log "Compose ${version} already installed at $PLUGIN"
  else
    local started=$SECONDS work src
    work=$(mktemp -d)
    # shellcheck disable=SC2064  # expand $work now
    trap "chmod -R u+w '$work' 2>/dev/null; rm -rf '$work'" EXIT
    log "building Compose $version from the Go module proxy with Go $have (first time: about 2 minutes)"
    # GOTOOLCHAIN=local: never download another Go toolchain; use this one or fail.
    src=$(GOTOOLCHAIN=local GOFLAGS='' go mod download -json "$module@$version" \
          | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d $src ]] || die "go mod download $module@$version failed"
    # The module cache is read-only; build a writable copy so go.mod is used as the main module.
    cp -r "$src" "$work/src"
    chmod -R u+w "$work/src"
    (cd "$work/src" && GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
       go build -trimpath -ldflags "-s -w -X $module/internal.Version=$version" \
       -o "$work/docker-compose" ./cmd) || die "go build of Compose $version failed"
    mkdir -p "$PLUGIN_DIR"
    mv -f "$work/docker-compose" "$PLUGIN"
    log "installed Compose $version at $PLUGIN in $((SECONDS - started))s"
  fi

  if command -v docker >/dev/null; then
    docker compose version >/dev/null 2>&1 \
      || die "the docker CLI does not pick up $PLUGIN (is DOCKER_CONFIG set elsewhere?)"
    log "$(docker compose version)"
  else
    log "no docker CLI on this machine: run the plugin on its own, as '$PLUGIN config'"
  fi
}

cmd_config() {
  local cmd
  cmd=$(compose_cmd) || die "Compose is not installed: bash scripts/compose.sh install"
  # shellcheck disable=SC2086  # "docker compose" is two words on purpose
  (cd "$REPO_DIR" && $cmd -f docker-compose.yml config --quiet "$@")
  log "docker-compose.yml is valid"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    install) cmd_install ;;
    version) cmd=$(compose_cmd) || die "Compose is not installed: bash scripts/compose.sh install"
             $cmd version ;;
    config) cmd_config "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
