"""Embedded mode: both roles in one process, reading a source, writing SQLite (or any database).

The same chain as the Kafka roles (parse → prepare → match → write), with what ``newsdedup ingest``
reads as source (``ingest.sources``: a JSONL file, stdin, a folder of .json/.html files): the lineage of
each article is ``file:<name>``, partition 0, offset = line number - 1 (or the file's index in the folder).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from consumers.matcher import DUPLICATE, Matcher
from consumers.matching import match_batch
from consumers.prepare import Lineage, prepare_article
from consumers.settings import Settings
from consumers.storage.store import StoryStore
from consumers.telemetry import Telemetry
from ingest.contract import INVALID_VALUE, InvalidArticle, parse_article
from ingest.sources import Record, jsonl_records

EMBEDDED_PARTITION = 0


@dataclass
class Rejection:
    line: int | None  # line number in a JSONL source; None for a file of a folder
    reason: str
    detail: str
    raw: bytes | None  # as read; None for a page that could not be made an article
    file: str | None = None  # the file's path relative to the folder; None for a JSONL line


@dataclass
class RunSummary:
    read: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # canonical / exact / near / duplicate
    rejected: Counter[str] = field(default_factory=Counter)  # by reason
    seconds: float = 0.0
    index_size: int = 0

    @property
    def stored(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != DUPLICATE)

    @property
    def articles_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0


def build_matcher(settings: Settings) -> Matcher:
    return Matcher(settings.fingerprint_config(), settings.match_config(),
                   settings.preferred_source_list, settings.retention)


def run_embedded(
    lines: Iterable[bytes],
    source_name: str,
    settings: Settings,
    store: StoryStore,
    on_reject: Callable[[Rejection], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    telemetry: Telemetry | None = None,
) -> RunSummary:
    """Process every line of JSONL (a file opened in binary); see run_source."""
    return run_source(jsonl_records(lines, source_name), source_name, settings, store, on_reject, on_progress,
                      telemetry)


def run_source(
    records: Iterable[Record],
    source_name: str,
    settings: Settings,
    store: StoryStore,
    on_reject: Callable[[Rejection], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    telemetry: Telemetry | None = None,
) -> RunSummary:
    """Process every record (from ``ingest.sources.read_source``), writing after each batch.

    A batch is ``settings.batch_max_messages`` records; ``on_progress`` gets each batch's number of records.
    """
    started = time.perf_counter()
    matcher = build_matcher(settings)
    store.load_into(matcher, [EMBEDDED_PARTITION], matcher.fingerprint.identity)
    summary = RunSummary()
    observe = telemetry.stage if telemetry else None
    if telemetry:
        telemetry.health.checks.update(database=True, index=True)
    config = settings.fingerprint_config()
    topic = f"file:{source_name}"
    for batch in _batches(records, settings.batch_max_messages):
        items = []
        for record in batch:
            summary.read += 1
            try:
                if record.raw is None:  # a page the source could not make an article of
                    raise record.error or InvalidArticle(INVALID_VALUE, "unreadable")
                article = parse_article(record.raw, settings.max_message_bytes)
                lineage = Lineage(topic, EMBEDDED_PARTITION, record.offset)
                items.append((prepare_article(article, config, observe), lineage))
            except InvalidArticle as exc:
                summary.rejected[exc.reason] += 1
                if telemetry:
                    telemetry.rejected(exc.reason, dead_lettered=False)
                if on_reject:
                    on_reject(Rejection(record.line, exc.reason, exc.detail, record.raw,
                                        None if record.line is not None else record.label))
        decisions = match_batch(matcher, store, items)
        changes = matcher.take_changes()
        if changes:
            written = time.perf_counter()
            store.write_batch(changes, matcher, [], EMBEDDED_PARTITION)
            if telemetry:
                telemetry.stored(changes, time.perf_counter() - written)
        summary.outcomes.update(decision.outcome for decision in decisions)
        if telemetry:
            telemetry.decided(decisions)
        matcher.evict_expired()
        if telemetry:
            telemetry.index(EMBEDDED_PARTITION, matcher)
            telemetry.health.tick()
        if on_progress:
            on_progress(len(batch))
    summary.seconds = time.perf_counter() - started
    summary.index_size = len(matcher.index)
    return summary


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
