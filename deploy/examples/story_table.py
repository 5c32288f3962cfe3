"""A downstream consumer of ``stories.events``: keeps a table of stories, drops duplicate events by event_id.

    python deploy/examples/story_table.py --bootstrap localhost:9092 --db stories.db

Delivery is at least once: after a crash of the matcher an event can arrive again, always with the same
``event_id`` (consumers/schemas/story_event.schema.json). So each poll's events and the ids seen are
written in one SQLite transaction, and only then are the Kafka offsets committed: a crash of this
consumer replays the poll, and the ids seen make the replay, like any duplicate, a no-op.

Needs only kafka-python and the standard library; copy it and change ``apply`` to fit your system.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from typing import Any

from kafka import KafkaConsumer

SCHEMA = """
CREATE TABLE IF NOT EXISTS stories (
    story_id TEXT PRIMARY KEY,
    canonical_article_id TEXT,
    merged_into TEXT,            -- set when the story was merged into another
    events INTEGER NOT NULL,     -- events applied (each once)
    last_event_id INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen_events (event_id INTEGER PRIMARY KEY);
"""


def apply(db: sqlite3.Connection, event: dict[str, Any]) -> bool:
    """Apply one event unless its id was seen; True if applied. The caller commits."""
    if db.execute("INSERT OR IGNORE INTO seen_events (event_id) VALUES (?)", (event["event_id"],)).rowcount == 0:
        return False  # a duplicate
    story, kind = event["story_id"], event["kind"]
    db.execute("INSERT OR IGNORE INTO stories (story_id, canonical_article_id, merged_into, events, last_event_id, "
               "updated_at) VALUES (?, NULL, NULL, 0, 0, ?)", (story, event["occurred_at"]))
    if kind in ("founded", "canonical_changed"):
        db.execute("UPDATE stories SET canonical_article_id = ? WHERE story_id = ?", (event["article_id"], story))
    elif kind == "merged" and event["reason"].startswith("merged into "):
        db.execute("UPDATE stories SET merged_into = ? WHERE story_id = ?",
                   (event["reason"].removeprefix("merged into "), story))
    db.execute("UPDATE stories SET events = events + 1, last_event_id = ?, updated_at = ? WHERE story_id = ?",
               (event["event_id"], event["occurred_at"], story))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="Kafka brokers, host:port[,host:port]")
    parser.add_argument("--topic", default="stories.events")
    parser.add_argument("--group", default="story-table", help="consumer group (its offsets say where to resume)")
    parser.add_argument("--db", required=True, help="SQLite file of the table")
    parser.add_argument("--exit-when-idle", type=float, metavar="SECONDS", help="stop after this long without events")
    args = parser.parse_args(argv)

    db = sqlite3.connect(args.db)
    db.executescript(SCHEMA)
    consumer = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap.split(","), group_id=args.group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             isolation_level="read_committed")
    applied = duplicates = 0
    idle_since = time.monotonic()
    try:
        while args.exit_when_idle is None or time.monotonic() - idle_since < args.exit_when_idle:
            batch = consumer.poll(timeout_ms=500)
            if not batch:
                continue
            idle_since = time.monotonic()
            with db:  # one transaction: the table and the ids seen
                for records in batch.values():
                    for record in records:
                        if apply(db, json.loads(record.value)):
                            applied += 1
                        else:
                            duplicates += 1
            consumer.commit()  # after the transaction: a crash in between replays, and replays are no-ops
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        db.close()
    print(f"applied {applied} events, dropped {duplicates} duplicates", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
