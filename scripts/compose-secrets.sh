#!/usr/bin/env bash
# The secrets of docker-compose.secure.yml: a CA, the Kafka broker's and PostgreSQL's certificates, a
# SCRAM password per Kafka principal, the PostgreSQL passwords, the database URLs built from them, and
# Grafana's admin password.
#
#   bash scripts/compose-secrets.sh            # into deploy/secrets/ (or $NEWSDEDUP_SECRETS_DIR)
#   docker compose -f docker-compose.yml -f docker-compose.secure.yml up -d --build
#
# Only missing files are made, so running it again changes nothing; to rotate one, delete it, run this
# again, and apply the new value (ALTER ROLE ... PASSWORD, kafka-configs.sh --alter --add-config
# 'SCRAM-SHA-512=[password=...]'): the stack reads the passwords only when its volumes are first made.
# The folder is private (0700, gitignored, outside the image's build context); the files in it are 0644
# because a compose secret from a file is a bind mount that keeps the file's owner and mode, and the
# containers' users (postgres, Kafka's appuser, newsdedup) must read them. ca.key never leaves the folder.
# Keep the folder on the Docker host only; use your own CA and a secret store for anything shared.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
DIR=${NEWSDEDUP_SECRETS_DIR:-$REPO_DIR/deploy/secrets}
DAYS=825   # the longest validity Apple and browsers accept for a server certificate

# Kafka principals, one per role (ACLs: deploy/kafka/secure-acls.sh), and PostgreSQL roles.
KAFKA_PRINCIPALS=(admin ingest prepare match lag-exporter)
PG_ROLES=(superuser owner app reader)

log() { printf 'compose-secrets: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v openssl >/dev/null || die "openssl is needed"
mkdir -p "$DIR"
chmod 700 "$DIR"
cd "$DIR"
umask 022

made=()
# new FILE: true when FILE is missing (and will be made).
new() { [[ ! -s $1 ]] && made+=("$1"); }

password() { # FILE: 48 hex digits: nothing to escape in URLs, SCRAM entries or JAAS lines
  if new "$1"; then openssl rand -hex 24 >"$1"; fi
}

if new ca.pem; then
  (umask 077 && openssl req -x509 -newkey rsa:3072 -nodes -keyout ca.key -out ca.pem -days "$DAYS" \
    -subj "/CN=newsdedup compose CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null)
fi

server_cert() { # NAME DNS...: NAME.pem and NAME.key, for the compose service names and localhost
  local name=$1; shift
  if ! new "$name.pem"; then return 0; fi
  local san
  san=$(printf 'DNS:%s,' "$@" localhost)
  openssl req -new -newkey rsa:3072 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$1" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$name.pem" -days "$DAYS" \
    -extfile <(printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' \
    "${san%,}") 2>/dev/null
  rm -f "$name.csr"
}

server_cert kafka-broker kafka
server_cert postgres-server postgres
# Kafka reads a PEM key store: the private key (PKCS#8, unencrypted) followed by the certificate chain.
if new kafka-broker-keystore.pem; then
  cat kafka-broker.key kafka-broker.pem ca.pem >kafka-broker-keystore.pem
fi

for principal in "${KAFKA_PRINCIPALS[@]}"; do password "kafka-$principal-password"; done
for role in "${PG_ROLES[@]}"; do password "pg-$role-password"; done
password grafana-admin-password

# What the roles read through NEWSDEDUP_DATABASE_URL_FILE / NEWSDEDUP_MIGRATION_DATABASE_URL_FILE: TLS with
# the server's certificate checked against the CA and its name against the host (verify-full).
for role in owner app reader; do
  if new "database-url-$role"; then
    printf 'postgresql+psycopg://newsdedup_%s:%s@postgres:5432/newsdedup?sslmode=verify-full&sslrootcert=/run/secrets/newsdedup_ca\n' \
      "$role" "$(<"pg-$role-password")" >"database-url-$role"
  fi
done

chmod 644 -- *.pem *.key *-password database-url-*
chmod 600 ca.key
if ((${#made[@]})); then log "made ${made[*]} in $DIR"; else log "nothing to make: every secret is in $DIR"; fi
