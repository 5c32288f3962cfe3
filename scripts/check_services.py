#!/usr/bin/env python3
"""Smoke-check the local services started by scripts/services.sh.

Usage:
    eval "$(bash scripts/services.sh env)"
    python3 scripts/check_services.py [--kafka-only | --postgres-only]

Kafka (needs kafka-python 3.0.x): creates a throw-away topic, checks that producing to an
unknown topic fails (auto.create.topics.enable=false), produces one message, consumes it
back in a consumer group, commits, and deletes the topic.

PostgreSQL (needs the `psql` client): for each database, connects over TCP as the owner
and the app role, checks that the app role cannot CREATE TABLE, that it can SELECT,
INSERT, UPDATE and DELETE (and use the sequence) on a table the owner created, and drops
that table again.

Prints one line per check and exits non-zero on the first failure.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from urllib.parse import unquote, urlsplit

DEFAULTS = {
    "NEWSDEDUP_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092",
    "NEWSDEDUP_DATABASE_URL": "postgresql+psycopg://newsdedup_app:app-dev-pw@127.0.0.1:15432/newsdedup",
    "NEWSDEDUP_MIGRATION_DATABASE_URL": "postgresql+psycopg://newsdedup_owner:owner-dev-pw@127.0.0.1:15432/newsdedup",
    "NEWSDEDUP_TEST_DATABASE_URL": "postgresql+psycopg://newsdedup_app:app-dev-pw@127.0.0.1:15432/newsdedup_test",
    "NEWSDEDUP_TEST_MIGRATION_DATABASE_URL": "postgresql+psycopg://newsdedup_owner:owner-dev-pw@127.0.0.1:15432/newsdedup_test",
}


def setting(name: str) -> str:
    return os.environ.get(name) or DEFAULTS[name]


def ok(msg: str) -> None:
    print(f"ok   {msg}", flush=True)


def fail(msg: str) -> None:
    print(f"FAIL {msg}", flush=True)
    sys.exit(1)


# --------------------------------------------------------------------------- Kafka
def check_kafka() -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic
    from kafka.errors import KafkaTimeoutError

    bootstrap = setting("NEWSDEDUP_KAFKA_BOOTSTRAP_SERVERS")
    topic = f"services-check-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="services-check")
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=1, replication_factor=1)])
        if topic not in admin.list_topics():
            fail(f"kafka: topic {topic} not listed after create")
        ok(f"kafka: created topic {topic} on {bootstrap}")

        producer = KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=3000)
        try:
            try:
                producer.send(f"{topic}-unknown", b"x").get(timeout=5)
                fail("kafka: producing to an unknown topic succeeded (auto.create.topics.enable should be false)")
            except KafkaTimeoutError:
                ok("kafka: unknown topic is not auto-created")
            payload = f"hello {uuid.uuid4()}".encode()
            meta = producer.send(topic, key=b"k", value=payload).get(timeout=15)
            producer.flush()
            ok(f"kafka: produced one message (partition {meta.partition}, offset {meta.offset})")
        finally:
            producer.close()

        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"{topic}-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        try:
            started = time.monotonic()
            got = []
            while not got and time.monotonic() - started < 30:
                for records in consumer.poll(timeout_ms=1000).values():
                    got.extend(records)
            if not got or got[0].value != payload:
                fail(f"kafka: expected to consume {payload!r}, got {[r.value for r in got]!r}")
            consumer.commit()
            ok(f"kafka: consumed it back in a consumer group and committed ({time.monotonic() - started:.1f}s)")
        finally:
            consumer.close()

        admin.delete_topics([topic])
        ok(f"kafka: deleted topic {topic}")
    finally:
        admin.close()


# --------------------------------------------------------------------------- PostgreSQL
def psql(url: str, sql: str, *, expect_error: bool = False) -> str:
    """Run `sql` through psql over TCP with the URL's credentials; return stdout."""
    parts = urlsplit(url)
    env = dict(os.environ, PGPASSWORD=unquote(parts.password or ""), PGCONNECT_TIMEOUT="5")
    cmd = [
        "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
        "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
        "-U", unquote(parts.username or ""), "-d", parts.path.lstrip("/"),
        "-c", sql,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    who = f"{parts.username}@{parts.path.lstrip('/')}"
    if expect_error:
        if proc.returncode == 0:
            fail(f"postgres: {who} was allowed to run: {sql}")
        return proc.stderr.strip()
    if proc.returncode != 0:
        fail(f"postgres: {who} failed to run {sql!r}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def check_postgres_db(app_url: str, owner_url: str) -> None:
    db = urlsplit(app_url).path.lstrip("/")
    for url in (owner_url, app_url):
        user = psql(url, "SELECT current_user")
        ok(f"postgres: connected over TCP to {db} as {user}")

    err = psql(app_url, "CREATE TABLE services_check_forbidden (id int)", expect_error=True)
    ok(f"postgres: {db}: app role cannot CREATE TABLE ({err.splitlines()[0]})")

    table = f"services_check_{uuid.uuid4().hex[:8]}"
    psql(owner_url, f"CREATE TABLE {table} (id bigserial PRIMARY KEY, note text NOT NULL)")
    try:
        psql(app_url, f"INSERT INTO {table} (note) VALUES ('a'), ('b')")
        psql(app_url, f"UPDATE {table} SET note = 'c' WHERE note = 'b'")
        psql(app_url, f"DELETE FROM {table} WHERE note = 'a'")
        rows = psql(app_url, f"SELECT note FROM {table} ORDER BY id")
        if rows != "c":
            fail(f"postgres: {db}: expected one row 'c', got {rows!r}")
        ok(f"postgres: {db}: app role can SELECT/INSERT/UPDATE/DELETE on the owner's table (sequence too)")
        err = psql(app_url, f"DROP TABLE {table}", expect_error=True)
        ok(f"postgres: {db}: app role cannot DROP the owner's table ({err.splitlines()[0]})")
        err = psql(app_url, f"TRUNCATE {table}", expect_error=True)
        ok(f"postgres: {db}: app role cannot TRUNCATE it ({err.splitlines()[0]})")
    finally:
        psql(owner_url, f"DROP TABLE IF EXISTS {table}")
    ok(f"postgres: {db}: dropped {table}")


def check_postgres() -> None:
    check_postgres_db(setting("NEWSDEDUP_DATABASE_URL"), setting("NEWSDEDUP_MIGRATION_DATABASE_URL"))
    check_postgres_db(setting("NEWSDEDUP_TEST_DATABASE_URL"), setting("NEWSDEDUP_TEST_MIGRATION_DATABASE_URL"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--kafka-only", action="store_true")
    group.add_argument("--postgres-only", action="store_true")
    args = parser.parse_args()
    if not args.postgres_only:
        check_kafka()
    if not args.kafka_only:
        check_postgres()
    print("all checks passed")


if __name__ == "__main__":
    main()
