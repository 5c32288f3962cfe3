"""stories.events through the transactional outbox (issue 12), against the real broker and database.

- Two matchers write at once (two partitions of the fingerprinted topic, one matcher each): every
  stored event is published, valid under the JSON Schema, keyed by its story, in each story's order.
- A crash injected exactly between a batch's commit and the publication of its events (the test-only
  NEWSDEDUP_TEST_CRASH_BEFORE_PUBLISH): the events are in the database and not in the topic; the
  restarted matcher publishes them, so none is lost.
- The documented downstream consumer (deploy/examples/story_table.py) rebuilds the stories from the topic,
  dropping duplicates by event id.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaProducer
from sqlalchemy import create_engine, insert, text

from consumers.event_relay import CRASH_BEFORE_PUBLISH_ENV, CRASH_EXIT_CODE
from consumers.settings import Settings, replace
from consumers.storage.models import StoryEventRow
from consumers.storage.store import StoryStore
from tests.integration.conftest import DEV_ARTICLES, ROOT, free_port, read_topic, run_cli, settings_env, start_cli
from tests.integration.events_support import audit_events, stored_events
from tests.integration.observability_support import Role, eventually, start_role

pytestmark = pytest.mark.integration
# Fingerprinted records are keyed by language: these two land in different partitions of a 2-partition topic.
LANGS = ("en", "es")


def write_input(path: Path, count: int, langs: tuple[str, ...] = ("en",)) -> Path:
    with DEV_ARTICLES.open() as lines:
        articles = [json.loads(next(lines)) for _ in range(count)]
    for i, article in enumerate(articles):
        article["lang"] = langs[i % len(langs)]
    path.write_text("".join(json.dumps(article) + "\n" for article in articles))
    return path


def matched(settings: Settings) -> dict[int, int]:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = :g"),
                                {"g": settings.match_group})
            return {partition: offset for partition, offset in rows}
    finally:
        engine.dispose()


def wait_matched(settings: Settings, records: int, processes: list[subprocess.Popen[str]], timeout: float = 180):
    deadline = time.monotonic() + timeout
    while sum(matched(settings).values()) < records:
        for process in processes:
            assert process.poll() is None, f"{process.args} exited early:\n{process.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"only {sum(matched(settings).values())} of {records} matched"
        time.sleep(0.5)


def stop(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, f"{process.args} exited {process.returncode}:\n{stderr[-3000:]}"


def audit(settings: Settings):  # type: ignore[no-untyped-def]
    return audit_events(stored_events(settings.database_url),
                        read_topic(settings.kafka_bootstrap_servers, settings.topic_story_events))


def test_two_matchers_writing_at_once_publish_every_event_in_story_order(settings: Settings, tmp_path: Path) -> None:
    settings = replace(settings, fingerprinted_partitions=2)
    env = settings_env(settings)
    run_cli(["topics"], env)
    matchers = [start_role("match", env, free_port()), start_role("match", env, free_port())]
    roles = list(matchers)
    try:
        # Both own a partition before any article flows, so both write (on a slow machine the first would
        # otherwise take both partitions and store everything before the second joins).
        try:
            eventually(lambda: [owned(m) for m in matchers] in ([{0}, {1}], [{1}, {0}]), 90, "one partition each")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {[owned(m) for m in matchers]}\n"
                                 + "\n".join(m.tail(15) for m in matchers)) from None
        count = 800
        run_cli(["ingest", str(write_input(tmp_path / "in.jsonl", count, LANGS)), "--no-progress"], env)
        roles.append(start_role("prepare", env, free_port()))
        wait_matched(settings, count, [role.process for role in roles])
        assert [owned(m) for m in matchers] in ([{0}, {1}], [{1}, {0}]), "a rebalance moved the partitions"
    finally:
        exits = [(role.name, role.stop(), role.tail()) for role in roles]
    assert all(code == 0 for _, code, _ in exits), exits
    assert set(matched(settings)) == {0, 1}, "both partitions must have been written"
    result = audit(settings)
    result.assert_complete()
    partitions = {row[0] for row in _query(settings, "SELECT DISTINCT match_partition FROM story_events")}
    assert partitions == {0, 1}
    print(f"two matchers: {result.stored} events stored, {result.messages} messages, {result.duplicates} duplicates")


def owned(role: Role) -> set[int]:
    """The partitions a matcher holds now, from its log."""
    holding: set[int] = set()
    for line in list(role.log):
        if '"partition assigned"' in line:
            holding.add(json.loads(line)["partition"])
        elif '"partition revoked"' in line:
            holding.discard(json.loads(line)["partition"])
    return holding


def test_a_crash_between_commit_and_publication_loses_no_event(settings: Settings, tmp_path: Path) -> None:
    settings = replace(settings, batch_max_messages=50)  # several batches, so the crash falls mid-stream
    env = settings_env(settings)
    run_cli(["topics"], env)
    count = 300
    run_cli(["ingest", str(write_input(tmp_path / "in.jsonl", count)), "--no-progress"], env)
    prepare = start_cli(["prepare", "--metrics-port", "0"], env)
    crashing = start_cli(["match", "--metrics-port", "0"], {**env, CRASH_BEFORE_PUBLISH_ENV: "2"})
    try:
        assert crashing.wait(timeout=120) == CRASH_EXIT_CODE, crashing.communicate()[1][-3000:]
        assert "test crash between commit and publication" in crashing.communicate()[1]
        before = audit(settings)
        assert before.missing, "the crash left no event unpublished: the injection point missed its window"
        matcher = start_cli(["match", "--metrics-port", "0"], env)
        wait_matched(settings, count, [prepare, matcher])
    finally:
        stop([p for p in (prepare, locals().get("matcher")) if p is not None])
    after = audit(settings)
    after.assert_complete()
    print(f"crash before publication: {len(before.missing)} events waited in the database and were published "
          f"after the restart; {after.stored} stored, {after.messages} messages, {after.duplicates} duplicates")
    check_the_downstream_example(settings, tmp_path)


def check_the_downstream_example(settings: Settings, tmp_path: Path) -> None:
    """deploy/examples/story_table.py, fed every event plus a replay of the first 100 (as after a crash), keeps
    the database's stories: each story with its canonical and merge, each event applied once."""
    messages = read_topic(settings.kafka_bootstrap_servers, settings.topic_story_events)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    for message in messages[:100]:
        producer.send(settings.topic_story_events, key=message.key, value=message.value)
    producer.flush()
    producer.close()
    table = tmp_path / "stories.db"
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "examples" / "story_table.py"), "--bootstrap",
                             settings.kafka_bootstrap_servers, "--topic", settings.topic_story_events, "--db",
                             str(table), "--group", f"{settings.match_group}-example", "--exit-when-idle", "3"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    stored = sorted(_query(settings, "SELECT id, canonical_article_id, merged_into FROM stories"))
    events = dict(_query(settings, "SELECT story_id, count(*) FROM story_events GROUP BY story_id"))
    with sqlite3.connect(table) as db:
        kept = sorted(db.execute("SELECT story_id, canonical_article_id, merged_into FROM stories").fetchall())
        applied = dict(db.execute("SELECT story_id, events FROM stories").fetchall())
    assert kept == stored
    assert applied == events
    assert f"applied {sum(events.values())} events, dropped {len(messages) - sum(events.values()) + 100} " \
           f"duplicates" in result.stderr


def _query(settings: Settings, sql: str) -> list[tuple]:
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_writers_of_one_partition_commit_their_event_ids_in_order(database: str) -> None:
    """The outbox gap, made to happen: writer B starts a batch transaction of partition 7 while writer A's is
    open, and takes its event id before A does. Were B to commit first, a relay reading "id > mark" in between
    would publish B's id and never A's lower one. The partition's event_relay row, which every batch
    transaction locks first, makes B wait for A: B's id comes after A's, and B commits after A."""
    engine = create_engine(database)
    store = StoryStore(engine)
    now = datetime.now(UTC)
    event = {"match_partition": 7, "story_id": "s", "kind": "founded", "article_id": None, "reason": "test",
             "similarity": None, "occurred_at": now}
    ids: dict[str, int] = {}
    committed: list[str] = []

    def writer(name: str, started: threading.Event, go: threading.Event) -> None:
        with engine.begin() as conn:
            conn.execute(store._claim_relay_row(7, now))  # the first statement of StoryStore.write_batch
            started.set()
            go.wait(10)
            ids[name] = conn.execute(insert(StoryEventRow).returning(StoryEventRow.id), event).scalar_one()
        committed.append(name)

    a_started, a_go, b_started, b_go = (threading.Event() for _ in range(4))
    a = threading.Thread(target=writer, args=("a", a_started, a_go))
    a.start()
    assert a_started.wait(10)
    b = threading.Thread(target=writer, args=("b", b_started, b_go))
    b_go.set()  # B would take its id at once
    b.start()
    time.sleep(1.0)
    assert not b_started.is_set() and "b" not in ids, "writer B went on while A held the partition's relay row"
    a_go.set()
    a.join(10)
    b.join(10)
    engine.dispose()
    assert committed == ["a", "b"] and ids["a"] < ids["b"], (committed, ids)
