"""The stories.events contract, checked against the database's event log (used by integration and fault tests).

After any run, crash or outage: every story_events row is in the topic at least once; duplicates carry
the same id and the same body; every message is valid under consumers/schemas/story_event.schema.json,
keyed by its story; and the topic, deduplicated by event id, holds each story's events in the
database's order.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from sqlalchemy import create_engine, text

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "consumers" / "schemas" / "story_event.schema.json"
VALIDATOR = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()),
                                 format_checker=Draft202012Validator.FORMAT_CHECKER)


@dataclass
class EventAudit:
    stored: int
    messages: int
    duplicates: int = 0
    missing: list[int] = field(default_factory=list)    # stored ids never published
    unknown: list[int] = field(default_factory=list)    # published ids the database does not hold
    problems: list[str] = field(default_factory=list)   # invalid, wrong key, differing copies, wrong order

    def assert_complete(self) -> None:
        assert not self.missing, f"{len(self.missing)} of {self.stored} stored events never published: " \
                                 f"{self.missing[:10]}"
        assert not self.unknown, f"published events the database does not hold: {self.unknown[:10]}"
        assert not self.problems, "\n".join(self.problems[:20])
        assert self.stored > 0, "no events at all: the check would prove nothing"


def stored_events(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, story_id, kind, article_id, reason, similarity FROM story_events "
                                     "ORDER BY id")).mappings()
            return [dict(row) for row in rows]
    finally:
        engine.dispose()


def audit_events(stored: list[dict[str, Any]], messages: list[Any]) -> EventAudit:
    """``messages``: the topic's records in partition order (one partition, or each story's in one)."""
    audit = EventAudit(stored=len(stored), messages=len(messages))
    first: dict[int, dict[str, Any]] = {}
    order: dict[str, list[int]] = defaultdict(list)   # story → event ids in first-seen order
    for message in messages:
        body = json.loads(message.value)
        for error in VALIDATOR.iter_errors(body):
            audit.problems.append(f"invalid event at offset {message.offset}: {error.message}")
        if message.key != str(body.get("story_id")).encode():
            audit.problems.append(f"event {body.get('event_id')}: key {message.key!r} is not its story id")
        event_id = body.get("event_id")
        if event_id in first:
            audit.duplicates += 1
            if first[event_id] != body:
                audit.problems.append(f"event {event_id} published twice with different bodies")
            continue
        first[event_id] = body
        order[body["story_id"]].append(event_id)
    by_id = {row["id"]: row for row in stored}
    audit.missing = sorted(set(by_id) - set(first))
    audit.unknown = sorted(set(first) - set(by_id))
    for event_id, body in first.items():
        row = by_id.get(event_id)
        if row is None:
            continue
        wanted = {"story_id": row["story_id"], "kind": row["kind"], "article_id": row["article_id"],
                  "reason": row["reason"], "similarity": row["similarity"]}
        if {key: body[key] for key in wanted} != wanted:
            audit.problems.append(f"event {event_id}: published {body} but stored {wanted}")
    stored_order: dict[str, list[int]] = defaultdict(list)
    for row in stored:
        stored_order[row["story_id"]].append(row["id"])
    for story, ids in order.items():
        expected = [i for i in stored_order[story] if i in first]
        if ids != expected:
            audit.problems.append(f"story {story}: topic order {ids[:8]} differs from the database's {expected[:8]}")
    return audit
