"""The fault-injection harness: an own Kafka + PostgreSQL instance, role processes that can be
killed and restarted, a paced article feeder, audits of what was stored, and the summary report.

Everything here talks to the instance started with NEWSDEDUP_RUN_DIR / ports of its own (see
``INSTANCE_ENV``), never to the default services on 19092/15432 that other people use.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from consumers.lifecycle import EXIT_WEDGED
from consumers.settings import Settings
from ingest.producer import ArticleProducer
from tests.integration.conftest import (
    DEV_ARTICLES,
    ROOT,
    Services,
    exported,
    free_port,
    read_export,
    read_topic,
    run_cli,
    settings_env,
    stories_of,
)
from tests.integration.events_support import EventAudit, audit_events, stored_events

SERVICES_SH = ROOT / "scripts" / "services.sh"
# Our own instance. NEWSDEDUP_TEST_* is the prefix the service's settings loader ignores.
INSTANCE_ENV = {
    "NEWSDEDUP_RUN_DIR": os.environ.get("NEWSDEDUP_TEST_FAULTS_RUN_DIR", "/tmp/newsdedup-faults"),
    "NEWSDEDUP_KAFKA_PORT": os.environ.get("NEWSDEDUP_TEST_FAULTS_KAFKA_PORT", "29092"),
    "NEWSDEDUP_KAFKA_CONTROLLER_PORT": os.environ.get("NEWSDEDUP_TEST_FAULTS_KAFKA_CONTROLLER_PORT", "29093"),
    "NEWSDEDUP_PG_PORT": os.environ.get("NEWSDEDUP_TEST_FAULTS_PG_PORT", "25432"),
}
GRACE_SECONDS = 15.0  # a role must exit this soon after SIGTERM
WATCHDOG_SECONDS = 45.0  # roles' watchdog here: above the longest legitimate stall (a commit times out in 30 s)


# -- the services instance ---------------------------------------------------------------------------


class FaultServices(Services):
    """This suite's own instance: started, stopped and restarted through services.sh."""

    def __init__(self) -> None:
        super().__init__({})  # filled from the export lines of `services.sh up`

    def script(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        full = {**{k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}, **INSTANCE_ENV}
        return subprocess.run(["bash", str(SERVICES_SH), *args], env=full, capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)

    def up(self, *services: str) -> None:
        result = self.script("up", *services, timeout=600)
        if result.returncode != 0:
            raise AssertionError(f"services.sh up {' '.join(services)} failed:\n{result.stderr[-3000:]}")
        self.env.update(exported(result.stdout))

    def down(self, *services: str) -> None:
        result = self.script("down", *services, timeout=120)
        if result.returncode != 0:
            raise AssertionError(f"services.sh down {' '.join(services)} failed:\n{result.stderr[-3000:]}")

    def running(self, *services: str) -> bool:
        return self.script("status", *services, timeout=30).returncode == 0


# -- small helpers -----------------------------------------------------------------------------------


def http_status(port: int, path: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of GET path (503 is an answer too); None when nothing answered."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def now() -> datetime:
    return datetime.now(UTC)


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def dev_lines(count: int | None = None) -> list[bytes]:
    lines = [line for line in DEV_ARTICLES.read_bytes().splitlines() if line.strip()]
    return lines[:count] if count else lines


def replicated_dev_lines(replicas: int) -> list[bytes]:
    """The dev set ``replicas`` times, copies made distinct articles by their ids and URLs.

    Replica k of an article has id ``<id>~r<k>`` and a URL with ``/r<k>`` after the host (k=0 is
    the original); the lines are interleaved so the stream stays in publication order.
    """
    out = []
    for line in dev_lines():
        article = json.loads(line)
        for k in range(replicas):
            copy = dict(article)
            if k:
                scheme, _, rest = article["url"].partition("://")
                host, _, path = rest.partition("/")
                copy["id"] = f"{article['id']}~r{k}"
                copy["url"] = f"{scheme}://{host}/r{k}/{path}"
            out.append(json.dumps(copy, ensure_ascii=False).encode())
    return out


def ids_of(lines: Iterable[bytes]) -> list[str]:
    return [json.loads(line)["id"] for line in lines]


def write_lines(path: Path, lines: Iterable[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def compare_exports(kafka: dict[str, dict], embedded: dict[str, dict]) -> dict[str, int]:
    """How the Kafka path's export differs from embedded mode's: 0 everywhere means equal."""
    ours, theirs = stories_of(kafka), stories_of(embedded)
    return {
        "missing_rows": len(set(embedded) - set(kafka)),
        "extra_rows": len(set(kafka) - set(embedded)),
        "stories_only_kafka": len(ours - theirs),
        "stories_only_embedded": len(theirs - ours),
        "canonical_mismatches": sum(1 for i, row in embedded.items()
                                    if i in kafka and kafka[i]["canonical_id"] != row["canonical_id"]),
    }


# -- role processes ----------------------------------------------------------------------------------


class Role:
    """One `newsdedup prepare|match` process that can be killed and started again (a new generation)."""

    def __init__(self, kind: str, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.kind, self.name, self.env, self.log_dir = kind, name, env, log_dir
        self.metrics_port = int(env.get("NEWSDEDUP_METRICS_PORT", "0")) or None
        self.generation = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._signalled: str | None = None  # the signal the test sent to the current process
        self.lock = threading.RLock()  # the test and the supervisor both start and kill
        self.start()

    def start(self) -> None:
        with self.lock:
            assert self.process is None or self.process.poll() is not None, f"{self.name} is still running"
            self.generation += 1
            self._signalled = None
            with self.log_path(self.generation).open("wb") as log:
                self.process = subprocess.Popen([sys.executable, "-m", "consumers.cli", self.kind], env=self.env,
                                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            self.started_at = time.monotonic()

    def log_path(self, generation: int) -> Path:
        return self.log_dir / f"{self.name}.{generation}.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> datetime:
        """SIGKILL; returns the moment of the kill."""
        with self.lock:
            assert self.process is not None and self.alive, f"{self.name} is not running:\n{self.tail()}"
            moment = now()
            self._signalled = "SIGKILL"
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
            return moment

    def wedged(self, stall: float) -> bool:
        """Alive, but its loop made no progress for ``stall`` seconds: /healthz answers 503 (a liveness probe)."""
        with self.lock:
            if not self.alive or self.metrics_port is None or time.monotonic() - self.started_at < stall + 5:
                return False
        return http_status(self.metrics_port, "/healthz") == 503

    def terminate(self, timeout: float = GRACE_SECONDS) -> tuple[int | None, float]:
        """SIGTERM and wait; (exit code or None if it hung and was killed, seconds to exit)."""
        with self.lock:
            assert self.process is not None
            if self.process.poll() is not None:
                return self.process.returncode, 0.0
            started = time.monotonic()
            self._signalled = "SIGTERM"
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            return None, time.monotonic() - started
        return self.process.returncode, time.monotonic() - started

    def crashed(self) -> bool:
        """True when the current process ended without a signal from the test."""
        return self.process is not None and self.process.poll() is not None and self._signalled is None

    def tail(self, lines: int = 40, generation: int | None = None) -> str:
        path = self.log_path(generation or self.generation)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def events(self, msg: str | None = None, generation: int | None = None) -> list[dict[str, Any]]:
        """The JSON log lines (of one generation, or of all), optionally only those with this message."""
        generations = [generation] if generation else range(1, self.generation + 1)
        out = []
        for g in generations:
            path = self.log_path(g)
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if msg is None or entry.get("msg") == msg:
                        entry["generation"] = g
                        out.append(entry)
        return out

    def owns_match_partition(self) -> bool:
        """From the log: does this matcher hold a partition now (its last assignment event)?"""
        last = [e for e in self.events(generation=self.generation)
                if e.get("msg") in ("partition assigned", "partition revoked")]
        return bool(last) and last[-1]["msg"] == "partition assigned"

    def prepare_partitions(self) -> list[int]:
        assigned = self.events("partitions assigned", generation=self.generation)
        return list(assigned[-1]["partitions"]) if assigned else []


# -- the feeder ----------------------------------------------------------------------------------------


class Feeder(threading.Thread):
    """Sends articles (validated, keyed by URL, as scrapers do) at a steady rate in the background.

    With `hold_at`, it stops after that many articles until `release()`: a test that must inject its
    fault mid-stream can then do so however slowly the machine got there."""

    def __init__(self, settings: Settings, lines: list[bytes], rate: float | None, hold_at: int | None = None) -> None:
        super().__init__(daemon=True, name="feeder")
        self.settings, self.lines, self.rate, self.hold_at = settings, lines, rate, hold_at
        self.released = threading.Event()
        self.sent = 0
        self.error: BaseException | None = None
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None

    def run(self) -> None:
        try:
            producer = ArticleProducer(self.settings.kafka_bootstrap_servers, self.settings.topic_raw,
                                       max_message_bytes=self.settings.max_message_bytes)
            try:
                self.started_at = now()
                began = time.monotonic()
                for index, line in enumerate(self.lines):
                    if index == self.hold_at:
                        producer.flush()
                        waited = time.monotonic()
                        self.released.wait()
                        began += time.monotonic() - waited  # the steady rate goes on from here, no burst
                    producer.send(json.loads(line))
                    self.sent += 1
                    if self.rate:
                        delay = began + (index + 1) / self.rate - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    if self.sent % 500 == 0:
                        producer.flush()
                producer.flush()
            finally:
                producer.close()
            self.finished_at = now()
        except BaseException as exc:
            self.error = exc

    def release(self) -> None:
        self.released.set()

    def done(self, timeout: float = 300) -> None:
        self.release()
        self.join(timeout)
        assert not self.is_alive(), "the feeder did not finish"
        if self.error is not None:
            raise AssertionError(f"the feeder failed: {type(self.error).__name__}: {self.error}") from self.error


# -- audits -------------------------------------------------------------------------------------------


@dataclass
class Audit:
    expected: int
    stored: int  # distinct expected articles stored
    rows: int  # article rows
    duplicates: int  # extra rows of an input id
    lost: int
    unexpected: int  # stored ids that were not sent as good articles
    event_problems: int  # articles without exactly one founded/joined event

    @property
    def exact(self) -> bool:
        return self.duplicates == 0 and self.lost == 0 and self.unexpected == 0 and self.event_problems == 0


@dataclass(frozen=True)
class RunEnd:
    """How a fault run over a stream ended: what was stored, how the export differs from embedded mode
    (0 everywhere: equal), and how each role exited on SIGTERM."""

    expected: int
    reached: int
    audit: Audit
    diff: dict[str, int]
    exits: dict[str, tuple[int | None, float]]
    events: EventAudit  # stories.events against the story_events table

    @property
    def equal(self) -> bool:
        return not any(self.diff.values())

    def assert_exact(self) -> None:
        """Every article stored once, the export equal to embedded mode's, every role out cleanly in time."""
        assert self.reached == self.expected, f"{self.reached} of {self.expected} stored"
        assert self.audit.exact, self.audit
        assert self.equal, self.diff
        self.events.assert_complete()
        for name, (code, took) in self.exits.items():
            assert code == 0 and took < GRACE_SECONDS, f"{name} exited {code} after {took:.1f}s"


# -- the report -----------------------------------------------------------------------------------------


@dataclass
class ReportRow:
    test: str
    fault: str
    injected: int
    articles_in: int
    stored: int
    duplicates: int
    lost: int
    recovery: str
    equal_to_embedded: str
    notes: str = ""

    def line(self) -> str:
        return (f"FAULT-SUMMARY | {self.fault} | injected={self.injected} | in={self.articles_in} | "
                f"stored={self.stored} | duplicates={self.duplicates} | lost={self.lost} | "
                f"recovery={self.recovery} | equal_to_embedded={self.equal_to_embedded} | {self.notes}")


REPORT: list[ReportRow] = []
COLUMNS = ("fault", "injected", "in", "stored", "dup", "lost", "recovery", "=embedded", "notes")


def report_table(rows: list[ReportRow]) -> list[str]:
    cells = [(r.fault, str(r.injected), str(r.articles_in), str(r.stored), str(r.duplicates), str(r.lost),
              r.recovery, r.equal_to_embedded, r.notes) for r in rows]
    widths = [max(len(c[i]) for c in [COLUMNS, *cells]) for i in range(len(COLUMNS) - 1)]
    out = []
    for row in [COLUMNS, *cells]:
        out.append(" | ".join(value.ljust(widths[i]) for i, value in enumerate(row[:-1])) + " | " + row[-1])
        if row is COLUMNS:
            out.append("-+-".join("-" * w for w in widths) + "-+-" + "-" * 5)
    return out


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


# -- the harness of one test ---------------------------------------------------------------------------


class Harness:
    def __init__(self, services: FaultServices, settings: Settings, tmp_path: Path, test_name: str) -> None:
        self.services, self.settings, self.tmp_path, self.test_name = services, settings, tmp_path, test_name
        self.env = settings_env(settings)
        self.engine: Engine = create_engine(settings.database_url, pool_pre_ping=True, pool_size=1, max_overflow=2)
        self.roles: list[Role] = []
        self.feeders: list[Feeder] = []
        self._admin: KafkaAdminClient | None = None
        self.restarts: list[str] = []  # roles that died and the supervisor started again
        self.wedges: list[str] = []  # roles found stuck (by the liveness probe or their watchdog) and started again
        self._restart_crashed = False
        self._liveness_stall: float | None = None
        self._stop_supervising = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.log_dir = tmp_path / "logs"
        self.log_dir.mkdir(exist_ok=True)

    # processes

    def start(self, kind: str, name: str | None = None, **overrides: Any) -> Role:
        env = dict(self.env)
        if self._liveness_stall and "metrics_port" not in overrides:
            overrides = {"metrics_port": free_port(), "stall_seconds": self._liveness_stall, **overrides}
        # A role wedged in kafka-python (see test_startup.py) exits by its watchdog; the supervisor starts it again.
        overrides = {"watchdog_seconds": WATCHDOG_SECONDS, **overrides}
        self._start_supervisor()
        for key, value in overrides.items():
            env[f"NEWSDEDUP_{key.upper()}"] = str(value)
        role = Role(kind, name or f"{kind}{sum(r.kind == kind for r in self.roles) + 1}", env, self.log_dir)
        self.roles.append(role)
        return role

    def crashed(self) -> list[str]:
        return [f"{r.name} (generation {r.generation}) exited {r.process.returncode}:\n{r.tail()}"
                for r in self.roles if r.crashed() and r.process is not None and r.process.returncode != EXIT_WEDGED]

    def liveness_probe(self, stall: float = 20.0) -> None:
        """Call before starting roles: each gets a metrics port and stall_seconds=``stall``, and a role whose
        /healthz answers 503 (its loop stuck for ``stall`` seconds) is killed and started again, as a
        Kubernetes liveness probe would. This keeps the tests of other faults from hanging on the
        kafka-python wedge (see test_startup.py); ``self.wedges`` lists every such restart."""
        self._liveness_stall = stall
        self._start_supervisor()

    def restart_wedged(self) -> None:
        """Start a role again when it exits by its watchdog (code 70), as compose's restart policy would; a
        role that dies otherwise stays dead (the test sees it)."""
        self._start_supervisor()

    def supervise(self) -> None:
        """Restart roles that die on their own, as systemd or Kubernetes would; ``self.restarts`` lists them."""
        self._restart_crashed = True
        self._start_supervisor()

    def _start_supervisor(self) -> None:
        if self._supervisor is not None and self._supervisor.is_alive():
            return

        def loop() -> None:
            while not self._stop_supervising.wait(0.5):
                for role in list(self.roles):
                    with role.lock:
                        if role.crashed() and role.process is not None and role.process.returncode == EXIT_WEDGED:
                            self.wedges.append(f"{role.name} (generation {role.generation}, by its watchdog)")
                            role.start()
                            continue
                        if self._restart_crashed and role.crashed() and role.process is not None:
                            self.restarts.append(f"{role.name} exited {role.process.returncode}: "
                                                 f"{role.tail(1).strip()[:200]}")
                            role.start()
                            continue
                    if self._liveness_stall and role.wedged(self._liveness_stall):
                        with role.lock:
                            if role.alive:
                                self.wedges.append(f"{role.name} (generation {role.generation})")
                                role.kill9()
                                role.start()

        self._stop_supervising.clear()
        self._supervisor = threading.Thread(target=loop, daemon=True, name="supervisor")
        self._supervisor.start()

    def stop_supervising(self) -> None:
        self._stop_supervising.set()
        if self._supervisor is not None:
            self._supervisor.join(10)

    def wedge_note(self) -> str:
        return f"; WEDGED and restarted: {', '.join(self.wedges)}" if self.wedges else ""

    def assert_alive(self) -> None:
        problems = self.crashed()
        assert not problems, "a role died on its own:\n" + "\n".join(problems)

    def finish(self, feeder: Feeder, lines: list[bytes], baseline: dict[str, dict], check_alive: bool = True) -> RunEnd:
        """End a streamed run: wait for the feed and the stored articles, stop every role, audit, compare."""
        feeder.done()
        reached = self.wait_stored(len(lines))
        if check_alive:
            self.assert_alive()
        exits = self.stop_all()
        return RunEnd(len(lines), reached, self.audit(ids_of(lines)), compare_exports(self.export(), baseline), exits,
                      self.audit_events())

    def audit_events(self) -> EventAudit:
        """Every stored event in stories.events (README, "stories.events"): see tests/integration/events_support."""
        topic = self.read_topic(self.settings.topic_story_events)
        return audit_events(stored_events(self.settings.database_url), topic)

    def events_note(self, events: EventAudit) -> str:
        return f"; events: {events.stored} stored, {events.messages} published ({events.duplicates} replayed)"

    def stop_all(self, timeout: float = GRACE_SECONDS) -> dict[str, tuple[int | None, float]]:
        """SIGTERM every running role (the supervisor stops first); their exit codes and times."""
        self.stop_supervising()
        return {role.name: role.terminate(timeout) for role in self.roles if role.alive}

    def close(self) -> None:
        self.stop_supervising()
        for role in self.roles:
            if role.alive and role.process is not None:
                role.process.kill()
                role.process.wait(timeout=30)
        for feeder in self.feeders:
            feeder.join(5)
        if self._admin is not None:
            self._admin.close()
        self.engine.dispose()

    # Kafka

    def ensure_topics(self, **topic_configs: dict[str, str]) -> None:
        """Create the service's topics (as the roles would); ``topic_configs`` by topic name."""
        from kafka.admin import NewTopic

        from consumers.kafka_io import ensure_topics

        if topic_configs:
            admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
            try:
                partitions = {self.settings.topic_raw: self.settings.raw_partitions,
                              self.settings.topic_dead_letters: 1}
                admin.create_topics([NewTopic(name, partitions.get(name, 1), 1, topic_configs=config)
                                     for name, config in topic_configs.items()])
            finally:
                admin.close()
        ensure_topics(self.settings)

    def feed(self, lines: list[bytes], rate: float | None = None, hold_at: int | None = None) -> Feeder:
        feeder = Feeder(self.settings, lines, rate, hold_at)
        self.feeders.append(feeder)
        feeder.start()
        return feeder

    def end_offsets(self, topic: str) -> dict[int, int]:
        consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        try:
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
        finally:
            consumer.close()

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        """The offsets the group committed to Kafka."""
        if self._admin is None:
            self._admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        offsets = self._admin.list_group_offsets(group).get(group, {})
        return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}

    def group_state(self, group: str) -> tuple[str, int]:
        """(state, number of members) of a consumer group."""
        if self._admin is None:
            self._admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        described = self._admin.describe_groups([group]).get(group, {})
        return str(described.get("group_state", described.get("state"))), len(described.get("members") or [])

    def read_topic(self, topic: str, timeout: float = 60) -> list[Any]:
        """Every record of a topic, from the beginning to the end offsets of now."""
        return read_topic(self.settings.kafka_bootstrap_servers, topic, timeout)

    # the database

    def query(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def as_owner(self, sql: str) -> None:
        """Run a statement as the schema's owner (the app role may not change the schema)."""
        owner = create_engine(self.services.owner_url)
        try:
            with owner.begin() as conn:
                conn.execute(text(sql))
        finally:
            owner.dispose()

    def stored_count(self) -> int | None:
        try:
            return self.query("SELECT count(*) FROM articles")[0][0]
        except SQLAlchemyError:
            return None

    def wait_stored(self, expected: int, timeout: float = 240, stall: float = 25,
                    feeding: Callable[[], bool] | None = None, stop_on_crash: bool = False) -> int:
        """Wait until ``expected`` articles are stored, or nothing moved for ``stall`` seconds after
        the feed ended, or ``timeout`` (or, with ``stop_on_crash``, a role died); returns the count reached."""
        deadline = time.monotonic() + timeout
        last, moved = -1, time.monotonic()
        while True:
            count = self.stored_count()
            if count is not None and count >= expected:
                return count
            if stop_on_crash and self.crashed():
                time.sleep(1)
                return self.stored_count() or 0
            if count != last:
                last, moved = count if count is not None else last, time.monotonic()
            busy = feeding() if feeding else any(f.is_alive() for f in self.feeders)
            if time.monotonic() > deadline or (not busy and time.monotonic() - moved > stall):
                return count or 0
            time.sleep(0.25)

    def first_stored_after(self, moment: datetime, partitions: list[int] | None = None,
                           produced_after: bool = False) -> datetime | None:
        """The earliest stored_at after ``moment`` (of raw partitions, of records produced after it)."""
        sql = "SELECT min(stored_at) FROM articles WHERE stored_at > :t"
        if partitions:
            sql += " AND source_partition IN (" + ",".join(str(int(p)) for p in partitions) + ")"
        if produced_after:
            sql += " AND source_timestamp > :t"
        value = self.query(sql, t=moment)[0][0]
        return value.astimezone(UTC) if value is not None else None

    def audit(self, expected_ids: Iterable[str]) -> Audit:
        expected = set(expected_ids)
        per_id = dict(self.query("SELECT input_id, count(*) FROM articles GROUP BY input_id"))
        rows = sum(per_id.values())
        stored = set(per_id)
        bad_events = self.query(
            "SELECT count(*) FROM articles a LEFT JOIN (SELECT article_id, count(*) AS n FROM story_events "
            "WHERE kind IN ('founded', 'joined') GROUP BY article_id) e ON e.article_id = a.id "
            "WHERE e.n IS NULL OR e.n <> 1")[0][0]
        return Audit(expected=len(expected), stored=len(stored & expected), rows=rows,
                     duplicates=sum(n - 1 for n in per_id.values() if n > 1), lost=len(expected - stored),
                     unexpected=len(stored - expected), event_problems=bad_events)

    def export(self) -> dict[str, dict]:
        path = self.tmp_path / "kafka-export.jsonl"
        run_cli(["export", "--output", str(path)], self.env)
        return read_export(path)

    def stored_offset(self) -> dict[int, int]:
        return dict(self.query(
            "SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = :g AND topic = :t",
            g=self.settings.match_group, t=self.settings.topic_fingerprinted))

    # the report

    def report(self, fault: str, injected: int, articles_in: int, audit: Audit | None, recovery: str,
               equal: bool | None, notes: str = "", stored: int | None = None, lost: int | None = None) -> ReportRow:
        row = ReportRow(
            test=self.test_name, fault=fault, injected=injected, articles_in=articles_in,
            stored=stored if stored is not None else (audit.stored if audit else 0),
            duplicates=audit.duplicates if audit else 0,
            lost=lost if lost is not None else (audit.lost if audit else 0),
            recovery=recovery, equal_to_embedded="-" if equal is None else ("yes" if equal else "NO"), notes=notes)
        REPORT.append(row)
        print(row.line())
        return row


def poll_until(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def pairs(values: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
    return itertools.pairwise(values)
