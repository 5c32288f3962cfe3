"""`newsdedup db prune` against real PostgreSQL (and SQLite for embedded mode): nothing inside the kept window is
lost, nothing that was pruned remains, unpublished events hold their story, and the roles keep writing meanwhile."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, insert, select, text, update

from consumers.growth import export_growth
from consumers.metrics import Metrics
from consumers.settings import Settings
from consumers.storage.database import make_engine
from consumers.storage.models import ArticleRow, EventRelayRow, StoryEventRow, StoryRow
from consumers.storage.store import StoryStore
from tests.integration.conftest import DEV_ARTICLES, ROOT, Services, run_cli, settings_env, start_cli, wait_all
from tests.integration.test_pipeline import matched_records

pytestmark = pytest.mark.integration
OLD_IDENTITY = "mh1-affine32-xxh32-p128-s1-w4-c4"
# retention_days 10: prune strips stories older than 11 days, and deletes those older than 35.
PRUNE_SETTINGS = ["--retention-days", "10", "--store-retention-days", "35"]


def dev_slice(tmp_path: Path, start: int, stop: int) -> Path:
    path = tmp_path / f"articles-{start}-{stop}.jsonl"
    path.write_bytes(b"".join(DEV_ARTICLES.read_bytes().splitlines(keepends=True)[start:stop]))
    return path


def rows(engine: Engine, table: type, *where) -> dict:  # type: ignore[no-untyped-def]
    key = table.id
    with engine.connect() as conn:
        return {row[0]: tuple(row) for row in conn.execute(select(*table.__table__.columns).where(*where)
                                                           .order_by(key))}


def age_stories(engine: Engine, now: datetime) -> dict[str, set[str]]:
    """Make the stored stories old: every third deletable (40 days), every third strippable (20 days), the rest
    fresh; a story merged into another takes the other's age. One old story gets an unpublished event."""
    with engine.begin() as conn:
        live = sorted(conn.execute(select(StoryRow.id).where(StoryRow.merged_into.is_(None))).scalars())
        groups = {"old": set(live[0::3]), "strip": set(live[1::3]), "fresh": set(live[2::3])}
        ages = {"old": timedelta(days=40), "strip": timedelta(days=20), "fresh": timedelta(0)}
        for group, ids in groups.items():
            conn.execute(update(StoryRow).where(StoryRow.id.in_(ids)).values(updated_at=now - ages[group]))
        for merged, target in conn.execute(select(StoryRow.id, StoryRow.merged_into)
                                           .where(StoryRow.merged_into.is_not(None))).all():
            group = next(name for name, ids in groups.items() if target in ids)
            groups[group].add(merged)
            conn.execute(update(StoryRow).where(StoryRow.id == merged).values(updated_at=now - ages[group]))
        # Everything stored so far is published; then one old story gets an event the relay has not sent.
        conn.execute(update(EventRelayRow).values(published_id=select(func.max(StoryEventRow.id)).scalar_subquery()))
        held = sorted(groups["old"] - set(conn.execute(select(StoryRow.id).where(
            StoryRow.merged_into.is_not(None))).scalars()))[0]
        conn.execute(insert(StoryEventRow).values(match_partition=0, story_id=held, kind="joined", article_id=None,
                                                  reason="unpublished", similarity=None, occurred_at=now))
    groups["held"] = {held}
    groups["old"] -= {held}
    return groups


def test_prune_deletes_past_retention_strips_past_the_window_and_keeps_the_rest(services: Services, database: str,
                                                                                tmp_path: Path) -> None:
    articles = dev_slice(tmp_path, 0, 600)
    run = ["run", "--input", str(articles), "--db", database, "--no-progress", "--retention-days", "36500"]
    run_cli(run, services.env)
    engine = create_engine(database)
    groups = age_stories(engine, datetime.now(UTC))
    kept_stories = groups["strip"] | groups["fresh"] | groups["held"]
    before = {
        "stories": rows(engine, StoryRow, StoryRow.id.in_(kept_stories)),
        "articles": rows(engine, ArticleRow, ArticleRow.story_id.in_(kept_stories)),
        "events": rows(engine, StoryEventRow, StoryEventRow.story_id.in_(kept_stories)),
    }
    old_articles = rows(engine, ArticleRow, ArticleRow.story_id.in_(groups["old"]))
    old_events = rows(engine, StoryEventRow, StoryEventRow.story_id.in_(groups["old"]))
    strip_articles = rows(engine, ArticleRow, ArticleRow.story_id.in_(groups["strip"]))
    assert old_articles and strip_articles and old_events

    prune = ["db", "prune", "--db", database, "--no-progress", "--batch-stories", "7", *PRUNE_SETTINGS]
    dry = run_cli([*prune, "--dry-run"], services.env).stdout
    assert (f"would delete {len(groups['old'])} stories, {len(old_articles)} articles, {len(old_events)} events"
            in dry), dry
    assert f"would drop the verification data of {len(strip_articles)} articles" in dry, dry
    assert "1 stories held for unpublished events" in dry
    assert rows(engine, ArticleRow, ArticleRow.story_id.in_(groups["old"])) == old_articles  # dry: nothing changed

    done = run_cli(prune, services.env).stdout
    assert f"deleted {len(groups['old'])} stories, {len(old_articles)} articles, {len(old_events)} events" in done
    # None of what was pruned remains.
    assert not rows(engine, StoryRow, StoryRow.id.in_(groups["old"]))
    assert not rows(engine, ArticleRow, ArticleRow.story_id.in_(groups["old"]))
    assert not rows(engine, StoryEventRow, StoryEventRow.story_id.in_(groups["old"]))
    # Nothing inside the kept window is lost; past the matcher's window only the verification data went.
    stripped_at = [c.name for c in StoryRow.__table__.columns].index("stripped_at")
    after = rows(engine, StoryRow, StoryRow.id.in_(kept_stories))
    assert {k: v[:stripped_at] + v[stripped_at + 1:] for k, v in after.items()} == \
           {k: v[:stripped_at] + v[stripped_at + 1:] for k, v in before["stories"].items()}
    assert {k for k, v in after.items() if v[stripped_at] is not None} == groups["strip"]  # done: not read again
    assert rows(engine, StoryEventRow, StoryEventRow.story_id.in_(kept_stories)) == before["events"]
    columns = [c.name for c in ArticleRow.__table__.columns]
    verification = {columns.index("signature"), columns.index("shingle_hashes")}
    for key, row in rows(engine, ArticleRow, ArticleRow.story_id.in_(kept_stories)).items():
        old = before["articles"][key]
        if key in strip_articles:
            assert [row[i] for i in sorted(verification)] == [None, None]
            assert [v for i, v in enumerate(row) if i not in verification] == \
                   [v for i, v in enumerate(old) if i not in verification]
        else:
            assert row == old
    assert len(rows(engine, ArticleRow, ArticleRow.story_id.in_(kept_stories))) == len(before["articles"])
    growth = StoryStore(make_engine(database)).growth()
    with engine.connect() as conn:
        oldest = conn.execute(select(func.min(ArticleRow.stored_at))).scalar_one()
    assert growth.database_bytes > 10**6 and set(growth.rows) == {"stories", "articles", "story_events"}
    assert growth.oldest_article_stored_at is not None
    assert abs(growth.oldest_article_stored_at - oldest) < timedelta(seconds=5)
    # Resumable and idempotent: a second run finds nothing more.
    again = run_cli(prune, services.env).stdout
    assert "deleted 0 stories, 0 articles, 0 events" in again and "verification data of 0 articles" in again

    # A matcher rebuilt over the stripped stories (a window made longer) still runs, and stores nothing twice.
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(ArticleRow)).scalar_one()
    run_cli(["run", "--input", str(dev_slice(tmp_path, 0, 600)), "--db", database, "--no-progress",
             "--retention-days", "36500"], services.env)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ArticleRow).where(
            ArticleRow.story_id.in_(kept_stories))).scalar_one() == len(before["articles"])
        assert conn.execute(select(func.count()).select_from(ArticleRow)).scalar_one() >= stored
    # refingerprint leaves stripped rows without verification data, under the new identity.
    stripped = sorted(strip_articles)[:5]
    with engine.begin() as conn:
        conn.execute(update(ArticleRow).where(ArticleRow.id.in_(stripped)).values(fingerprint_identity=OLD_IDENTITY))
    out = run_cli(["db", "refingerprint", "--db", database, "--no-progress"], services.env).stdout
    assert f": {len(stripped)} updated, " in out
    with engine.connect() as conn:
        assert conn.execute(select(ArticleRow.signature, ArticleRow.shingle_hashes, ArticleRow.fingerprint_identity)
                            .where(ArticleRow.id.in_(stripped))).all() == \
               [(None, None, "mh1-affine32-unitmix2-p128-s1-w4-c4")] * len(stripped)
    engine.dispose()


def test_prune_refuses_a_retention_inside_the_matchers_window(services: Services, database: str) -> None:
    with pytest.raises(AssertionError, match=r"must be 0 \(keep everything\) or at least retention_days"):
        run_cli(["db", "prune", "--db", database, "--retention-days", "30", "--store-retention-days", "30.5"],
                services.env)


def test_prune_on_sqlite_for_embedded_mode(services: Services, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    run_cli(["run", "--input", str(dev_slice(tmp_path, 0, 300)), "--db", url, "--no-progress"], services.env)
    engine = create_engine(url)
    groups = age_stories(engine, datetime.now(UTC))
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(StoryRow)).scalar_one()
    out = run_cli(["db", "prune", "--db", url, "--no-progress", "--no-relay", *PRUNE_SETTINGS], services.env).stdout
    # Without a relay the unpublished event holds nothing: the held story goes with the old ones.
    gone = groups["old"] | groups["held"]
    assert f"deleted {len(gone)} stories" in out and "0 stories held" in out, out
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(StoryRow)).scalar_one() == total - len(gone)
        assert not conn.execute(select(ArticleRow.id).where(ArticleRow.story_id.in_(gone))).all()
        assert conn.execute(select(func.count()).select_from(ArticleRow).where(
            ArticleRow.story_id.in_(groups["strip"]), ArticleRow.signature.is_not(None))).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(ArticleRow).where(
            ArticleRow.story_id.in_(groups["fresh"]), ArticleRow.signature.is_(None))).scalar_one() == 0
        articles = conn.execute(select(func.count()).select_from(ArticleRow)).scalar_one()
        oldest = conn.execute(select(func.min(ArticleRow.stored_at))).scalar_one()
    engine.dispose()
    # The growth metrics read the same from SQLite (exact counts there), at most once a minute per process.
    store = StoryStore(make_engine(url))
    metrics = Metrics("match")
    assert export_growth(store, metrics, 10**12) and not export_growth(store, metrics, 10**12)
    growth = store.growth()
    assert growth.rows["articles"] == articles and growth.database_bytes > 0
    assert growth.oldest_article_stored_at is not None
    assert abs(growth.oldest_article_stored_at - oldest) < timedelta(seconds=5)
    assert metrics.database_rows.labels(role="match", table="articles")._value.get() == articles


def test_prune_runs_while_the_roles_write(settings: Settings, services: Services, tmp_path: Path) -> None:
    """Old stories of an earlier run are pruned in small batches, again and again, while prepare and match
    store 1,500 new articles into the same tables: every new article is stored, the roles exit cleanly."""
    run_cli(["run", "--input", str(dev_slice(tmp_path, 0, 1000)), "--db", settings.database_url, "--no-progress"],
            services.env)
    engine = create_engine(settings.database_url)
    with engine.begin() as conn:  # everything of the earlier run is old and published
        conn.execute(update(StoryRow).values(updated_at=datetime.now(UTC) - timedelta(days=60)))
        conn.execute(update(EventRelayRow).values(published_id=select(func.max(StoryEventRow.id)).scalar_subquery()))
        old = conn.execute(select(func.count()).select_from(StoryRow)).scalar_one()
    env = settings_env(settings)
    run_cli(["topics"], env)
    new = dev_slice(tmp_path, 1000, 2500)
    sent = run_cli(["ingest", str(new), "--no-progress"], env)
    assert sent.returncode == 0
    roles = [start_cli(["prepare"], env), start_cli(["match"], env)]
    prune_env = {**env, "NEWSDEDUP_STORE_RETENTION_DAYS": "35", "NEWSDEDUP_RETENTION_DAYS": "30"}
    prunes = 0
    try:
        deadline = time.monotonic() + 600
        while matched_records(engine, settings) < 1500:
            for role in roles:
                assert role.poll() is None, f"{role.args} exited early:\n{role.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, f"only {matched_records(engine, settings)} of 1500 matched"
            result = subprocess.run([sys.executable, "-m", "consumers.cli", "db", "prune", "--no-progress",
                                     "--batch-stories", "20"], env=prune_env, capture_output=True, text=True,
                                    cwd=ROOT, timeout=120)
            assert result.returncode == 0, result.stderr[-3000:]
            prunes += 1
    finally:
        for role in roles:
            if role.poll() is None:
                role.send_signal(signal.SIGTERM)
    wait_all(roles, timeout=60)
    assert prunes >= 1
    run_cli(["db", "prune", "--no-progress"], prune_env)
    with engine.connect() as conn:
        # None of the old stories remains; every new article is stored (each dev article is distinct).
        assert conn.execute(text("SELECT count(*) FROM stories WHERE updated_at < now() - interval '50 days'")
                            ).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(ArticleRow).where(
            ArticleRow.source_topic == settings.topic_raw)).scalar_one() == 1500
        assert old > 0
    engine.dispose()
