"""Fixtures and hooks of the fault-injection suite.

The suite runs its OWN Kafka and PostgreSQL (scripts/services.sh with NEWSDEDUP_RUN_DIR and
ports of its own, see support.INSTANCE_ENV), because it stops, restarts and kills them; the
default instance on 19092/15432 belongs to whoever else is working. An instance this session
started is stopped and its data deleted at the end (NEWSDEDUP_TEST_FAULTS_KEEP_SERVICES=1 keeps it);
one that was running already is left running. NEWSDEDUP_TEST_FAULTS_RUN_DIR and
NEWSDEDUP_TEST_FAULTS_{KAFKA,KAFKA_CONTROLLER,PG}_PORT move it (defaults /tmp/newsdedup-faults,
29092, 29093, 25432).

Slow variants (marked ``slow``) run only when asked for: ``-m "faults and slow"`` (or any -m
expression naming ``slow``), or NEWSDEDUP_TEST_FAULTS_SLOW=1. ``pytest -m faults`` and CI's plain
``pytest`` run the short variants.

Every test adds a row to a summary table printed at the end of the session (and written as JSON
lines to $NEWSDEDUP_TEST_FAULTS_REPORT when set).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from consumers.settings import load_settings
from consumers.storage import schema
from consumers.storage.database import make_engine
from tests.faults.support import REPORT, FaultServices, Harness, report_table, write_lines
from tests.integration.conftest import read_export, run_cli

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    markexpr = config.getoption("markexpr", "") or ""
    if "slow" in markexpr or os.environ.get("NEWSDEDUP_TEST_FAULTS_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow fault variant: run with -m 'faults and slow' "
                                   "(or NEWSDEDUP_TEST_FAULTS_SLOW=1)")
    for item in items:
        if item.get_closest_marker("slow") and Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT:
        return
    terminalreporter.write_sep("=", "fault-injection summary")
    for line in report_table(REPORT):
        terminalreporter.write_line(line)
    target = os.environ.get("NEWSDEDUP_TEST_FAULTS_REPORT")
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            for row in REPORT:
                out.write(json.dumps(asdict(row)) + "\n")


@pytest.fixture(scope="session")
def fault_services() -> Iterator[FaultServices]:
    services = FaultServices()
    already_running = services.running()
    services.up()
    yield services
    if not already_running and os.environ.get("NEWSDEDUP_TEST_FAULTS_KEEP_SERVICES") != "1":
        services.script("down", "--purge", timeout=120)


@pytest.fixture()
def harness(fault_services: FaultServices, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    """A freshly migrated database, topics and groups of this test's own, role processes cleaned up after."""
    if not fault_services.running():  # an earlier test may have left a service down
        fault_services.up()
    owner = create_engine(fault_services.owner_url)
    with owner.begin() as conn:
        for table in ("event_relay", "story_events", "articles", "stories", "consumer_offsets", "alembic_version"):
            conn.execute(text(f'DROP TABLE IF EXISTS "{table}" CASCADE'))
    owner.dispose()
    migrator = make_engine(fault_services.owner_url)
    schema.upgrade(migrator)
    migrator.dispose()
    tag = uuid.uuid4().hex[:8]
    settings = load_settings({}, {
        "database_url": fault_services.app_url,
        "kafka_bootstrap_servers": fault_services.bootstrap,
        "topic_raw": f"f{tag}.articles.raw",
        "topic_fingerprinted": f"f{tag}.articles.fingerprinted",
        "topic_dead_letters": f"f{tag}.articles.dlq",
        "topic_story_events": f"f{tag}.stories.events",
        "prepare_group": f"f{tag}-prepare",
        "match_group": f"f{tag}-match",
        "session_timeout_ms": 6000,
        "poll_timeout_ms": 200,
        "metrics_port": 0,
        "metrics_host": "127.0.0.1",
    })
    h = Harness(fault_services, settings, tmp_path, request.node.name)
    yield h
    h.close()


@pytest.fixture(scope="session")
def embedded_baseline(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, list[bytes]], dict[str, dict]]:
    """The export of a clean embedded run (`newsdedup run ... --export`) of an input, computed once per input."""
    cache: dict[str, dict[str, dict]] = {}

    def baseline(name: str, lines: list[bytes]) -> dict[str, dict]:
        if name not in cache:
            folder = tmp_path_factory.mktemp(f"embedded-{name}")
            source = write_lines(folder / "input.jsonl", lines)
            export = folder / "export.jsonl"
            env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}
            run_cli(["run", "--input", str(source), "--db", f"sqlite:///{folder / 'embedded.db'}",
                     "--export", str(export), "--no-progress", "--metrics-port", "0"], env, timeout=1800)
            cache[name] = read_export(export)
        return cache[name]

    return baseline
