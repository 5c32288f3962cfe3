"""How verification data is stored (consumers/storage/codec.py, migration 0005), on SQLite: compact rows
rebuild the same matcher, 0005 converts older rows both ways, and a row storing fewer band values than a
matcher needs has them recomputed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from sqlalchemy import Engine, select, update

from consumers.matcher import Matcher
from consumers.prepare import Lineage, PreparedArticle
from consumers.stages.fingerprint import FingerprintConfig
from consumers.stages.match import MatchConfig
from consumers.storage import schema
from consumers.storage.codec import decode_shingle_hashes
from consumers.storage.database import make_engine
from consumers.storage.models import ArticleRow
from consumers.storage.store import StoryStore
from tests.unit.invented_news import DEPOT, FERRY, TURTLES, body

NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'news.db'}")
    schema.upgrade(engine)
    yield engine
    engine.dispose()


def matcher(match: MatchConfig | None = None) -> Matcher:
    return Matcher(FingerprintConfig(), match or MatchConfig(), retention=timedelta(days=30), clock=lambda: NOW)


def store_articles(engine: Engine, prepared: list[PreparedArticle], match: MatchConfig | None = None) -> None:
    writer = matcher(match)
    for offset, article in enumerate(prepared):
        writer.process(article, Lineage("t", 0, offset))
    StoryStore(engine).write_batch(writer.take_changes(), writer, [], 0)


def stored(engine: Engine) -> dict[str, tuple[bytes, bytes]]:
    with engine.connect() as conn:
        return {key: (signature, hashes) for key, signature, hashes in conn.execute(
            select(ArticleRow.id, ArticleRow.signature, ArticleRow.shingle_hashes))}


def migrate(engine: Engine, downgrade_to: str | None = None) -> None:
    config = schema._config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        if downgrade_to is None:
            command.upgrade(config, "head")
        else:
            command.downgrade(config, downgrade_to)


@pytest.fixture
def news(make_prepared: Callable[..., PreparedArticle]) -> list[PreparedArticle]:
    return [make_prepared("ferry", body(FERRY)), make_prepared("ferry-copy", body(FERRY[:-1])),
            make_prepared("depot", body(DEPOT)), make_prepared("turtles", body(TURTLES))]


def test_rows_hold_the_band_values_and_the_exact_shingle_set(engine: Engine, news: list[PreparedArticle]) -> None:
    store_articles(engine, news)
    rows = stored(engine)
    for article in news:
        signature, hashes = rows[article.key]
        assert signature == article.signature[:23].astype("<u4").tobytes()  # 23 bands of 1 row by default
        assert np.array_equal(decode_shingle_hashes(hashes), article.shingle_hashes)
        assert len(hashes) < 4 * len(article.shingle_hashes)


def test_0005_converts_older_rows_and_back(engine: Engine, news: list[PreparedArticle]) -> None:
    store_articles(engine, news)
    compact = stored(engine)
    migrate(engine, downgrade_to="0004")
    legacy = stored(engine)
    for article in news:
        signature, hashes = legacy[article.key]
        assert signature == article.signature.astype("<u4").tobytes()  # recomputed from the hashes, whole
        assert hashes == article.shingle_hashes.astype("<u4").tobytes()
    migrate(engine)
    assert stored(engine) == compact
    with engine.connect() as conn:
        chars = dict(conn.execute(select(ArticleRow.id, ArticleRow.body_chars)).all())
    assert chars == {article.key: len(article.text) for article in news}


def test_a_rebuild_gives_the_same_candidates_from_compact_and_older_rows(
        engine: Engine, news: list[PreparedArticle]) -> None:
    store_articles(engine, news)
    compact = matcher()
    StoryStore(engine).load_into(compact, [0], compact.fingerprint.identity)
    with engine.begin() as conn:  # as a role still on the build before 0005 writes them
        for article in news:
            conn.execute(update(ArticleRow).where(ArticleRow.id == article.key).values(
                signature=article.signature.astype("<u4").tobytes(),
                shingle_hashes=article.shingle_hashes.astype("<u4").tobytes(), body_chars=None))
    older = matcher()
    StoryStore(engine).load_into(older, [0], older.fingerprint.identity)
    for article in news:
        found = [key for key, _ in compact.index.candidates(article.signature)]
        assert found == [key for key, _ in older.index.candidates(article.signature)]
        assert article.key in found
        assert np.array_equal(compact.index.shingle_hashes(article.key), article.shingle_hashes)
        assert compact.articles[article.key].contender == older.articles[article.key].contender  # text length


def test_band_values_a_row_does_not_store_are_recomputed_from_its_shingle_hashes(
        engine: Engine, news: list[PreparedArticle]) -> None:
    store_articles(engine, news, MatchConfig(num_bands=8, rows_per_band=1))  # rows hold 8 values
    assert {len(signature) for signature, _ in stored(engine).values()} == {32}
    rebuilt = matcher()  # 23 bands
    StoryStore(engine).load_into(rebuilt, [0], rebuilt.fingerprint.identity)
    direct = matcher()
    for offset, article in enumerate(news):
        direct.process(article, Lineage("t", 0, offset))
    for article in news:
        # As sets: a rebuild inserts in publication order, the direct run in arrival order.
        assert ({key for key, _ in rebuilt.index.candidates(article.signature)}
                == {key for key, _ in direct.index.candidates(article.signature)})
