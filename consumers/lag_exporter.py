"""Consumer lag measured outside the roles: each watched group's committed offsets against the log end.

The roles report lag from inside their poll loop, so a role wedged in ``poll``, dead or not yet started
reports a stale 0, or nothing, while messages pile up (issue 11). ``newsdedup lag-exporter`` asks the
brokers instead, as Burrow, kminion and kafka_exporter do: every ``lag_interval_seconds``, for each group,
its committed offsets (OffsetFetch), then each partition's log-start and log-end offsets (ListOffsets,
read_committed as the roles read), and lag = log end - committed. Both roles commit to Kafka (match also
keeps its offset in PostgreSQL, and commits the same one), so the figures hold for both.

One difference from those: a transactional producer (Java, librdkafka) leaves a commit or abort marker
after its records, and the roles commit ``last record + 1``, before the marker, so an idle partition
would show a lag of 1 or more for ever (and the lag alert would fire). A lag whose offsets stood still
for a whole round is looked at once with a group-less read_committed consumer: if it gets no record
between them, the lag is 0.

Functional core: ``partition_lags`` and ``EmptyGaps`` (offsets in, lag out, no I/O). Shell:
``OffsetReader`` (the Kafka requests), ``publish`` (the gauges), ``run_lag_exporter`` (the loop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import OffsetSpec
from kafka.errors import CorruptRecordError, KafkaError, UnknownTopicOrPartitionError, UnsupportedCodecError
from kafka.structs import TopicPartition

from consumers.kafka_io import client_config
from consumers.lifecycle import StopFlag, Watchdog
from consumers.metrics import Health, LagMetrics, serve
from consumers.settings import Settings

log = logging.getLogger(__name__)
REQUEST_TIMEOUT_MS = 10_000  # a round must end well inside the watchdog and a SIGTERM's grace period
PROBE_SECONDS = 2.0


@dataclass(frozen=True)
class Watch:
    """A consumer group, the topic it reads and the role it belongs to (the series' ``role`` label)."""

    role: str
    group: str
    topic: str


def default_watches(settings: Settings) -> tuple[Watch, ...]:
    return (Watch("prepare", settings.prepare_group, settings.topic_raw),
            Watch("match", settings.match_group, settings.topic_fingerprinted))


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int  # where the group resumes: its committed offset, else the log start
    log_end: int
    lag: int


def partition_lags(log_start: Mapping[int, int], log_end: Mapping[int, int],
                   committed: Mapping[int, int]) -> list[PartitionLag]:
    """Lag of one group on each partition of one topic, from the three offset lookups.

    A partition without a committed offset (-1 or missing), or whose committed offset retention has
    deleted, counts from the log start: the roles start there (auto_offset_reset=earliest), so that
    is the backlog of a role that never ran.
    """
    rows = []
    for partition in sorted(log_end):
        start = log_start.get(partition, 0)
        offset = committed.get(partition, -1)
        position = offset if offset >= start else start
        rows.append(PartitionLag(partition, position, log_end[partition], max(0, log_end[partition] - position)))
    return rows


class EmptyGaps:
    """Zeroes lag made only of offsets a read_committed consumer gets no record from.

    Transaction markers and aborted records take offsets; the roles commit past the last record they
    got, so after a transaction an idle partition keeps a lag of 1 or more. A lag is checked (by the
    ``records_between`` the caller passes) once its committed and log-end offsets have stood still for
    a round: a partition that moves is never checked, so a busy topic costs no fetch, and the answer
    holds until either offset moves.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, int], tuple[int, int, bool | None]] = {}

    def apply(self, watch: Watch, row: PartitionLag, records_between: Callable[[], bool | None]) -> PartitionLag:
        key = (watch.group, watch.topic, row.partition)
        if row.lag == 0:
            self._seen.pop(key, None)
            return row
        seen = self._seen.get(key)
        if seen is None or seen[:2] != (row.committed, row.log_end):
            self._seen[key] = (row.committed, row.log_end, None)
            return row
        found = seen[2] if seen[2] is not None else records_between()  # None: it could not tell; ask next round
        self._seen[key] = (row.committed, row.log_end, found)
        return replace(row, lag=0) if found is False else row


# -- the shell ----------------------------------------------------------------------------------------


class OffsetReader:
    """The Kafka side: one admin client for the offsets, a group-less consumer for the gap checks.

    Both are made on first use and dropped after a failed measurement, so the exporter starts before
    Kafka does and recovers from anything a client can get into.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._admin: KafkaAdminClient | None = None
        self._consumer: KafkaConsumer | None = None
        self.gaps = EmptyGaps()

    def measure(self, watch: Watch) -> list[PartitionLag]:
        admin = self._admin_client()
        # Committed offsets first, then the log end: the end only grows, so the lag read is never negative.
        offsets = admin.list_group_offsets({watch.group: None}).get(watch.group, {})
        committed = {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == watch.topic}
        partitions = self._partitions(admin, watch.topic)
        starts = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in partitions})
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions},
                                            isolation_level="read_committed")  # open transactions are no lag yet
        rows = partition_lags({tp.partition: o.offset for tp, o in starts.items()},
                              {tp.partition: o.offset for tp, o in ends.items()}, committed)
        return [self.gaps.apply(watch, row, lambda row=row: self._records_between(watch.topic, row))
                for row in rows]

    def close(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                try:
                    client.close()
                except Exception as exc:  # closing a broken client must not hide why it broke
                    log.debug("closing a Kafka client failed", extra={"error": type(exc).__name__})
        self._admin = self._consumer = None

    def _admin_client(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(**client_config(self.settings), client_id="newsdedup-lag-exporter",
                                           request_timeout_ms=REQUEST_TIMEOUT_MS)
        return self._admin

    @staticmethod
    def _partitions(admin: KafkaAdminClient, topic: str) -> list[TopicPartition]:
        described = admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition_index"]) for t in described for p in t["partitions"]]
        if not partitions:  # a misspelt or deleted topic must not look like a topic without lag
            raise UnknownTopicOrPartitionError(f"topic {topic} does not exist")
        return partitions

    def _records_between(self, topic: str, row: PartitionLag) -> bool | None:
        """True if a read_committed consumer gets a record from offsets [committed, log_end); None if
        it could not tell within PROBE_SECONDS."""
        if self._consumer is None:
            self._consumer = KafkaConsumer(**client_config(self.settings), group_id=None, enable_auto_commit=False,
                                           isolation_level="read_committed", request_timeout_ms=REQUEST_TIMEOUT_MS)
        consumer, partition = self._consumer, TopicPartition(topic, row.partition)
        try:
            consumer.assign([partition])
            consumer.seek(partition, row.committed)
            deadline = time.monotonic() + PROBE_SECONDS
            while time.monotonic() < deadline:
                records = consumer.poll(timeout_ms=200, max_records=1).get(partition)
                if records:
                    return records[0].offset < row.log_end
                if consumer.position(partition) >= row.log_end:  # skipped markers and aborted records only
                    return False
            return None
        except Exception as exc:  # a parse error need not be a KafkaError (consumers/fetch_guard.py)
            # The consumer goes: after a batch it cannot parse, kafka-python's next poll spins on it for good.
            self._consumer = None
            consumer.close()
            undecodable = isinstance(exc, CorruptRecordError | UnsupportedCodecError) or not isinstance(exc, KafkaError)
            log.warning("lag check read nothing", extra={"topic": topic, "partition": row.partition,
                                                         "offset": row.committed, "error": _describe(exc)})
            return True if undecodable else None  # a batch nobody here can decode is still a batch: real lag


def publish(metrics: LagMetrics, watch: Watch, rows: Iterable[PartitionLag]) -> None:
    for row in rows:
        labels = {"role": watch.role, "group": watch.group, "topic": watch.topic, "partition": str(row.partition)}
        metrics.lag.labels(**labels).set(row.lag)
        metrics.committed.labels(**labels).set(row.committed)
        metrics.log_end.labels(**labels).set(row.log_end)
    metrics.up.labels(role=watch.role, group=watch.group).set(1)
    metrics.last_success.labels(role=watch.role, group=watch.group).set(time.time())


def run_lag_exporter(settings: Settings, stop: StopFlag, watches: Sequence[Watch] | None = None) -> int:
    """Measure every ``lag_interval_seconds`` until ``stop``; serve the result on ``metrics_port``.

    A failed measurement sets ``newsdedup_lag_exporter_up`` of its group to 0 and keeps the last
    figures (a lag that silently went to 0 is what this exporter exists to prevent).
    """
    watches = tuple(watches or default_watches(settings))
    if not settings.metrics_port:
        log.error("the lag exporter needs metrics_port: /metrics is all it does")
        return 2
    metrics, health = LagMetrics(), Health(stall_seconds=settings.stall_seconds)
    for watch in watches:
        metrics.up.labels(role=watch.role, group=watch.group).set(0)
        metrics.last_success.labels(role=watch.role, group=watch.group).set(time.time())
        health.set(watch.group, False)
    try:
        server = serve(metrics, health, settings.metrics_port, settings.metrics_host)
    except OSError as exc:
        log.error("metrics server not started", extra={"port": settings.metrics_port, "error": str(exc)})
        return 1
    log.info("lag exporter started", extra={"port": settings.metrics_port, "groups": [w.group for w in watches],
                                            "interval_seconds": settings.lag_interval_seconds})
    watchdog = Watchdog(health, settings.watchdog_seconds).start()  # a Kafka call that never returns
    reader = OffsetReader(settings)
    last: dict[Watch, bool | None] = dict.fromkeys(watches)
    try:
        while not stop:
            begun = time.monotonic()
            for watch in watches:
                last[watch] = measure_once(reader, metrics, watch, last[watch])
                health.set(watch.group, last[watch])
            health.tick()
            stop.wait(max(0.0, settings.lag_interval_seconds - (time.monotonic() - begun)))
    finally:
        log.info("lag exporter stopping")
        watchdog.stop()
        reader.close()
        server.shutdown()
        server.server_close()
    return 0


def measure_once(reader: OffsetReader, metrics: LagMetrics, watch: Watch, last: bool | None) -> bool:
    """One group's measurement, published; False if it failed. Logs changes (``last``: the previous
    outcome, None at first), not every round; a failure that is no KafkaError (a bug) every time."""
    context = {"role": watch.role, "group": watch.group, "topic": watch.topic}
    try:
        rows = reader.measure(watch)
    except Exception as exc:  # whatever broke, the exporter reports it and tries again next round
        metrics.up.labels(role=watch.role, group=watch.group).set(0)
        reader.close()
        if last is not False or not isinstance(exc, KafkaError):
            log.warning("lag measurement failed", exc_info=not isinstance(exc, KafkaError),
                        extra={**context, "error": _describe(exc)})
        return False
    publish(metrics, watch, rows)
    if last is not True:
        log.info("lag measured", extra={**context, "lag": sum(row.lag for row in rows)})
    return True


def _describe(exc: BaseException) -> str:
    text, name = str(exc), type(exc).__name__
    return text if name in text else f"{name}: {text}" if text else name  # kafka-python's own text names its class
