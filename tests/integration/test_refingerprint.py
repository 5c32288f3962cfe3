"""`newsdedup db refingerprint` on PostgreSQL, as the app role: old rows come out byte-equal to a fresh run."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, update

from consumers.storage.models import ArticleRow
from tests.integration.conftest import DEV_ARTICLES, Services, run_cli

pytestmark = pytest.mark.integration
OLD_IDENTITY = "mh1-affine32-xxh32-p128-s1-w4-c4"


def fingerprints(url: str) -> dict[str, tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {key: tuple(rest) for key, *rest in conn.execute(
                select(ArticleRow.id, ArticleRow.signature, ArticleRow.shingle_hashes, ArticleRow.num_shingles,
                       ArticleRow.fingerprint_identity, ArticleRow.content_hash, ArticleRow.story_id))}
    finally:
        engine.dispose()


def test_refingerprint_restores_what_a_fresh_run_stores(services: Services, database: str, tmp_path: Path) -> None:
    articles = tmp_path / "articles.jsonl"
    articles.write_bytes(b"".join(DEV_ARTICLES.read_bytes().splitlines(keepends=True)[:400]))
    # A retention that reaches the dev set's 2024 stories, so that a run loads every stored row.
    run = ["run", "--input", str(articles), "--db", database, "--no-progress", "--retention-days", "36500"]
    run_cli(run, services.env)
    fresh = fingerprints(database)
    old = sorted(fresh)[::3]
    engine = create_engine(database)  # the app role may update rows: nothing more is needed
    with engine.begin() as conn:
        conn.execute(update(ArticleRow).where(ArticleRow.id.in_(old)).values(
            fingerprint_identity=OLD_IDENTITY, signature=b"\0" * 512, shingle_hashes=None, num_shingles=0))
    engine.dispose()
    # Refused with the message, promptly: load_into used to hang on PostgreSQL when it raised mid-stream.
    with pytest.raises(AssertionError, match=r"run `newsdedup db refingerprint` \(stop match first\)"):
        run_cli(run, services.env, timeout=60)

    refingerprint = ["db", "refingerprint", "--db", database, "--no-progress", "--batch-rows", "50"]
    first = run_cli(refingerprint, services.env).stdout
    assert f": {len(old)} updated, {len(fresh) - len(old)} skipped (already at it), 0 refused, " in first
    assert fingerprints(database) == fresh
    assert ": 0 updated, " in run_cli(refingerprint, services.env).stdout
    run_cli(run, services.env)  # loads the stored rows (refused before), then finds every article stored
    assert fingerprints(database) == fresh
