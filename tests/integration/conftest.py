"""Fixtures for tests against the real services: Kafka and PostgreSQL started by scripts/services.sh.

The services are started here if they are not running (``services.sh up`` is idempotent), so
``pytest tests/integration`` works on its own. Each test gets its own topics and consumer
groups, and a freshly migrated ``newsdedup_test`` database used through the least-privilege
app role.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import create_engine, text

from consumers.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
DEV_ARTICLES = SHARED / "eval" / "dev" / "articles.jsonl"


@dataclass(frozen=True)
class Services:
    env: dict[str, str]

    @property
    def bootstrap(self) -> str:
        return self.env["NEWSDEDUP_KAFKA_BOOTSTRAP_SERVERS"]

    @property
    def app_url(self) -> str:
        return self.env["NEWSDEDUP_TEST_DATABASE_URL"]

    @property
    def owner_url(self) -> str:
        return self.env["NEWSDEDUP_TEST_MIGRATION_DATABASE_URL"]


@pytest.fixture(scope="session")
def services() -> Services:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "up"], capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        pytest.fail(f"scripts/services.sh up failed:\n{result.stderr[-3000:]}")
    return Services(exported(result.stdout))


def exported(stdout: str) -> dict[str, str]:
    """The variables of the ``export NAME=value`` lines that ``services.sh up`` prints."""
    env = {}
    for line in stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def read_export(path: Path) -> dict[str, dict]:
    """A `newsdedup export` file, by article id."""
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


def stories_of(rows: dict[str, dict]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for article_id, row in rows.items():
        groups.setdefault(row["story_id"], set()).add(article_id)
    return {frozenset(group) for group in groups.values()}


def reset_database(services: Services) -> None:
    """The shared test database emptied and migrated to head."""
    owner = create_engine(services.owner_url)
    with owner.begin() as conn:
        # Drop tables, not the schema: the app role's default privileges hang on schema public.
        for table in ("event_relay", "story_events", "articles", "stories", "consumer_offsets", "alembic_version"):
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    owner.dispose()
    run_cli(["db", "upgrade", "--db", services.owner_url], env=services.env)


@pytest.fixture()
def database(services: Services) -> Iterator[str]:
    """A freshly migrated test database; yields the app role's URL."""
    reset_database(services)
    yield services.app_url


@pytest.fixture()
def settings(services: Services, database: str) -> Settings:
    """Settings with topics and groups of this test's own, so tests never see each other's data."""
    tag = uuid.uuid4().hex[:8]
    return load_settings({}, {
        "database_url": database,
        "kafka_bootstrap_servers": services.bootstrap,
        "topic_raw": f"t{tag}.articles.raw",
        "topic_fingerprinted": f"t{tag}.articles.fingerprinted",
        "topic_dead_letters": f"t{tag}.articles.dlq",
        "topic_story_events": f"t{tag}.stories.events",
        "prepare_group": f"t{tag}-prepare",
        "match_group": f"t{tag}-match",
        "session_timeout_ms": 6000,
        "poll_timeout_ms": 200,
    })


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as NEWSDEDUP_* variables, for the CLI in a subprocess."""
    from dataclasses import fields

    from consumers.settings import env_name

    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}
    env.update({env_name(f.name): str(getattr(settings, f.name)) for f in fields(settings)})
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}, **env}
    result = subprocess.run([sys.executable, "-m", "consumers.cli", *args], env=full_env, capture_output=True,
                            text=True, timeout=timeout, cwd=ROOT)
    if result.returncode != 0:
        raise AssertionError(f"newsdedup {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "consumers.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_all(processes: list[subprocess.Popen[str]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            _, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
            raise AssertionError(f"{process.args} did not finish in {timeout} s:\n{stderr[-3000:]}") from None
        assert process.returncode == 0, f"{process.args} exited {process.returncode}:\n{stderr[-3000:]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    """True while the process runs (a zombie, left unreaped where PID 1 does not reap, is gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


def read_topic(bootstrap: str, topic: str, timeout: float = 20) -> list[Any]:
    """Every message of a topic, read up to its end offsets (no consumer group)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,  # big: 20 MB dead letters
                             max_partition_fetch_bytes=64 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert partitions, f"topic {topic} does not exist"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        messages: list[Any] = []
        deadline = time.monotonic() + timeout
        while sum(ends.values()) > len(messages):
            assert time.monotonic() < deadline, f"read {len(messages)} of {sum(ends.values())} messages of {topic}"
            for records in consumer.poll(timeout_ms=500).values():
                messages.extend(records)
        return messages
    finally:
        consumer.close()
