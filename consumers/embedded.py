"""Embedded mode: both roles in one process, reading a file, writing SQLite (or any database).

The same chain as the Kafka roles (parse → prepare → match → write), with a file as source:
the lineage of each article is ``file:<name>``, partition 0, offset = line number - 1.
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
from ingest.contract import InvalidArticle, parse_article

EMBEDDED_PARTITION = 0


@dataclass
class Rejection:
    line: int
    reason: str
    detail: str
    raw: bytes


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
    """Process every line; write after each batch of ``settings.batch_max_messages``."""
    started = time.perf_counter()
    matcher = build_matcher(settings)
    store.load_into(matcher, [EMBEDDED_PARTITION], matcher.fingerprint.identity)
    summary = RunSummary()
    observe = telemetry.stage if telemetry else None
    if telemetry:
        telemetry.health.checks.update(database=True, index=True)
    config = settings.fingerprint_config()
    topic = f"file:{source_name}"
    for batch in _batches(lines, settings.batch_max_messages):
        items = []
        for offset, raw in batch:
            summary.read += 1
            try:
                article = parse_article(raw, settings.max_message_bytes)
                items.append((prepare_article(article, config, observe), Lineage(topic, EMBEDDED_PARTITION, offset)))
            except InvalidArticle as exc:
                summary.rejected[exc.reason] += 1
                if telemetry:
                    telemetry.rejected(exc.reason, dead_lettered=False)
                if on_reject:
                    on_reject(Rejection(offset + 1, exc.reason, exc.detail, raw))
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


def _batches(lines: Iterable[bytes], size: int) -> Iterator[list[tuple[int, bytes]]]:
    batch: list[tuple[int, bytes]] = []
    for offset, line in enumerate(lines):
        if not line.strip():
            continue  # blank lines in a JSONL file are not messages
        batch.append((offset, line.rstrip(b"\r\n")))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
