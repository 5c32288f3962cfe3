"""Prometheus metrics and the health endpoints: the only module that imports prometheus_client.

Names follow Prometheus conventions: one prefix (``newsdedup_``), base units in the name
(``_seconds``, ``_bytes``, ``_ratio``), ``_total`` for counters. Labels take values from small
fixed sets only (role, outcome, reason, stage, topic, partition): never a URL, outlet or id.

The HTTP server on ``metrics_port`` serves ``/metrics``, ``/healthz`` (the process is alive and
its loop is not stalled) and ``/readyz`` (connected to Kafka and the database, index loaded).
``LagMetrics`` is what ``newsdedup lag-exporter`` serves the same way: lag measured outside the roles.
"""

from __future__ import annotations

import contextlib
import json
import platform
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    make_wsgi_app,
)

from ingest.contract import REJECT_REASONS

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
END_TO_END_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
COUNT_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500)
DATABASE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


# Outcome label values each role reports; created up front so dashboards show zeros, not gaps.
OUTCOMES = {
    "prepare": ("prepared", "rejected"),
    "match": ("canonical", "near", "exact", "duplicate", "rejected"),
    "embedded": ("canonical", "near", "exact", "duplicate", "rejected"),
}
REASONS = (*REJECT_REASONS, "processing_error")


class Metrics:
    """Every metric newsdedup exports, registered on a registry of its own (tests make many).

    Every series carries ``role`` (prepare, match or embedded), so one dashboard serves all.
    """

    def __init__(self, role: str, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # the *_created series double the series count for nothing a dashboard uses
        self.role = role
        self.registry = registry or CollectorRegistry()
        self._stage_children: dict[str, Any] = {}
        r = self.registry
        self.articles = Counter("newsdedup_articles", "Articles handled, by outcome: prepared (prepare role); "
                                "canonical (new story), near, exact, duplicate (already stored); rejected.",
                                ["role", "outcome"], registry=r)
        self.rejected = Counter("newsdedup_rejected_articles", "Articles rejected, by reason.",
                                ["role", "reason"], registry=r)
        self.dead_letters = Counter("newsdedup_dead_letters", "Messages sent to the dead-letter topic, by reason.",
                                    ["role", "reason"], registry=r)
        self.stage_seconds = Histogram("newsdedup_stage_duration_seconds", "Time one stage took for one article: "
                                       "extract, clean, normalise, fingerprint, lsh_query, verify.",
                                       ["role", "stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.db_write_seconds = Histogram("newsdedup_database_write_duration_seconds", "Time one batch's database "
                                          "transaction took.", ["role"], buckets=DATABASE_BUCKETS, registry=r)
        self.end_to_end_seconds = Histogram(
            "newsdedup_end_to_end_seconds", "From scraped_at (since=scraped) or from the raw Kafka record's timestamp "
            "(since=kafka) to stored.", ["role", "since"], buckets=END_TO_END_BUCKETS, registry=r)
        self.candidates = Histogram("newsdedup_lsh_candidates", "LSH candidates looked at per article.", ["role"],
                                    buckets=COUNT_BUCKETS, registry=r)
        self.similarity = Histogram("newsdedup_match_similarity_ratio", "Similarity of accepted near matches "
                                    "(max of Jaccard and containment).", ["role"], buckets=RATIO_BUCKETS, registry=r)
        self.story_size = Histogram("newsdedup_story_size_articles", "Size of the story an article joined or founded.",
                                    ["role"], buckets=COUNT_BUCKETS, registry=r)
        self.index_articles = Gauge("newsdedup_index_articles", "Articles in the in-memory index.",
                                    ["role", "partition"], registry=r)
        self.index_stories = Gauge("newsdedup_index_stories", "Stories in the in-memory index.",
                                   ["role", "partition"], registry=r)
        self.index_bytes = Gauge("newsdedup_index_memory_bytes", "Estimated memory of the in-memory index.",
                                 ["role", "partition"], registry=r)
        self.stories_created = Counter("newsdedup_stories_created", "Stories founded.", ["role"], registry=r)
        self.canonical_changes = Counter("newsdedup_canonical_changes", "Canonical elections that changed a story's "
                                         "canonical article.", ["role"], registry=r)
        self.story_merges = Counter("newsdedup_story_merges", "Stories merged into another story.", ["role"],
                                    registry=r)
        self.db_errors = Counter("newsdedup_database_errors", "Database operations that failed.", ["role"], registry=r)
        self.db_retries = Counter("newsdedup_database_retries", "Database operations retried after a failure.",
                                  ["role"], registry=r)
        self.commits = Counter("newsdedup_commits", "Batches committed (database and Kafka offsets).", ["role"],
                               registry=r)
        self.commit_failures = Counter("newsdedup_commit_failures", "Batch commits that failed.", ["role"], registry=r)
        self.rebalances = Counter("newsdedup_rebalances", "Partition assignments and revocations.",
                                  ["role", "change"], registry=r)
        self.assigned_partitions = Gauge("newsdedup_assigned_partitions", "Partitions this consumer owns now "
                                         "(0 for a standby).", ["role"], registry=r)
        self.lag_messages = Gauge("newsdedup_consumer_lag_messages", "Messages behind the end of the partition.",
                                  ["role", "topic", "partition"], registry=r)
        self.lag_seconds = Gauge("newsdedup_consumer_lag_seconds", "Age of the last record processed while behind "
                                 "the end of the partition; 0 when caught up.", ["role", "topic", "partition"],
                                 registry=r)
        self.undecodable_batches = Counter(
            "newsdedup_undecodable_batches", "Record batches the Kafka client could not decode (unknown codec, corrupt "
            "batch, any error while parsing a fetch); the partition is paused, nothing is skipped.",
            ["role", "topic", "partition"], registry=r)
        self.blocked_partitions = Gauge("newsdedup_blocked_partitions", "Partitions paused on a record batch this "
                                        "process cannot decode (it exits after undecodable_hold_seconds).",
                                        ["role"], registry=r)
        self.events_published = Counter("newsdedup_story_events_published", "Story events sent to stories.events "
                                        "and acknowledged (a replay after a crash counts again).", ["role"],
                                        registry=r)
        self.event_publish_failures = Counter("newsdedup_story_event_publish_failures", "Attempts to publish "
                                              "stored story events that failed; the events wait in the database.",
                                              ["role"], registry=r)
        self.event_relay_pending = Gauge("newsdedup_story_event_relay_pending_partitions", "Match partitions whose "
                                         "stored events wait for publication after a failure.", ["role"], registry=r)
        self.last_processed = Gauge("newsdedup_last_processed_timestamp_seconds", "Unix time of the last record "
                                    "processed (the start time until then).", ["role"], registry=r)
        self.ready = Gauge("newsdedup_ready", "1 when /readyz answers ready.", ["role"], registry=r)
        # Growth of the database (consumers/growth.py; the match role measures it on its idle pings).
        self.database_size = Gauge("newsdedup_database_size_bytes", "Size of the database on disk "
                                   "(pg_database_size).", ["role"], registry=r)
        self.database_rows = Gauge("newsdedup_database_rows", "Rows per table (PostgreSQL's planner estimate, "
                                   "pg_class.reltuples).", ["role", "table"], registry=r)
        self.oldest_article = Gauge("newsdedup_oldest_article_timestamp_seconds", "Unix time the oldest stored "
                                    "article arrived (the measurement's time while none is stored): retention at "
                                    "work keeps its age below store_retention_days.", ["role"], registry=r)
        self.database_disk = Gauge("newsdedup_database_disk_bytes", "The database's disk size as configured "
                                   "(setting database_disk_bytes; 0: not told).", ["role"], registry=r)
        self.growth_measured = Gauge("newsdedup_database_growth_timestamp_seconds", "Unix time of the last "
                                     "measurement of the database's growth.", ["role"], registry=r)
        self.build_info = Gauge("newsdedup_build_info", "Build of the running process (value 1).",
                                ["role", "version", "python"], registry=r)
        self.build_info.labels(role=role, version=package_version(), python=platform.python_version()).set(1)
        # Create the labelled children that always exist, so dashboards show zeros instead of gaps
        # and increase() sees the first dead letter of a reason.
        for outcome in OUTCOMES.get(role, OUTCOMES["match"]):
            self.articles.labels(role=role, outcome=outcome)
        for reason in REASONS:
            self.rejected.labels(role=role, reason=reason)
            self.dead_letters.labels(role=role, reason=reason)
        for counter in (self.commits, self.commit_failures, self.db_errors, self.db_retries, self.stories_created,
                        self.canonical_changes, self.story_merges, self.events_published,
                        self.event_publish_failures):
            counter.labels(role=role)
        self.assigned_partitions.labels(role=role).set(0)
        self.blocked_partitions.labels(role=role).set(0)
        self.event_relay_pending.labels(role=role).set(0)
        self.last_processed.labels(role=role).set(time.time())
        self.ready.labels(role=role).set(0)

    def set_ready(self, ready: bool) -> None:
        self.ready.labels(role=self.role).set(int(ready))

    def set_growth(self, size_bytes: int, rows: dict[str, int], oldest_article: float | None,
                   disk_bytes: int) -> None:
        now = time.time()
        self.database_size.labels(role=self.role).set(size_bytes)
        for table, count in rows.items():
            self.database_rows.labels(role=self.role, table=table).set(count)
        self.oldest_article.labels(role=self.role).set(now if oldest_article is None else oldest_article)
        self.database_disk.labels(role=self.role).set(disk_bytes)
        self.growth_measured.labels(role=self.role).set(now)

    def observe_stage(self, stage: str, seconds: float) -> None:
        # Several calls per article: a cached child saves labels()' lookup (4.5% of the prepare stage).
        child = self._stage_children.get(stage)
        if child is None:
            child = self._stage_children[stage] = self.stage_seconds.labels(role=self.role, stage=stage)
        child.observe(seconds)

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop a revoked partition's series, so a standby does not keep reporting stale lag."""
        for gauge in (self.lag_messages, self.lag_seconds):
            with contextlib.suppress(KeyError):
                gauge.remove(self.role, topic, str(partition))
        for gauge in (self.index_articles, self.index_stories, self.index_bytes):
            with contextlib.suppress(KeyError):
                gauge.remove(self.role, str(partition))


class LagMetrics:
    """What ``newsdedup lag-exporter`` measures from outside the roles (consumers/lag_exporter.py).

    ``role`` is the role whose consumer group a series is about (prepare, match), so the dashboard's
    $role applies; ``group`` is that group's name.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()
        self.registry = registry or CollectorRegistry()
        r, labels = self.registry, ["role", "group", "topic", "partition"]
        self.lag = Gauge("newsdedup_group_lag_messages", "Messages of the partition the group has not consumed: "
                         "log-end minus committed offset (0 where the offsets between hold no record a consumer "
                         "gets: transaction markers, aborted records).", labels, registry=r)
        self.committed = Gauge("newsdedup_group_committed_offset", "The group's committed offset; the log-start "
                               "offset where it committed none (the roles start there).", labels, registry=r)
        self.log_end = Gauge("newsdedup_log_end_offset", "Offset after the last committed record of the partition "
                             "(read_committed, as the roles read).", labels, registry=r)
        self.up = Gauge("newsdedup_lag_exporter_up", "1 when the last measurement of the group succeeded.",
                        ["role", "group"], registry=r)
        self.last_success = Gauge("newsdedup_lag_exporter_last_success_timestamp_seconds", "Unix time of the last "
                                  "successful measurement of the group (the start time until then).",
                                  ["role", "group"], registry=r)

    def set_ready(self, ready: bool) -> None:
        pass  # /readyz tells it; newsdedup_lag_exporter_up says which group fails


class ExplorerMetrics:
    """What ``newsdedup serve`` (consumers/explorer) exports: its requests, by route template.

    ``route`` is the path template (``/api/stories/{story_id}``), never the path itself, so an id or a
    URL never becomes a label value; requests no route matched share ``route="unmatched"``.
    """

    def __init__(self, role: str = "explorer", registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()
        self.role = role
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("newsdedup_http_requests", "HTTP requests answered, by method, route template and "
                                "status code.", ["role", "method", "route", "status"], registry=r)
        self.request_seconds = Histogram("newsdedup_http_request_duration_seconds", "Time to answer one HTTP "
                                         "request, by method and route template.", ["role", "method", "route"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.ready = Gauge("newsdedup_ready", "1 when /readyz answers ready.", ["role"], registry=r)
        self.build_info = Gauge("newsdedup_build_info", "Build of the running process (value 1).",
                                ["role", "version", "python"], registry=r)
        self.build_info.labels(role=role, version=package_version(), python=platform.python_version()).set(1)
        self.ready.labels(role=role).set(0)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(role=self.role, method=method, route=route, status=str(status)).inc()
        self.request_seconds.labels(role=self.role, method=method, route=route).observe(seconds)

    def set_ready(self, ready: bool) -> None:
        self.ready.labels(role=self.role).set(int(ready))


def package_version() -> str:
    try:
        return version("newsdedup")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Health:
    """What /healthz and /readyz answer from; the loop updates it, the HTTP thread reads it."""

    stall_seconds: float = 120.0
    last_tick: float = field(default_factory=time.monotonic)
    checks: dict[str, bool] = field(default_factory=dict)  # e.g. kafka, database, index

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def set(self, check: str, ok: bool) -> None:
        self.checks[check] = ok

    @property
    def alive(self) -> bool:
        return time.monotonic() - self.last_tick < self.stall_seconds

    @property
    def ready(self) -> bool:
        return self.alive and bool(self.checks) and all(self.checks.values())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class names it so
        pass  # scrapes every few seconds would drown the JSON log


class Served(Protocol):
    """What serve() exports: Metrics or LagMetrics."""

    registry: CollectorRegistry

    def set_ready(self, ready: bool) -> None: ...


def serve(metrics: Served, health: Health, port: int, host: str = "0.0.0.0") -> WSGIServer:
    """Start the metrics and health server in a daemon thread; returns it (``shutdown()`` stops it)."""
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in ("/healthz", "/readyz"):
            ok, body = health_answer(metrics, health, path)
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [body]
        metrics.set_ready(health.ready)
        return metrics_app(environ, start_response)

    server = make_server(host, port, app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def health_answer(metrics: Served, health: Health, path: str) -> tuple[bool, bytes]:
    """What /healthz or /readyz answers: (ok, JSON body); every server of health endpoints uses it."""
    ok = health.alive if path == "/healthz" else health.ready
    metrics.set_ready(health.ready)
    return ok, json.dumps({"ok": ok, "alive": health.alive, "checks": health.checks}).encode()


def exposition(metrics: Served) -> tuple[bytes, str]:
    """The registry in Prometheus' text format, with its content type (for servers other than serve's)."""
    return generate_latest(metrics.registry), CONTENT_TYPE_LATEST
