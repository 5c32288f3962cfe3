"""A record batch the Kafka client cannot decode: reported and held within seconds, never a silent wedge.

kafka-python raises once when it cannot parse a fetched batch (an unknown or missing codec, a failed
CRC, an error from a decompressor), then leaves the broken batch in place as the next one in line;
the following ``poll`` spins on it forever at 100% CPU without returning, deaf to SIGTERM, while
every gauge of the loop stands still (issue 11). So the first error must be caught and the
partition paused before the next poll: a paused partition's batch is parked, and the client goes
on with the other partitions.

Then the role says so loudly (an error log with topic, partition, offset and reason, /readyz
failing, ``newsdedup_undecodable_batches_total`` and ``newsdedup_blocked_partitions``), keeps the
other partitions moving for ``undecodable_hold_seconds`` so that Prometheus sees it, and exits
with EXIT_UNDECODABLE for its supervisor. Nothing is skipped: the offset is not committed, so the
batch is read again once the cause is fixed (the codec installed, the corrupt segment dealt with).
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kafka.errors import CorruptRecordError, KafkaError, UnsupportedCodecError
from kafka.structs import TopicPartition

if TYPE_CHECKING:  # the CLI imports this module for its exit code: keep its start light
    from kafka import KafkaConsumer

    from consumers.telemetry import Telemetry

log = logging.getLogger(__name__)
EXIT_UNDECODABLE = 65  # EX_DATAERR: the input cannot be read; restart-on-failure policies start the role again
DECODE_ERRORS = (UnsupportedCodecError, CorruptRecordError)
# Where kafka-python parses fetched bytes: its record formats, its codecs, and the fetcher's record iterator.
PARSING_FILES = re.compile(r"[/\\]kafka[/\\](record[/\\]|codec\.py$)")
PARSING_FUNCTIONS = frozenset({"_unpack_records", "take"})
HEALTH_CHECK = "decodable"


class UndecodableBatchError(RuntimeError):
    """The role held an undecodable batch for undecodable_hold_seconds (or went idle with one) and stops."""


@dataclass(frozen=True)
class Blocked:
    partition: TopicPartition
    offset: int | None
    reason: str
    since: float


class FetchGuard:
    def __init__(self, consumer: KafkaConsumer, telemetry: Telemetry, hold_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self.telemetry = telemetry
        self.hold_seconds = hold_seconds
        self._clock = clock
        self.blocked: dict[TopicPartition, Blocked] = {}
        telemetry.health.set(HEALTH_CHECK, True)

    def caught(self, exc: BaseException) -> bool:
        """After ``poll`` raised: True if ``exc`` is an undecodable batch, now paused and reported."""
        records = _records_in_line(self.consumer)
        decode_error = isinstance(exc, DECODE_ERRORS) or _raised_parsing_records(exc)
        if records is None or not decode_error:
            return False  # a connection or broker error (the caller retries), or a bug (the caller raises)
        partition = records.topic_partition
        offset = self._position(partition)
        reason = f"{type(exc).__name__}: {exc}"[:500]
        self.consumer.pause(partition)
        # Drop the broken records too: parked while paused, they would come back in line (and spin) whenever
        # kafka-python recreates the partition's state after a rebalance; dropped, the batch is fetched again
        # and caught again.
        records.drain()
        # Kept through rebalances, with the time first seen: the hold ends when it ends, whichever process
        # owns the partition by then (one that gets it finds the batch for itself).
        earlier = self.blocked.get(partition)
        self.blocked[partition] = Blocked(partition, offset, reason, earlier.since if earlier else self._clock())
        role = self.telemetry.role
        log.error("undecodable record batch; partition paused, nothing skipped", extra={
            "role": role, "topic": partition.topic, "partition": partition.partition, "offset": offset,
            "reason": reason, "exit_in_seconds": self.hold_seconds, "exit_code": EXIT_UNDECODABLE})
        metrics = self.telemetry.metrics
        metrics.undecodable_batches.labels(role=role, topic=partition.topic, partition=str(partition.partition)).inc()
        metrics.blocked_partitions.labels(role=role).set(len(self.blocked))
        self.telemetry.health.set(HEALTH_CHECK, False)
        return True

    def check(self, idle_exit: bool = False) -> None:
        """Raise UndecodableBatchError once a partition has been held long enough, or when a role that exits
        when idle would otherwise end as if its work were done."""
        if not self.blocked:
            return
        first = min(self.blocked.values(), key=lambda b: b.since)
        if idle_exit or self._clock() - first.since >= self.hold_seconds:
            where = ", ".join(f"{b.partition.topic}[{b.partition.partition}] at offset {b.offset}"
                              for b in self.blocked.values())
            raise UndecodableBatchError(f"cannot decode the record batch of {where}: {first.reason}")

    def _position(self, partition: TopicPartition) -> int | None:
        try:
            return self.consumer.position(partition, timeout_ms=1000)
        except (KafkaError, TypeError):
            return None


def _records_in_line(consumer: KafkaConsumer) -> Any:
    """The fetched records kafka-python is handing out (a ``Fetcher.PartitionRecords``), if any.

    After a parse error that object stays in place: it is what the next poll spins on. No public API names it.
    """
    records = getattr(getattr(consumer, "_fetcher", None), "_next_partition_records", None)
    return records if records and hasattr(records, "topic_partition") else None


def _raised_parsing_records(exc: BaseException) -> bool:
    """True if ``exc`` came out of parsing fetched records (a decompressor's own error, say), not from elsewhere
    in poll: records wait in line after any large fetch, so their presence alone blames nothing."""
    frames = traceback.extract_tb(exc.__traceback__)
    return any(PARSING_FILES.search(frame.filename)
               or (frame.name in PARSING_FUNCTIONS and frame.filename.endswith("fetcher.py")) for frame in frames)
