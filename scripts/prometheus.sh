#!/usr/bin/env bash
# Prometheus for newsdedup without Docker: Debian's package (Prometheus and promtool 2.42).
#
#   bash scripts/prometheus.sh install
#       apt-get installs `prometheus` if promtool or prometheus is missing (idempotent). The
#       package enables a system service on :9090; it is stopped and disabled, so only the
#       servers started by `run` are up (their own port and data folder, whatever it does).
#   bash scripts/prometheus.sh check
#       promtool check config deploy/prometheus/prometheus.yml (and the rule files it names),
#       promtool check rules deploy/prometheus/alerts.yml,
#       promtool test rules deploy/prometheus/alerts_test.yml.
#   bash scripts/prometheus.sh run CONFIG PORT DATA_DIR
#       Starts Prometheus on 127.0.0.1:PORT in the background with CONFIG, storing in DATA_DIR
#       (created; its log is DATA_DIR/prometheus.log), waits until /-/ready answers, and prints
#       its pid on stdout (nothing else). The caller stops it: kill PID. Exits non-zero, with
#       the log's tail on stderr, if it does not become ready in NEWSDEDUP_PROMETHEUS_TIMEOUT
#       seconds (default 30).
#       Example:  pid=$(bash scripts/prometheus.sh run my.yml 19090 /tmp/prom) && ... ; kill "$pid"
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
PROM_DIR=$REPO_DIR/deploy/prometheus
START_TIMEOUT=${NEWSDEDUP_PROMETHEUS_TIMEOUT:-30}

log() { printf 'prometheus: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
}

# The Debian package starts and enables prometheus.service (or its init script) on install;
# the tests and the compose stack do not use it, and it would hold :9090.
disable_system_service() {
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  else
    if [[ -x /etc/init.d/prometheus ]]; then
      /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null; then update-rc.d prometheus disable >/dev/null 2>&1 || true; fi
  fi
}

cmd_install() {
  if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    log "already installed: $(promtool --version 2>&1 | head -n 1)"
    return 0
  fi
  [[ $EUID -eq 0 ]] || die "need root to apt-get install prometheus (or install it yourself)"
  command -v apt-get >/dev/null || die "no apt-get here: install Prometheus (promtool and prometheus) yourself"
  log "apt-get install prometheus"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >&2
  disable_system_service
  command -v promtool >/dev/null || die "promtool still missing after apt-get install prometheus"
  log "installed: $(promtool --version 2>&1 | head -n 1)"
}

need_promtool() {
  command -v promtool >/dev/null || die "promtool is missing: bash scripts/prometheus.sh install"
}

cmd_check() {
  need_promtool
  promtool check config "$PROM_DIR/prometheus.yml"
  promtool check rules "$PROM_DIR/alerts.yml"
  promtool test rules "$PROM_DIR/alerts_test.yml"
}

ready() {
  # curl is on Debian by default; fall back to bash's /dev/tcp and a bare HTTP request.
  if command -v curl >/dev/null; then
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$1/-/ready" 2>/dev/null
  else
    # shellcheck disable=SC2016  # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"; printf "GET /-/ready HTTP/1.0\r\n\r\n" >&3;
                       head -n 1 <&3 | grep -q " 200 "' "$1" 2>/dev/null
  fi
}

cmd_run() {
  (($# == 3)) || die "usage: prometheus.sh run CONFIG PORT DATA_DIR"
  local config=$1 port=$2 data=$3
  command -v prometheus >/dev/null || die "prometheus is missing: bash scripts/prometheus.sh install"
  [[ -f $config ]] || die "no config file $config"
  [[ $port =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
  mkdir -p "$data"
  config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
  data=$(cd "$data" && pwd)
  local logfile=$data/prometheus.log
  # nohup and no inherited stdout: the caller's $(...) returns as soon as the pid is printed.
  nohup prometheus \
    --config.file="$config" \
    --web.listen-address="127.0.0.1:$port" \
    --storage.tsdb.path="$data" \
    --storage.tsdb.retention.time=1d \
    --web.enable-lifecycle \
    --log.format=json \
    </dev/null >"$logfile" 2>&1 &
  local pid=$!
  local deadline=$((SECONDS + START_TIMEOUT))
  until ready "$port"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$logfile" >&2 || true
      die "Prometheus exited before it was ready (log: $logfile)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 20 "$logfile" >&2 || true
      kill "$pid" 2>/dev/null || true
      die "Prometheus was not ready on 127.0.0.1:$port after ${START_TIMEOUT}s (log: $logfile)"
    fi
    sleep 0.2
  done
  log "ready on http://127.0.0.1:$port (pid $pid, data $data)"
  echo "$pid"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    install) cmd_install ;;
    check) cmd_check ;;
    run) cmd_run "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
