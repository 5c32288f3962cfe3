"""The main path end to end: ingest → Kafka → prepare → match → PostgreSQL → export."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from consumers.kafka_io import REASON_HEADER, SOURCE_HEADERS
from consumers.settings import Settings, replace
from tests.integration.conftest import (
    DEV_ARTICLES,
    SHARED,
    read_export,
    run_cli,
    settings_env,
    start_cli,
    stories_of,
    wait_all,
)

pytestmark = pytest.mark.integration
DEV_REAL = SHARED / "eval" / "dev-real" / "articles.jsonl"


def run_roles(settings: Settings, records: int, timeout: float = 600) -> None:
    """Run prepare and match side by side until the matcher has stored its offset past ``records``
    fingerprinted records, then stop both with SIGTERM (they must exit 0).

    Waiting on the stored offset, not on idle time, keeps the test right on a slow or busy machine.
    """
    env = settings_env(settings)
    roles = [start_cli(["prepare"], env), start_cli(["match"], env)]
    engine = create_engine(settings.database_url)
    deadline = time.monotonic() + timeout
    try:
        while matched_records(engine, settings) < records:
            for role in roles:
                assert role.poll() is None, f"{role.args} exited early:\n{role.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, f"only {matched_records(engine, settings)} of {records} matched"
            time.sleep(0.5)
    finally:
        engine.dispose()
        for role in roles:
            if role.poll() is None:
                role.send_signal(signal.SIGTERM)
    wait_all(roles, timeout=60)


def matched_records(engine, settings: Settings) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        consumed = conn.execute(text("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets "
                                     "WHERE consumer_group = :group"), {"group": settings.match_group}).scalar_one()
    return int(consumed)


def table_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        counts = {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                  for table in ("articles", "stories", "story_events", "consumer_offsets")}
    engine.dispose()
    return counts


def test_kafka_path_stores_the_same_stories_as_embedded_mode(settings: Settings, tmp_path: Path) -> None:
    env = settings_env(settings)
    sent = run_cli(["ingest", str(DEV_ARTICLES), "--no-progress"], env)
    assert "sent 4948, rejected 0" in sent.stdout
    run_roles(settings, records=4948)
    kafka_export = tmp_path / "kafka.jsonl"
    run_cli(["export", "--output", str(kafka_export)], env)

    embedded_export = tmp_path / "embedded.jsonl"
    run_cli(["run", "--input", str(DEV_ARTICLES), "--db", f"sqlite:///{tmp_path / 'embedded.db'}",
             "--export", str(embedded_export), "--no-progress"], env)

    kafka, embedded = read_export(kafka_export), read_export(embedded_export)
    assert len(kafka) == len(embedded) == 4948
    assert stories_of(kafka) == stories_of(embedded)
    for article_id, row in embedded.items():
        assert kafka[article_id]["canonical_id"] == row["canonical_id"], article_id
        assert kafka[article_id]["is_canonical"] == row["is_canonical"], article_id
        assert kafka[article_id]["similarity"] == pytest.approx(row["similarity"], abs=1e-9), article_id

    counts = table_counts(settings.database_url)
    assert counts["articles"] == 4948
    assert counts["stories"] >= len(stories_of(kafka))  # merged-away stories stay, marked merged_into
    with create_engine(settings.database_url).connect() as conn:
        lineage = conn.execute(text(
            "SELECT count(DISTINCT source_partition), min(source_offset), count(*) FILTER (WHERE source_topic = :t) "
            "FROM articles"), {"t": settings.topic_raw}).one()
    assert lineage[0] == settings.raw_partitions and lineage[1] == 0 and lineage[2] == 4948


def test_sending_the_same_file_twice_stores_nothing_new(settings: Settings) -> None:
    env = settings_env(settings)
    run_cli(["ingest", str(DEV_REAL), "--no-progress"], env)
    run_roles(settings, records=68)
    first = table_counts(settings.database_url)
    assert first["articles"] == 68

    run_cli(["ingest", str(DEV_REAL), "--no-progress"], env)
    run_roles(settings, records=2 * 68)
    second = table_counts(settings.database_url)
    assert second["articles"] == first["articles"]
    assert second["stories"] == first["stories"]
    assert second["story_events"] == first["story_events"]


def test_bad_messages_go_to_the_dead_letter_topic_and_good_ones_are_stored(settings: Settings) -> None:
    settings = replace(settings, max_message_bytes=50_000)
    good = [line for line in DEV_REAL.read_bytes().splitlines() if line.strip()][:10]
    valid = json.loads(good[0])
    bad = {
        "malformed_json": b'{"id": "x1", "url": "https://a.example/1", "body": "trunc',
        "missing_field": json.dumps({k: v for k, v in valid.items() if k != "url"}).encode(),
        "too_large": json.dumps({**valid, "id": "big", "body": "word " * 20_000}).encode(),
        "invalid_utf8": b'{"id": "x2", "body": "caf\xe9"}',
        "wrong_type": json.dumps({**valid, "id": "x3", "published_at": 1720000000}).encode(),
    }
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    run_cli(["topics"], settings_env(settings))
    for index, line in enumerate(good):
        producer.send(settings.topic_raw, value=line, key=b"k")
        if index < len(bad):
            producer.send(settings.topic_raw, value=list(bad.values())[index], key=b"k")
    producer.flush()
    producer.close()
    run_roles(settings, records=len(good))

    consumer = KafkaConsumer(settings.topic_dead_letters, bootstrap_servers=settings.kafka_bootstrap_servers,
                             auto_offset_reset="earliest")
    letters = []
    deadline = time.monotonic() + 60  # a busy machine can take a while to hand over the first fetch
    while len(letters) < len(bad) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=1000).values():
            letters.extend(records)
    consumer.close()
    by_reason = {dict(m.headers)[REASON_HEADER].decode(): m for m in letters}
    assert set(by_reason) == set(bad)
    for reason, message in by_reason.items():
        assert message.value == bad[reason], reason
        headers = dict(message.headers)
        assert headers[SOURCE_HEADERS[0]].decode() == settings.topic_raw
        assert int(headers[SOURCE_HEADERS[2]]) >= 0
    assert table_counts(settings.database_url)["articles"] == len(good)


def test_sigterm_stops_a_role_promptly(settings: Settings) -> None:
    env = settings_env(settings)
    run_cli(["topics"], env)
    for role in ("prepare", "match"):
        process = start_cli([role], env)
        time.sleep(6)  # joined its group and polling
        assert process.poll() is None, process.communicate()[1][-2000:]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr[-2000:]
        assert time.monotonic() - started < 15
        assert "stopping" in stderr


def test_the_service_role_cannot_change_the_schema(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    with pytest.raises(ProgrammingError, match="permission denied"), engine.begin() as conn:
        conn.execute(text("CREATE TABLE intruder (id int)"))
    with pytest.raises(ProgrammingError, match=r"must be owner|permission denied"), engine.begin() as conn:
        conn.execute(text("DROP TABLE articles"))
    engine.dispose()
