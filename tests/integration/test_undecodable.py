"""A record batch the Kafka client cannot decode never wedges a role silently (issue 11).

Two real causes, each against the real broker:
  - a codec the client lacks: the role runs with lz4 hidden from kafka-python (as on a machine
    without the lz4 package), and one partition holds lz4-compressed batches;
  - a corrupt batch: a byte of a stored batch is flipped in the broker's segment file, so the
    client's CRC check fails (the broker serves the file as it is).
Before the fix, kafka-python raised once and then spun inside poll at 100% CPU, with /readyz green
and lag at 0. Now, within seconds: an error log naming topic, partition, offset and reason,
/readyz failing, the counter and gauge set, the other partitions still moving; after
undecodable_hold_seconds the role exits 65. Nothing was skipped: once the cause is gone, every
record of the held partition is prepared.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import create_engine, text

from consumers.fetch_guard import EXIT_UNDECODABLE
from consumers.settings import Settings
from tests.integration.conftest import DEV_ARTICLES, ROOT, free_port, read_topic, run_cli, settings_env
from tests.integration.observability_support import Role, eventually, http_get, start_role

pytestmark = pytest.mark.integration

HELD = 0          # the partition with the undecodable batches
OTHERS = (1, 2)   # partitions with plain batches, which must keep moving
PER_PARTITION = 20
HOLD_SECONDS = 12
WITHOUT_LZ4 = ("import sys; sys.modules['lz4'] = sys.modules['lz4.frame'] = None; "  # kafka.codec then has no lz4
               "from consumers.cli import main; sys.exit(main(sys.argv[1:]))")
KAFKA_DATA = ROOT / ".services" / "kafka" / "data"  # scripts/services.sh: <run dir>/kafka/data


def articles(count: int) -> list[bytes]:
    with DEV_ARTICLES.open("rb") as lines:
        return [next(lines).rstrip(b"\n") for _ in range(count)]


def produce(settings: Settings, held_compression: str | None) -> None:
    values = iter(articles(PER_PARTITION * (1 + len(OTHERS))))
    held = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, compression_type=held_compression)
    plain = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    for _ in range(PER_PARTITION):
        # One batch per record on the held partition: a role that skipped the broken batch would prepare the rest.
        held.send(settings.topic_raw, value=next(values), partition=HELD).get(timeout=30)
        for partition in OTHERS:
            plain.send(settings.topic_raw, value=next(values), partition=partition)
    for producer in (held, plain):
        producer.flush()
        producer.close()


def corrupt_segment(topic: str, partition: int) -> None:
    """Flip one byte inside the first stored record's value, past the batch header the broker reads."""
    segment = KAFKA_DATA / f"{topic}-{partition}" / "00000000000000000000.log"
    data = bytearray(segment.read_bytes())
    at = data.index(b'"body"') + 12
    data[at] ^= 0x20
    segment.write_bytes(bytes(data))


def start_prepare(env: dict[str, str], port: int, without_lz4: bool) -> Role:
    return start_role_without_lz4("prepare", env, port) if without_lz4 else start_role("prepare", env, port)


def start_role_without_lz4(name: str, env: dict[str, str], port: int) -> Role:
    process = subprocess.Popen([sys.executable, "-c", WITHOUT_LZ4, name, "--metrics-port", str(port)], env=env,
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return Role(name, port, process)


def committed_offset(settings: Settings, partition: int) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.prepare_group,
                             enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(settings.topic_raw, partition))
    finally:
        consumer.close()


def metric(body: str, name: str, partition: int | None = None) -> float | None:
    for line in body.splitlines():
        if line.startswith(name) and (partition is None or f'partition="{partition}"' in line):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.parametrize("cause", ["codec missing", "corrupt batch"])
def test_an_undecodable_batch_is_reported_held_and_never_skipped(settings: Settings, cause: str) -> None:
    env = {**settings_env(settings), "NEWSDEDUP_UNDECODABLE_HOLD_SECONDS": str(HOLD_SECONDS),
           "NEWSDEDUP_METRICS_HOST": "127.0.0.1"}
    run_cli(["topics"], env)
    produce(settings, "lz4" if cause == "codec missing" else None)
    if cause == "corrupt batch":
        corrupt_segment(settings.topic_raw, HELD)

    role = start_prepare(env, free_port(), without_lz4=cause == "codec missing")
    started = time.monotonic()
    try:
        logged = eventually(lambda: [json.loads(line) for line in list(role.log)
                                     if "undecodable record batch" in line], 30, "the undecodable batch's log line")
        found_after = time.monotonic() - started
        entry = logged[0]
        assert (entry["level"], entry["topic"], entry["partition"], entry["offset"]) == (
            "error", settings.topic_raw, HELD, 0)
        expected = "UnsupportedCodecError" if cause == "codec missing" else "CorruptRecordError"
        assert entry["reason"].startswith(expected), entry
        status, body = http_get(f"{role.url}/readyz")
        assert status == 503 and json.loads(body)["checks"]["decodable"] is False
        metrics = http_get(f"{role.url}/metrics")[1].decode()
        assert metric(metrics, "newsdedup_undecodable_batches_total", HELD) == 1.0
        assert metric(metrics, "newsdedup_blocked_partitions") == 1.0
        # The other partitions keep moving while the role holds the broken one.
        moved = eventually(lambda: len(read_topic(settings.kafka_bootstrap_servers, settings.topic_fingerprinted))
                           >= PER_PARTITION * len(OTHERS) or None, 30, "the other partitions' records prepared")
        assert moved
        assert role.process.wait(timeout=HOLD_SECONDS + 30) == EXIT_UNDECODABLE
        assert time.monotonic() - started >= HOLD_SECONDS
    finally:
        role.stop()
        print(role.tail(60))
    assert found_after < 20, f"found after {found_after:.1f} s"
    assert f"{settings.topic_raw}[{HELD}] at offset 0" in role.tail()
    prepared = read_topic(settings.kafka_bootstrap_servers, settings.topic_fingerprinted)
    assert len(prepared) == PER_PARTITION * len(OTHERS)
    assert committed_offset(settings, HELD) is None, "the held partition's offset moved"

    if cause == "corrupt batch":
        return  # the bytes on disk stay corrupt: a person decides what to do with them (RUNBOOK)
    # The cause fixed (lz4 present), the held partition is prepared from where it stopped: nothing was skipped.
    run_cli(["prepare", "--exit-when-idle", "3"], env)
    prepared = read_topic(settings.kafka_bootstrap_servers, settings.topic_fingerprinted)
    assert len(prepared) == PER_PARTITION * (1 + len(OTHERS))
    assert read_topic(settings.kafka_bootstrap_servers, settings.topic_dead_letters) == []


def test_the_matcher_holds_an_undecodable_batch_too(settings: Settings) -> None:
    """The match role goes through the same guard: lz4 batches on the fingerprinted topic, read without lz4."""
    env = {**settings_env(settings), "NEWSDEDUP_UNDECODABLE_HOLD_SECONDS": str(HOLD_SECONDS),
           "NEWSDEDUP_METRICS_HOST": "127.0.0.1"}
    run_cli(["topics"], env)
    produce(settings, None)
    run_cli(["prepare", "--exit-when-idle", "3", "--kafka-compression-type", "lz4"], env)
    role = start_role_without_lz4("match", env, free_port())
    try:
        logged = eventually(lambda: [json.loads(line) for line in list(role.log)
                                     if "undecodable record batch" in line], 30, "the undecodable batch's log line")
        assert (logged[0]["topic"], logged[0]["reason"].split(":")[0]) == (settings.topic_fingerprinted,
                                                                          "UnsupportedCodecError")
        status, body = http_get(f"{role.url}/readyz")
        assert status == 503 and json.loads(body)["checks"]["decodable"] is False
        assert role.process.wait(timeout=HOLD_SECONDS + 30) == EXIT_UNDECODABLE
    finally:
        role.stop()
    assert stored_count(settings) == 0
    run_cli(["match", "--exit-when-idle", "3"], env)
    assert stored_count(settings) == PER_PARTITION * (1 + len(OTHERS))


def stored_count(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM articles")).scalar_one())
    finally:
        engine.dispose()
