#!/usr/bin/env bash
# The Kafka broker of docker-compose.secure.yml, run by the apache/kafka image in place of its own start
# script, which cannot make SCRAM users: they must exist before the broker first starts (KIP-900,
# `kafka-storage.sh format --add-scram`), or nobody could log in to make more.
#
#   SASL_SSL    kafka:9094, SCRAM-SHA-512 over TLS 1.2+: the only listener clients reach; the SASL user
#               name is the principal (User:prepare), one per role (scripts/compose-secrets.sh)
#   CONTROLLER  127.0.0.1:9093, KRaft's own: mutual TLS, so the broker's certificate (CN=kafka) is its
#               principal; unreachable from other containers
# StandardAuthorizer, super.users = User:admin (topics and ACLs: deploy/kafka/acls.py) and User:CN=kafka
# (the node talking to its controller); allow.everyone.if.no.acl.found=false: what no ACL allows is refused.
# Every secret is read from /run/secrets. The generated files hold the admin password, so they live in
# the container's own file system, mode 600, and are rewritten on every start.
set -euo pipefail

SECRETS=/run/secrets
CONFIG_DIR=/opt/kafka/config
CONFIG=$CONFIG_DIR/secure-server.properties
ADMIN_CLIENT=$CONFIG_DIR/secure-admin.properties   # the healthcheck's (and an operator's) client settings
PRINCIPALS=(admin ingest prepare match lag-exporter)
: "${CLUSTER_ID:?set CLUSTER_ID (any 16 bytes, base64url)}"

secret() { # NAME: the content of /run/secrets/NAME, trailing newlines dropped
  local value
  value=$(<"$SECRETS/$1")
  [[ -n $value ]] || { echo "secure-broker: $SECRETS/$1 is empty" >&2; exit 1; }
  printf '%s' "$value"
}

umask 077
admin_pw=$(secret kafka_admin_password)
jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$admin_pw\";"

cat >"$CONFIG" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:9093
listeners=SASL_SSL://:9094,CONTROLLER://127.0.0.1:9093
advertised.listeners=SASL_SSL://kafka:9094
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=$jaas
listener.name.controller.ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location=$SECRETS/kafka_broker_keystore
ssl.truststore.type=PEM
ssl.truststore.location=$SECRETS/newsdedup_ca
ssl.enabled.protocols=TLSv1.3,TLSv1.2
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:CN=kafka
allow.everyone.if.no.acl.found=false
auto.create.topics.enable=false
log.dirs=/var/lib/kafka/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF

cat >"$ADMIN_CLIENT" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=$jaas
ssl.truststore.type=PEM
ssl.truststore.location=$SECRETS/newsdedup_ca
EOF

# The SCRAM users are written into the metadata log when the storage is first formatted; on later starts
# (--ignore-formatted) nothing changes: rotate a password with kafka-configs.sh --alter --add-config.
# The passwords are on this command line for the moment it runs, inside this container only.
scram=()
for principal in "${PRINCIPALS[@]}"; do
  scram+=(--add-scram "SCRAM-SHA-512=[name=$principal,password=$(secret "kafka_${principal//-/_}_password")]")
done
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "$CLUSTER_ID" --config "$CONFIG" "${scram[@]}"
unset admin_pw jaas scram

exec /opt/kafka/bin/kafka-server-start.sh "$CONFIG"
