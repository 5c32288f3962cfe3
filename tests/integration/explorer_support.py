"""A database the real pipeline filled, for the explorer's tests (API here, browser tests in tests/browser).

``fill_explorer_database(services, folder)`` resets the shared test database (``alembic upgrade head`` as the
owner), sends articles through ``newsdedup ingest`` → Kafka → ``prepare`` → ``match`` in two phases, and
returns the URLs of the three database roles and the ids the tests look for:

- phase 1: the invented samples (samples/articles.jsonl, 24 articles in stories of 1 to 5), a wire story's
  two later copies (other chrome, one trimmed), two unrelated stories X and Y, and a hostile article
  (``<script>`` in title and body, an ``onerror`` image in the body);
- phase 2, once phase 1 is stored: the wire original, published before its copies (so the canonical
  changes), a copy of the hostile article (its story has 2 members), and a round-up that holds all of X
  and Y (it verifies against both stories, so they merge).

Phases, not one file: the Kafka path keeps no order across raw partitions, and the canonical change and
the merge need their articles to arrive after the others.

``start_explorer(data, folder)`` starts ``newsdedup serve`` as a subprocess on a free port over the reader
role and waits for /readyz; ``stop_explorer`` ends it. ``explorer_data`` is a module-scoped fixture doing
the fill once per test module (import it into the module: ``from tests.integration.explorer_support import
explorer_data``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from consumers.settings import Settings, load_settings
from tests.integration.conftest import (
    ROOT,
    Services,
    free_port,
    reset_database,
    run_cli,
    settings_env,
    start_cli,
    wait_all,
)
from tests.unit.explorer_articles import LOOKUP_URL, phases


@dataclass(frozen=True)
class ExplorerData:
    app_url: str  # the app role: what the pipeline wrote with
    reader_url: str  # the read-only role newsdedup_serve connects with
    owner_url: str
    story_id: str  # the wire story: 3 copies, 3 outlets, a canonical change
    wire_article_id: str  # its canonical (the original, sent last)
    copy_article_ids: tuple[str, ...]  # its two other copies, by publication
    lookup_url: str  # the URL one copy was sent with (normalises to its stored URL)
    lookup_article_id: str
    hostile_story_id: str
    hostile_article_ids: tuple[str, ...]
    merged_story_id: str  # X and Y merged: the surviving story
    merged_article_ids: tuple[str, ...]  # X, Y and the round-up that merged them
    unrelated_article_id: str  # an article of another story (a sample)
    articles: int  # stored articles in all
    settings: Settings = field(repr=False)


def pipeline_settings(services: Services) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return load_settings({}, {
        "database_url": services.app_url, "kafka_bootstrap_servers": services.bootstrap,
        "topic_raw": f"x{tag}.articles.raw", "topic_fingerprinted": f"x{tag}.articles.fingerprinted",
        "topic_dead_letters": f"x{tag}.articles.dlq", "topic_story_events": f"x{tag}.stories.events",
        "prepare_group": f"x{tag}-prepare", "match_group": f"x{tag}-match",
        "session_timeout_ms": 6000, "poll_timeout_ms": 200, "metrics_port": 0,
    })


def fill_explorer_database(services: Services, folder: Path, timeout: float = 240) -> ExplorerData:
    reset_database(services)
    settings = pipeline_settings(services)
    env = settings_env(settings)
    first, second = phases()
    files = []
    for number, batch in enumerate((first, second), 1):
        path = folder / f"explorer-phase-{number}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in batch))
        files.append(path)
    engine = create_engine(settings.database_url)
    # One after the other: started together, kafka-python's second join at start (a revoke ~0.1 s after the first
    # assignment) was seen never to complete, for minutes (CI of 17f7496; the note of issue 15).
    match = start_cli(["match"], env)
    time.sleep(3)
    roles = [start_cli(["prepare"], env), match]
    deadline = time.monotonic() + timeout
    try:
        expected = 0
        for path, batch in zip(files, (first, second), strict=True):
            run_cli(["ingest", str(path), "--no-progress"], env)
            expected += len(batch)
            while _matched(engine, settings) < expected:
                for role in roles:
                    assert role.poll() is None, f"{role.args} exited early:\n{role.communicate()[1][-3000:]}"
                assert time.monotonic() < deadline, f"only {_matched(engine, settings)} of {expected} matched"
                time.sleep(0.3)
    except AssertionError as failure:  # with what the roles said, or a slow fill says nothing of why
        for role in roles:
            if role.poll() is None:
                role.send_signal(signal.SIGTERM)
        said = "\n".join(f"{role.args[-1]}:\n{role.communicate(timeout=60)[1][-2000:]}" for role in roles)
        raise AssertionError(f"{failure}\n{said}") from None
    for role in roles:
        role.send_signal(signal.SIGTERM)
    wait_all(roles, timeout=60)
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT input_id, id FROM articles")).all())
        story_of = dict(conn.execute(text("SELECT id, story_id FROM articles")).all())
        count = conn.execute(text("SELECT count(*) FROM articles")).scalar_one()
    engine.dispose()
    assert count == len(first) + len(second), f"{count} articles stored of {len(first) + len(second)} sent"
    reader = services.env["NEWSDEDUP_TEST_READER_DATABASE_URL"]
    return ExplorerData(
        app_url=settings.database_url, reader_url=reader, owner_url=services.owner_url,
        story_id=story_of[ids["wire-1"]], wire_article_id=ids["wire-1"],
        copy_article_ids=(ids["copy-1"], ids["copy-2"]), lookup_url=LOOKUP_URL, lookup_article_id=ids["copy-1"],
        hostile_story_id=story_of[ids["hostile-1"]], hostile_article_ids=(ids["hostile-1"], ids["hostile-2"]),
        merged_story_id=story_of[ids["roundup-1"]],
        merged_article_ids=(ids["x-1"], ids["y-1"], ids["roundup-1"]),
        unrelated_article_id=ids[first[0]["id"]], articles=count, settings=settings)


def _matched(engine, settings: Settings) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets "
                                     "WHERE consumer_group = :group"), {"group": settings.match_group}).scalar_one())


@dataclass
class Explorer:
    process: subprocess.Popen[str]
    base_url: str
    log: Path


def start_explorer(database_url: str, folder: Path, token: str = "", timeout: float = 30,
                   extra_env: dict[str, str] | None = None) -> Explorer:
    """``newsdedup serve`` as a subprocess on a free port of 127.0.0.1, once /readyz answers 200."""
    port = free_port()
    env = {key: value for key, value in settings_env(load_settings({})).items()}
    env.update({"NEWSDEDUP_EXPLORER_DATABASE_URL": database_url, "NEWSDEDUP_EXPLORER_PORT": str(port),
                "NEWSDEDUP_EXPLORER_HOST": "127.0.0.1", "NEWSDEDUP_EXPLORER_TOKEN": token,
                "NEWSDEDUP_METRICS_PORT": "0", **(extra_env or {})})
    log = folder / f"explorer-{port}.log"
    with log.open("w") as stream:
        process = subprocess.Popen([sys.executable, "-m", "consumers.cli", "serve"], env=env, cwd=ROOT,
                                   stdout=stream, stderr=subprocess.STDOUT, text=True)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"newsdedup serve exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return Explorer(process, base_url, log)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"newsdedup serve not ready in {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_explorer(explorer: Explorer, timeout: float = 15) -> int:
    """SIGTERM, then the exit code (uvicorn stops gracefully: 0)."""
    if explorer.process.poll() is None:
        explorer.process.send_signal(signal.SIGTERM)
    try:
        return explorer.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        explorer.process.kill()
        raise AssertionError(f"newsdedup serve did not stop in {timeout} s") from None


@pytest.fixture(scope="module")
def explorer_data(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExplorerData]:
    yield fill_explorer_database(services, tmp_path_factory.mktemp("explorer"))
