#!/usr/bin/env bash
# Local backing services for newsdedup: Apache Kafka (KRaft, single node) and PostgreSQL,
# started as plain processes on 127.0.0.1 (this machine has no Docker engine).
# Run `scripts/services.sh --help` for usage. Messages go to stderr; `up` and `env`
# print only `export ...` lines on stdout, so their output can be eval'ed (see --help).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)

# ---------------------------------------------------------------------------------------
# Settings (pinned versions, ports, folders). Env overrides are listed in --help.
# ---------------------------------------------------------------------------------------
KAFKA_VERSION=4.1.1     # org.apache.kafka:kafka_2.13 from Maven Central
LOG4J_VERSION=2.24.3    # log4j2 binding matching Kafka 4.0/4.1 (use 2.25.x for Kafka 4.2+)

HOST=127.0.0.1
KAFKA_PORT=${NEWSDEDUP_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${NEWSDEDUP_KAFKA_CONTROLLER_PORT:-19093}
PG_PORT=${NEWSDEDUP_PG_PORT:-15432}
START_TIMEOUT=${NEWSDEDUP_START_TIMEOUT:-90}   # seconds, per service
# A second broker with listeners of its own (the secured one of tests/integration/kafka_secure.py):
# a properties file appended to server.properties (its keys win), and a file of StorageTool
# --add-scram entries (one a line) given when the storage is formatted (KIP-900).
KAFKA_EXTRA_CONFIG=${NEWSDEDUP_KAFKA_EXTRA_CONFIG:-}
KAFKA_SCRAM_USERS=${NEWSDEDUP_KAFKA_SCRAM_USERS:-}
KAFKA_STOP_TIMEOUT=30                         # seconds of SIGTERM grace before SIGKILL

# Local-development defaults only: the server listens on loopback (127.0.0.1) and nothing
# else, so these well-known passwords never protect anything reachable from outside.
# Set NEWSDEDUP_PG_OWNER_PASSWORD / NEWSDEDUP_PG_APP_PASSWORD / NEWSDEDUP_PG_READER_PASSWORD to use others.
PG_OWNER_PASSWORD=${NEWSDEDUP_PG_OWNER_PASSWORD:-owner-dev-pw}
PG_APP_PASSWORD=${NEWSDEDUP_PG_APP_PASSWORD:-app-dev-pw}
PG_READER_PASSWORD=${NEWSDEDUP_PG_READER_PASSWORD:-reader-dev-pw}
PG_OWNER_ROLE=newsdedup_owner
PG_APP_ROLE=newsdedup_app
PG_READER_ROLE=newsdedup_reader
PG_DATABASES=(newsdedup newsdedup_test)
# TLS (all three or none): the server's certificate and key (PEM), and the CA that issued the certificate,
# which the printed URLs trust (sslmode=verify-full). With them, TCP takes TLS connections only.
PG_TLS_CERT=${NEWSDEDUP_PG_TLS_CERT:-}
PG_TLS_KEY=${NEWSDEDUP_PG_TLS_KEY:-}
PG_TLS_CA=${NEWSDEDUP_PG_TLS_CA:-}

CACHE_DIR=${NEWSDEDUP_CACHE_DIR:-${HOME:-/root}/.cache/newsdedup}
RUN_DIR=${NEWSDEDUP_RUN_DIR:-$REPO_DIR/.services}

KAFKA_HOME=$CACHE_DIR/kafka-$KAFKA_VERSION
KAFKA_LIB=$KAFKA_HOME/lib
KAFKA_RUN=$RUN_DIR/kafka
KAFKA_DATA=$KAFKA_RUN/data
KAFKA_LOGS=$KAFKA_RUN/logs
KAFKA_CONFIG=$KAFKA_RUN/server.properties
KAFKA_PID_FILE=$KAFKA_RUN/kafka.pid
KAFKA_CLUSTER_ID_FILE=$KAFKA_RUN/cluster-id
KAFKA_LOG4J_CONFIG=$SCRIPT_DIR/kafka/log4j2.properties
KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml

# The cluster lives in the run dir, unless the `postgres` OS user (see PG_OS_USER below) could not
# reach it: as root in a private folder (mktemp -d, a 700 home), it goes to /var/lib/newsdedup,
# under a name derived from the run dir, so that `up`, `status` and `down` all find the same place.
others_can_search() {
  local dir=$1
  while [[ $dir != / && -n $dir ]]; do
    if [[ -e $dir ]] && (( ($(stat -c %a "$dir") & 1) == 0 )); then return 1; fi
    dir=$(dirname "$dir")
  done
}
if [[ -n ${NEWSDEDUP_PG_RUN_DIR:-} ]]; then
  PG_RUN=$NEWSDEDUP_PG_RUN_DIR
elif [[ $EUID -eq 0 ]] && ! others_can_search "$RUN_DIR"; then
  PG_RUN=/var/lib/newsdedup/$(printf '%s' "$RUN_DIR" | sha1sum | cut -c1-12)/postgres
else
  PG_RUN=$RUN_DIR/postgres
fi
PG_DATA=$PG_RUN/data
PG_SOCKET_DIR=$PG_RUN/socket
PG_LOG=$PG_RUN/postgres.log

# PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` OS
# user (created by Debian's package); as any other user it simply belongs to that user.
if [[ $EUID -eq 0 ]]; then PG_OS_USER=postgres; else PG_OS_USER=$(id -un); fi
PG_SUPERUSER=$PG_OS_USER   # database superuser, reachable only through the unix socket (peer auth)

ALL_SERVICES=(kafka postgres)
APT_UPDATED=

# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------
log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  cat <<EOF
Usage: scripts/services.sh COMMAND [SERVICE...] [OPTIONS]

Runs the backing services of newsdedup as local processes on $HOST (no Docker):
  kafka     Apache Kafka $KAFKA_VERSION, KRaft mode, one combined broker+controller node
  postgres  PostgreSQL from Debian's package, in a private cluster

Commands (SERVICE defaults to both; name one to act on it alone, e.g. \`down kafka\`):
  up [SERVICE...]       Install what is missing, start, wait until ready, then print the
                        connection settings as export lines on stdout. Idempotent: services
                        that are already running and healthy are left alone.
  down [SERVICE...] [--purge]
                        Stop (Kafka: SIGTERM, up to ${KAFKA_STOP_TIMEOUT}s, then SIGKILL; PostgreSQL:
                        pg_ctl stop -m fast). Idempotent. --purge also deletes the service's
                        data in the run dir (the downloaded jar cache is kept).
  status [SERVICE...]   Print running/stopped with pid and port for each service.
                        Exit 0 if all named services are running, 3 otherwise.
  env                   Print the connection settings as shell export lines:
                          eval "\$(scripts/services.sh env)"
  kafka-lib             Print the folder of Kafka's jars (the broker's runtime, with the Java client
                        kafka-clients and its codecs), e.g. for java -cp "\$(scripts/services.sh kafka-lib)/*".
  -h, --help            This text.

In scripts (CI), keep up's exit status: \`eval "\$(services.sh up)"\` alone would hide a
failed start, because eval of an empty string succeeds. Instead:
  settings=\$(bash scripts/services.sh up) && eval "\$settings"

What \`up\` sets up:
  kafka     jars: org.apache.kafka:kafka_2.13:$KAFKA_VERSION + log4j $LOG4J_VERSION binding, fetched once
            with mvn (scripts/kafka/pom.xml) into \$NEWSDEDUP_CACHE_DIR/kafka-$KAFKA_VERSION/lib.
            Installs default-jre-headless and maven with apt-get if java/mvn are missing.
            PLAINTEXT $HOST:$KAFKA_PORT, controller $HOST:$KAFKA_CONTROLLER_PORT, heap 256-512 MB,
            auto.create.topics.enable=false (the app creates its topics), single-node
            settings (replication factor 1, 1 offsets partition, no rebalance delay,
            group.min.session.timeout.ms=1000). Log: <run dir>/kafka/logs/server.log.
  postgres  apt-get installs \`postgresql\` if no /usr/lib/postgresql/*/bin/initdb exists.
            Cluster in <run dir>/postgres/data owned by the '$PG_OS_USER' OS user, listening on
            $HOST:$PG_PORT only (scram-sha-256 passwords over TCP), unix socket in
            <run dir>/postgres/socket (peer auth, superuser '$PG_SUPERUSER').
            Databases: ${PG_DATABASES[*]}, each owned by $PG_OWNER_ROLE, which owns schema
            public and runs migrations; $PG_APP_ROLE gets CONNECT, USAGE on schema public and,
            through default privileges, SELECT/INSERT/UPDATE/DELETE on tables and
            USAGE/SELECT on sequences that $PG_OWNER_ROLE creates; it cannot create objects.
            $PG_READER_ROLE gets CONNECT, USAGE and SELECT on the tables (those there and, through
            default privileges, those $PG_OWNER_ROLE creates later), nothing else.
            CREATE on schema public is revoked from PUBLIC. Log: <run dir>/postgres/postgres.log.
            With NEWSDEDUP_PG_TLS_CERT/_KEY/_CA: ssl=on (TLS 1.2+), pg_hba.conf takes hostssl
            scram-sha-256 only (plaintext TCP is rejected), and the printed URLs end in
            ?sslmode=verify-full&sslrootcert=<the CA>. Certificate and key are copied into the data
            folder (mode 600) on each \`up\`, which reloads a running server: a renewed certificate
            takes effect without a restart.

Environment overrides (defaults in brackets):
  NEWSDEDUP_RUN_DIR                 run/data folder [<repo>/.services]
  NEWSDEDUP_PG_RUN_DIR              PostgreSQL's folder [<run dir>/postgres; as root, when the
                                    postgres user cannot reach the run dir:
                                    /var/lib/newsdedup/<hash of run dir>/postgres]
  NEWSDEDUP_CACHE_DIR               jar cache [\$HOME/.cache/newsdedup]
  NEWSDEDUP_KAFKA_PORT              broker port [19092]
  NEWSDEDUP_KAFKA_CONTROLLER_PORT   KRaft controller port [19093]
  NEWSDEDUP_PG_PORT                 PostgreSQL port [15432]
  NEWSDEDUP_START_TIMEOUT           readiness timeout per service, seconds [90]
  NEWSDEDUP_KAFKA_EXTRA_CONFIG      properties file appended to Kafka's server.properties, its keys
                                    winning (other listeners, TLS, SASL, an authorizer) [none]
  NEWSDEDUP_KAFKA_SCRAM_USERS       file of SCRAM users made when the storage is formatted, one
                                    StorageTool --add-scram entry a line, e.g.
                                    SCRAM-SHA-512=[name=admin,password=...] [none]
  NEWSDEDUP_PG_OWNER_PASSWORD       password of $PG_OWNER_ROLE [owner-dev-pw]
  NEWSDEDUP_PG_APP_PASSWORD         password of $PG_APP_ROLE [app-dev-pw]
  NEWSDEDUP_PG_READER_PASSWORD      password of $PG_READER_ROLE [reader-dev-pw]
  (local loopback-only development defaults; \`up\` re-applies the passwords each time)
  NEWSDEDUP_PG_TLS_CERT, NEWSDEDUP_PG_TLS_KEY, NEWSDEDUP_PG_TLS_CA
                                    PostgreSQL over TLS only: server certificate, its key, and the
                                    CA clients verify it with (PEM files; all three or none) [none]

Printed by \`env\` and at the end of \`up\`:
  NEWSDEDUP_KAFKA_BOOTSTRAP_SERVERS, NEWSDEDUP_DATABASE_URL (app role),
  NEWSDEDUP_MIGRATION_DATABASE_URL (owner role), NEWSDEDUP_TEST_DATABASE_URL,
  NEWSDEDUP_TEST_MIGRATION_DATABASE_URL, NEWSDEDUP_TEST_READER_DATABASE_URL (the three roles,
  database newsdedup_test).
EOF
}

# True if something accepts TCP connections on $HOST:$1. `timeout` guards against a hang.
port_open() {
  # shellcheck disable=SC2016  # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# True if pid $1 exists and is not a zombie (kill -0 succeeds on zombies too, and an
# orphaned broker may sit unreaped as a zombie where PID 1 does not reap children).
pid_alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# Percent-encode $1 for use inside a URL's user-info part.
urlencode() {
  local LC_ALL=C s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9._~-]) out+=$c ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s' "$out"
}

# Escape $1 as a single-quoted value in postgresql.conf.
pg_conf_quote() { printf "'%s'" "${1//\'/\'\'}"; }

apt_install() {
  [[ $EUID -eq 0 ]] || die "need root to install $*: run as root, or install them yourself"
  command -v apt-get >/dev/null || die "no apt-get on this machine: install $* yourself"
  if [[ -z $APT_UPDATED ]]; then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}

validate_settings() {
  local name value
  for name in KAFKA_PORT KAFKA_CONTROLLER_PORT PG_PORT START_TIMEOUT; do
    value=${!name}
    [[ $value =~ ^[0-9]+$ ]] || die "$name must be a number, got '$value'"
  done
  [[ $KAFKA_PORT != "$KAFKA_CONTROLLER_PORT" ]] || die "Kafka broker and controller ports must differ"
  [[ $KAFKA_PORT != "$PG_PORT" && $KAFKA_CONTROLLER_PORT != "$PG_PORT" ]] \
    || die "the PostgreSQL port must differ from the Kafka ports"
}

# Serialise up/down against each other (e.g. two test runs starting services at once).
take_lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/.lock"
  if ! flock -w 300 9; then die "another services.sh up/down holds $RUN_DIR/.lock"; fi
}

# ---------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------
JAVA=

# Kafka 4 needs Java 17+; prefer $JAVA_HOME, else java on PATH, else install Debian's default JRE.
ensure_java() {
  if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    JAVA=$JAVA_HOME/bin/java
  elif command -v java >/dev/null; then
    JAVA=$(command -v java)
  else
    apt_install default-jre-headless
    JAVA=$(command -v java) || die "java still missing after apt-get install"
  fi
  local spec
  spec=$("$JAVA" -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2; exit}')
  [[ ${spec%%.*} =~ ^[0-9]+$ && ${spec%%.*} -ge 17 ]] \
    || die "Kafka $KAFKA_VERSION needs Java 17+, but $JAVA is version '${spec:-unknown}' (set JAVA_HOME)"
}

# Fetch the broker's runtime jars once into the cache. They land in a temp folder that is
# renamed into place only when complete, so an interrupted download is never mistaken
# for a usable cache.
ensure_kafka_jars() {
  if [[ -f $KAFKA_LIB/.complete ]]; then return 0; fi
  if ! command -v mvn >/dev/null; then
    # `maven` pulls a JRE too; ask for the headless default one explicitly.
    apt_install default-jre-headless maven
  fi
  mkdir -p "$KAFKA_HOME"
  local work
  work=$(mktemp -d "$KAFKA_HOME/download.XXXXXX")
  # Run on a copy of the pom so mvn leaves nothing (target/ etc.) in the repo tree.
  cp "$KAFKA_POM" "$work/pom.xml"
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIB (first run only)"
  local started=$SECONDS
  # mvn's output goes to a file and is shown only on failure (even with -B -q, Maven 3.8
  # prints stray colour codes).
  if ! (cd "$work" && mvn -B -q -Dstyle.color=never dependency:copy-dependencies \
          -DincludeScope=runtime -DoutputDirectory="$work/lib" \
          -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION") >"$work/mvn.log" 2>&1; then
    sed 's/\x1b\[[0-9;]*m//g' "$work/mvn.log" | grep -v '^[[:space:]]*$' >&2 || true
    rm -rf "$work"
    die "mvn could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION (mvn output above)"
  fi
  [[ -f $work/lib/kafka_2.13-$KAFKA_VERSION.jar ]] || { rm -rf "$work"; die "mvn finished but kafka_2.13-$KAFKA_VERSION.jar is missing"; }
  touch "$work/lib/.complete"
  rm -rf "$KAFKA_LIB"
  mv "$work/lib" "$KAFKA_LIB"
  rm -rf "$work"
  log "fetched $(find "$KAFKA_LIB" -name '*.jar' | wc -l) jars in $((SECONDS - started))s"
}

# JVM flags shared by the broker and the storage tool. The G1 flags are the ones Kafka's
# own start script uses.
kafka_java_opts() {
  printf '%s\n' -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$KAFKA_LOG4J_CONFIG" "-Dkafka.logs.dir=$KAFKA_LOGS"
}

kafka_storage_tool() {
  local opts
  mapfile -t opts < <(kafka_java_opts)
  "$JAVA" "${opts[@]}" -cp "$KAFKA_LIB/*" kafka.tools.StorageTool "$@"
}

# Rewritten on every start so port overrides take effect. The controller quorum is given
# statically (controller.quorum.voters) rather than bootstrapped with --standalone: a
# static voter list is read from this file at each start, whereas a --standalone format
# records the controller's endpoint in the metadata log, which would go stale if
# NEWSDEDUP_KAFKA_CONTROLLER_PORT changed later.
write_kafka_config() {
  cat >"$KAFKA_CONFIG" <<EOF
# Generated by scripts/services.sh on each start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA

# The app creates its own topics; a typo'd topic name should fail, not appear.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1

# One node: every internal topic has replication factor 1, and one partition each
# (the default 50 partitions take seconds to create on first use).
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1

# Tests: join groups immediately and allow short consumer session timeouts.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000

# A 2-core dev machine: fewer threads than the defaults.
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
EOF
  if [[ -n $KAFKA_EXTRA_CONFIG ]]; then
    [[ -r $KAFKA_EXTRA_CONFIG ]] || die "kafka: NEWSDEDUP_KAFKA_EXTRA_CONFIG=$KAFKA_EXTRA_CONFIG is not a readable file"
    # java.util.Properties keeps the last value of a key, so these replace the ones above (listeners...).
    { echo; echo "# Appended from $KAFKA_EXTRA_CONFIG (NEWSDEDUP_KAFKA_EXTRA_CONFIG)"; cat "$KAFKA_EXTRA_CONFIG"; } \
      >>"$KAFKA_CONFIG"
  fi
}

# Print the pid of our broker if it is alive. Falls back to scanning /proc for a java
# process started with our exact config file, in case the pid file was lost.
kafka_pid() {
  local pid=
  if [[ -f $KAFKA_PID_FILE ]]; then pid=$(<"$KAFKA_PID_FILE"); fi
  if [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" && kafka_cmdline_matches "$pid"; then
    echo "$pid"; return 0
  fi
  local file
  # One grep over all cmdlines (NUL-separated args) narrows the scan to java processes
  # running kafka.Kafka; then check that it is ours.
  for file in $(grep -lsxzF 'kafka.Kafka' /proc/[0-9]*/cmdline 2>/dev/null || true); do
    pid=${file#/proc/}; pid=${pid%/cmdline}
    if kafka_cmdline_matches "$pid" && pid_alive "$pid"; then echo "$pid"; return 0; fi
  done
  return 1
}

kafka_cmdline_matches() {
  local cmd
  cmd=$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  grep -qx 'kafka.Kafka' <<<"$cmd" && grep -qxF "$KAFKA_CONFIG" <<<"$cmd"
}

kafka_log_tail() {
  local f
  for f in "$KAFKA_LOGS/server.log" "$KAFKA_LOGS/kafka.out"; do
    [[ -s $f ]] || continue
    log "---- last 40 lines of $f ----"
    tail -n 40 "$f" >&2
  done
}

# Start the broker in the background if it is not running; does not wait for readiness.
kafka_launch() {
  local pid
  if pid=$(kafka_pid); then
    log "kafka: already running (pid $pid)"
    return 0
  fi
  rm -f "$KAFKA_PID_FILE"
  local port
  for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$port"; then
      die "kafka: port $HOST:$port is already in use by another process (set NEWSDEDUP_KAFKA_PORT / NEWSDEDUP_KAFKA_CONTROLLER_PORT)"
    fi
  done

  ensure_java
  ensure_kafka_jars
  mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
  write_kafka_config

  # Format once per fresh log dir (meta.properties marks a formatted one). The cluster id
  # is kept beside it so the same id is reused if only the data were wiped.
  if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
    if [[ ! -s $KAFKA_CLUSTER_ID_FILE ]]; then
      kafka_storage_tool random-uuid | tail -n 1 >"$KAFKA_CLUSTER_ID_FILE"
    fi
    local scram=() entry
    if [[ -n $KAFKA_SCRAM_USERS ]]; then
      [[ -r $KAFKA_SCRAM_USERS ]] || die "kafka: NEWSDEDUP_KAFKA_SCRAM_USERS=$KAFKA_SCRAM_USERS is not a readable file"
      # The users exist before the broker first starts, so a super user can log in to create the ACLs.
      # (Their passwords are briefly in the storage tool's command line: for local, throw-away users.)
      while IFS= read -r entry; do
        if [[ -n $entry ]]; then scram+=(--add-scram "$entry"); fi
      done <"$KAFKA_SCRAM_USERS"
    fi
    log "kafka: formatting $KAFKA_DATA (cluster id $(<"$KAFKA_CLUSTER_ID_FILE"), $((${#scram[@]} / 2)) SCRAM users)"
    if ! kafka_storage_tool format --cluster-id "$(<"$KAFKA_CLUSTER_ID_FILE")" \
           --config "$KAFKA_CONFIG" "${scram[@]}" >>"$KAFKA_LOGS/kafka.out" 2>&1; then
      kafka_log_tail
      die "kafka: formatting the storage failed"
    fi
  fi

  local opts
  mapfile -t opts < <(kafka_java_opts)
  log "kafka: starting $KAFKA_VERSION on $HOST:$KAFKA_PORT (controller $HOST:$KAFKA_CONTROLLER_PORT)"
  printf '\n==== %s services.sh: starting kafka.Kafka ====\n' "$(date -Is)" >>"$KAFKA_LOGS/kafka.out"
  # 9>&- keeps the up/down lock fd out of the long-lived broker.
  # setsid: own session, so the broker outlives this shell and no terminal hangup reaches
  # it. The inner bash writes its own pid and then execs java, so the pid file holds the
  # java pid whether or not setsid had to fork.
  # shellcheck disable=SC2016  # $$ and $@ belong to the inner bash
  (cd "$KAFKA_RUN" && exec setsid bash -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_PID_FILE" \
      "$JAVA" "${opts[@]}" -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_CONFIG") \
      </dev/null >>"$KAFKA_LOGS/kafka.out" 2>&1 9>&- &
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s $KAFKA_PID_FILE ]] && return 0
    sleep 0.1
  done
  die "kafka: the broker process did not start (no pid file)"
}

# Wait until the broker accepts connections: with a fixed port the listener opens only
# once the broker is ready. The process must stay alive meanwhile.
kafka_wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT)) pid
  while :; do
    if ! pid=$(kafka_pid); then
      kafka_log_tail
      die "kafka: the broker exited during startup (logs above; full log in $KAFKA_LOGS)"
    fi
    if port_open "$KAFKA_PORT"; then
      log "kafka: ready on $HOST:$KAFKA_PORT (pid $pid)"
      return 0
    fi
    if ((SECONDS >= deadline)); then
      kafka_log_tail
      kafka_stop
      die "kafka: not ready after ${START_TIMEOUT}s (stopped it; logs above, full log in $KAFKA_LOGS)"
    fi
    sleep 0.5
  done
}

kafka_stop() {
  local pid
  if ! pid=$(kafka_pid); then
    rm -f "$KAFKA_PID_FILE"
    log "kafka: not running"
    return 0
  fi
  log "kafka: stopping pid $pid (SIGTERM, up to ${KAFKA_STOP_TIMEOUT}s)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while pid_alive "$pid"; do
    if ((SECONDS >= deadline)); then
      log "kafka: still alive after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.3
  done
  rm -f "$KAFKA_PID_FILE"
  log "kafka: stopped"
}

kafka_status() {
  local pid
  if pid=$(kafka_pid); then
    if port_open "$KAFKA_PORT"; then
      echo "kafka: running (pid $pid, $HOST:$KAFKA_PORT, controller $HOST:$KAFKA_CONTROLLER_PORT)"
      return 0
    fi
    echo "kafka: starting or unhealthy (pid $pid alive, $HOST:$KAFKA_PORT not accepting connections)"
    return 1
  fi
  echo "kafka: stopped"
  return 1
}

# ---------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------
PG_BIN=

# Run a command as the cluster's OS user. cd / first: postgres cannot read root's cwd.
# 9>&-: the lock fd must not leak into the postmaster, or it would hold the lock forever.
as_pg() {
  if [[ $EUID -eq 0 ]]; then
    (cd / && runuser -u "$PG_OS_USER" -- "$@") 9>&-
  else
    "$@" 9>&-
  fi
}

# Newest /usr/lib/postgresql/<major>/bin/initdb, or nothing.
newest_initdb() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1 || true
}

# Pick the server binaries: the major version the cluster was created with if it exists,
# else the newest installed. Installs Debian's `postgresql` if none is installed.
ensure_postgres_bin() {
  local candidates
  if [[ -s $PG_DATA/PG_VERSION ]]; then
    local major
    major=$(<"$PG_DATA/PG_VERSION")
    PG_BIN=/usr/lib/postgresql/$major/bin
    [[ -x $PG_BIN/postgres ]] \
      || die "postgres: the cluster in $PG_DATA is version $major, but $PG_BIN/postgres is missing (install postgresql-$major, or \`down postgres --purge\`)"
    return 0
  fi
  candidates=$(newest_initdb)
  if [[ -z $candidates ]]; then
    apt_install postgresql
    candidates=$(newest_initdb)
    [[ -n $candidates ]] || die "postgres: no /usr/lib/postgresql/*/bin/initdb after installing postgresql"
  fi
  PG_BIN=$(dirname "$candidates")
  if [[ $EUID -eq 0 ]] && ! id "$PG_OS_USER" >/dev/null 2>&1; then
    die "postgres: OS user '$PG_OS_USER' is missing (Debian's postgresql package creates it)"
  fi
}

pg_running() {
  [[ -f $PG_DATA/PG_VERSION ]] || return 1
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_pid() { head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null; }

pg_log_tail() {
  if [[ -s $PG_LOG ]]; then
    log "---- last 40 lines of $PG_LOG ----"
    tail -n 40 "$PG_LOG" >&2
  fi
}

# Create the cluster once. Local (socket) connections use peer auth for the OS user;
# TCP connections need a scram-sha-256 password.
pg_init_cluster() {
  mkdir -p "$PG_RUN"
  if [[ $PG_RUN == /var/lib/newsdedup/* ]]; then chmod 755 /var/lib/newsdedup "$(dirname "$PG_RUN")"; fi
  if [[ $EUID -eq 0 ]]; then chown "$PG_OS_USER:" "$PG_RUN"; fi
  chmod 700 "$PG_RUN"
  as_pg test -w "$PG_RUN" \
    || die "postgres: OS user '$PG_OS_USER' cannot write $PG_RUN; every parent folder must be searchable by it (chmod o+x), or set NEWSDEDUP_RUN_DIR or NEWSDEDUP_PG_RUN_DIR elsewhere"
  as_pg mkdir -p "$PG_SOCKET_DIR"
  # A unix socket path is limited to 107 bytes.
  local sock="$PG_SOCKET_DIR/.s.PGSQL.$PG_PORT"
  ((${#sock} <= 107)) || die "postgres: socket path $sock is too long for a unix socket; set a shorter NEWSDEDUP_RUN_DIR"

  if [[ ! -s $PG_DATA/PG_VERSION ]]; then
    log "postgres: creating cluster in $PG_DATA ($PG_BIN)"
    # --no-locale: C collation, the same on every machine; UTF8 encoding.
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_SUPERUSER" -E UTF8 --no-locale \
      --auth-local=peer --auth-host=scram-sha-256 >"$PG_RUN/initdb.log" 2>&1 \
      || { cat "$PG_RUN/initdb.log" >&2; die "postgres: initdb failed"; }
    # Our settings live in newsdedup.conf, rewritten on each start (so port overrides apply).
    printf "\n# Added by scripts/services.sh\ninclude_if_exists = 'newsdedup.conf'\n" \
      | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
  fi
}

pg_tls_enabled() { [[ -n $PG_TLS_CERT ]]; }

pg_check_tls() {
  if [[ -z $PG_TLS_CERT && -z $PG_TLS_KEY && -z $PG_TLS_CA ]]; then return 0; fi
  local name
  for name in PG_TLS_CERT PG_TLS_KEY PG_TLS_CA; do
    [[ -n ${!name} ]] || die "postgres: NEWSDEDUP_PG_TLS_CERT, _KEY and _CA go together, but NEWSDEDUP_$name is empty"
    [[ -f ${!name} && -r ${!name} ]] || die "postgres: NEWSDEDUP_$name=${!name} is not a readable file"
  done
}

# Rewritten on each start (and on each 'up' of a running TLS server), so that TLS can be turned on and off.
pg_write_config() {
  if pg_tls_enabled; then
    local owner=()
    if [[ $EUID -eq 0 ]]; then owner=(-o "$PG_OS_USER" -g "$(id -gn "$PG_OS_USER")"); fi
    # Copies owned by the server's OS user: it may not be able to read the originals, and it refuses a
    # key that anyone else can read.
    install "${owner[@]}" -m 644 "$PG_TLS_CERT" "$PG_DATA/newsdedup-server.crt"
    install "${owner[@]}" -m 600 "$PG_TLS_KEY" "$PG_DATA/newsdedup-server.key"
  fi
  {
    echo "# Generated by scripts/services.sh on each start; edits are overwritten."
    echo "listen_addresses = '$HOST'"
    echo "port = $PG_PORT"
    echo "unix_socket_directories = $(pg_conf_quote "$PG_SOCKET_DIR")"
    echo "password_encryption = 'scram-sha-256'"
    echo "max_connections = 100"
    if pg_tls_enabled; then
      echo "ssl = on"
      echo "ssl_cert_file = 'newsdedup-server.crt'"  # relative to the data folder
      echo "ssl_key_file = 'newsdedup-server.key'"
      echo "ssl_min_protocol_version = 'TLSv1.2'"
    fi
  } | as_pg tee "$PG_DATA/newsdedup.conf" >/dev/null
  {
    echo "# Generated by scripts/services.sh on each start; edits are overwritten."
    echo "# TYPE    DATABASE USER ADDRESS      METHOD"
    echo "local     all      all               peer"
    if pg_tls_enabled; then
      # TLS or nothing: a client with sslmode=disable (or prefer, against a server without TLS) is turned away.
      echo "hostssl   all      all  $HOST/32 scram-sha-256"
      echo "hostnossl all      all  all          reject"
    else
      echo "host      all      all  $HOST/32 scram-sha-256"
    fi
  } | as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null
}

pg_start() {
  ensure_postgres_bin
  pg_check_tls
  if pg_running; then
    log "postgres: already running (pid $(pg_pid))"
    if pg_tls_enabled; then
      # PostgreSQL re-reads its certificate, key, TLS settings and pg_hba.conf on reload: a renewed
      # certificate (or another CA's) takes effect without a restart.
      pg_write_config
      as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" reload >/dev/null
      log "postgres: TLS certificate and settings reloaded"
    fi
  else
    if port_open "$PG_PORT"; then
      die "postgres: port $HOST:$PG_PORT is already in use by another process (set NEWSDEDUP_PG_PORT)"
    fi
    pg_init_cluster
    pg_write_config
    log "postgres: starting on $HOST:$PG_PORT"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$START_TIMEOUT" start >/dev/null; then
      pg_log_tail
      die "postgres: did not start (log above; full log in $PG_LOG)"
    fi
  fi
  pg_wait_ready
  pg_provision
}

pg_wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT))
  until "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 2; do
    if ((SECONDS >= deadline)); then
      pg_log_tail
      die "postgres: not accepting connections on $HOST:$PG_PORT after ${START_TIMEOUT}s"
    fi
    sleep 0.5
  done
  log "postgres: ready on $HOST:$PG_PORT (pid $(pg_pid))"
}

# psql as the superuser through the unix socket (peer auth, no password needed).
pg_superuser_psql() {
  local db=$1; shift
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" \
    -U "$PG_SUPERUSER" -d "$db" "$@"
}

# Roles, databases and grants; every statement is safe to repeat, so this runs on each
# `up`. Passwords are re-applied so a changed NEWSDEDUP_PG_*_PASSWORD takes effect.
# (They pass through psql -v, i.e. briefly visible in the local process list: fine for
# loopback-only development credentials.)
pg_provision() {
  pg_superuser_psql postgres -v owner_role="$PG_OWNER_ROLE" -v app_role="$PG_APP_ROLE" \
    -v reader_role="$PG_READER_ROLE" -v owner_pw="$PG_OWNER_PASSWORD" -v app_pw="$PG_APP_PASSWORD" \
    -v reader_pw="$PG_READER_PASSWORD" -f - <<'SQL'
SELECT format('CREATE ROLE %I', :'owner_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner_role') \gexec
SELECT format('CREATE ROLE %I', :'app_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_role') \gexec
SELECT format('CREATE ROLE %I', :'reader_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'reader_role') \gexec
ALTER ROLE :"owner_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'owner_pw';
ALTER ROLE :"app_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'app_pw';
ALTER ROLE :"reader_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'reader_pw';
SQL
  local db
  for db in "${PG_DATABASES[@]}"; do
    pg_superuser_psql postgres -v db="$db" -v owner_role="$PG_OWNER_ROLE" -f - <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
    pg_superuser_psql "$db" -v db="$db" -v owner_role="$PG_OWNER_ROLE" -v app_role="$PG_APP_ROLE" \
      -v reader_role="$PG_READER_ROLE" -f - <<'SQL'
ALTER DATABASE :"db" OWNER TO :"owner_role";
-- Only the three roles (and the superuser) may connect.
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"app_role";
GRANT CONNECT ON DATABASE :"db" TO :"reader_role";
-- The owner role owns schema public and so everything migrations create in it.
ALTER SCHEMA public OWNER TO :"owner_role";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"app_role";
-- The app role reads and writes rows of tables the owner role creates, nothing more.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
  GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"app_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
  GRANT USAGE, SELECT ON SEQUENCES TO :"app_role";
-- The reader role (reports, audits, ad-hoc queries) reads rows and nothing more: the tables there now
-- (a database migrated before this role existed) and, by default privileges, those created later.
GRANT USAGE ON SCHEMA public TO :"reader_role";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reader_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
  GRANT SELECT ON TABLES TO :"reader_role";
SQL
  done
  log "postgres: databases ${PG_DATABASES[*]} with roles $PG_OWNER_ROLE (owner), $PG_APP_ROLE (app) and $PG_READER_ROLE (reader) are in place"
}

pg_stop() {
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    log "postgres: not running (no cluster)"
    return 0
  fi
  ensure_postgres_bin
  if ! pg_running; then
    log "postgres: not running"
    return 0
  fi
  log "postgres: stopping pid $(pg_pid) (pg_ctl stop -m fast)"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" stop -m fast -w -t 60 >/dev/null \
    || die "postgres: pg_ctl stop failed (log: $PG_LOG)"
  log "postgres: stopped"
}

pg_status() {
  if [[ -f $PG_DATA/PG_VERSION ]] && ensure_postgres_bin 2>/dev/null && pg_running; then
    if "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 2; then
      echo "postgres: running (pid $(pg_pid), $HOST:$PG_PORT)"
      return 0
    fi
    echo "postgres: starting or unhealthy (pid $(pg_pid) alive, $HOST:$PG_PORT not accepting connections)"
    return 1
  fi
  echo "postgres: stopped"
  return 1
}

# ---------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------
pg_url() { # role password database
  local query=
  if pg_tls_enabled; then  # libpq checks the server's certificate against the CA and its name against the host
    query="?sslmode=verify-full&sslrootcert=$(urlencode "$(realpath -m "$PG_TLS_CA")")"
  fi
  printf 'postgresql+psycopg://%s:%s@%s:%s/%s%s' "$1" "$(urlencode "$2")" "$HOST" "$PG_PORT" "$3" "$query"
}

print_env() {
  printf 'export %s=%q\n' \
    NEWSDEDUP_KAFKA_BOOTSTRAP_SERVERS "$HOST:$KAFKA_PORT" \
    NEWSDEDUP_DATABASE_URL "$(pg_url "$PG_APP_ROLE" "$PG_APP_PASSWORD" newsdedup)" \
    NEWSDEDUP_MIGRATION_DATABASE_URL "$(pg_url "$PG_OWNER_ROLE" "$PG_OWNER_PASSWORD" newsdedup)" \
    NEWSDEDUP_TEST_DATABASE_URL "$(pg_url "$PG_APP_ROLE" "$PG_APP_PASSWORD" newsdedup_test)" \
    NEWSDEDUP_TEST_MIGRATION_DATABASE_URL "$(pg_url "$PG_OWNER_ROLE" "$PG_OWNER_PASSWORD" newsdedup_test)" \
    NEWSDEDUP_TEST_READER_DATABASE_URL "$(pg_url "$PG_READER_ROLE" "$PG_READER_PASSWORD" newsdedup_test)"
}

# Parse SERVICE names (and --purge for down) into SERVICES / PURGE.
SERVICES=()
PURGE=0
parse_args() {
  local allow_purge=$1; shift
  local arg
  for arg in "$@"; do
    case $arg in
      kafka) SERVICES+=(kafka) ;;
      postgres | postgresql | pg) SERVICES+=(postgres) ;;
      --purge)
        [[ $allow_purge == 1 ]] || die "--purge only goes with down"
        PURGE=1 ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown argument '$arg' (services: kafka, postgres; see --help)" ;;
    esac
  done
  if ((${#SERVICES[@]} == 0)); then SERVICES=("${ALL_SERVICES[@]}"); fi
}

wants() { [[ " ${SERVICES[*]} " == *" $1 "* ]]; }

cmd_up() {
  parse_args 0 "$@"
  validate_settings
  take_lock
  local started=$SECONDS
  # Kafka takes longest to come up, so launch it first and set up PostgreSQL meanwhile.
  if wants kafka; then kafka_launch; fi
  if wants postgres; then pg_start; fi
  if wants kafka; then kafka_wait_ready; fi
  log "up: ${SERVICES[*]} ready in $((SECONDS - started))s"
  print_env
}

cmd_down() {
  parse_args 1 "$@"
  [[ -d $RUN_DIR ]] || { log "nothing to stop: $RUN_DIR does not exist"; return 0; }
  take_lock
  if wants kafka; then kafka_stop; fi
  if wants postgres; then pg_stop; fi
  if ((PURGE)); then
    # Delete only the folders this script creates, whatever NEWSDEDUP_RUN_DIR points at.
    if wants kafka; then log "kafka: deleting $KAFKA_RUN"; rm -rf "$KAFKA_RUN"; fi
    if wants postgres; then log "postgres: deleting $PG_RUN"; rm -rf "$PG_RUN"; fi
    if [[ ! -d $KAFKA_RUN && ! -d $PG_RUN ]]; then
      rm -f "$RUN_DIR/.lock"
      rmdir "$RUN_DIR" 2>/dev/null || true
    fi
  fi
}

cmd_status() {
  parse_args 0 "$@"
  local rc=0
  if wants kafka; then kafka_status || rc=3; fi
  if wants postgres; then pg_status || rc=3; fi
  return "$rc"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    env) validate_settings; print_env ;;
    kafka-lib) echo "$KAFKA_LIB" ;;
    -h | --help | help) usage ;;
    "") usage >&2; exit 2 ;;
    *) log "unknown command '$cmd'"; usage >&2; exit 2 ;;
  esac
}

main "$@"
