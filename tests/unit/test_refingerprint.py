"""StoryStore.refingerprint and `newsdedup db refingerprint`: stored signatures made under an old
fingerprint identity are recomputed from the stored text, equal to what a fresh run stores (SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from consumers.cli import main
from consumers.embedded import EMBEDDED_PARTITION, build_matcher, run_embedded
from consumers.settings import Settings, load_settings
from consumers.storage.database import make_engine
from consumers.storage.models import ArticleRow
from consumers.storage.schema import upgrade
from consumers.storage.store import StoryStore

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "articles.jsonl"
OLD_IDENTITY = "mh1-affine32-xxh32-p128-s1-w4-c4"  # the identity before the shingle hashing changed
FINGERPRINT = (ArticleRow.signature, ArticleRow.shingle_hashes, ArticleRow.num_shingles,
               ArticleRow.fingerprint_identity)


@pytest.fixture
def settings() -> Settings:
    # A retention that reaches the samples' 2024 stories, so that load_into reads every row.
    return load_settings({}, overrides={"batch_max_messages": 7, "retention_days": 36500.0})


@pytest.fixture
def store(tmp_path: Path, settings: Settings) -> Iterator[StoryStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'news.db'}")
    upgrade(engine)
    with SAMPLES.open("rb") as source:
        run_embedded(source, SAMPLES.name, settings, StoryStore(engine))
    yield StoryStore(engine)
    engine.dispose()


def rows(store: StoryStore) -> dict[str, tuple]:
    with store.engine.connect() as conn:
        return {key: tuple(rest) for key, *rest in conn.execute(select(ArticleRow.id, *FINGERPRINT, ArticleRow.body,
                                                                       ArticleRow.content_hash, ArticleRow.story_id))}


def make_old(store: StoryStore, keys: list[str], **values: object) -> None:
    """What an older build stored: another identity, other signature and shingle hashes."""
    with store.engine.begin() as conn:
        conn.execute(update(ArticleRow).where(ArticleRow.id.in_(keys)).values(
            fingerprint_identity=OLD_IDENTITY, signature=b"\x01\x00\x00\x00" * 128,
            shingle_hashes=b"\x02\x00\x00\x00" * 3, num_shingles=3, **values))


def load(store: StoryStore, settings: Settings) -> int:
    matcher = build_matcher(settings)
    return store.load_into(matcher, [EMBEDDED_PARTITION], matcher.fingerprint.identity)


def test_old_rows_are_recomputed_byte_equal_to_a_fresh_run_and_a_second_run_does_nothing(
        store: StoryStore, settings: Settings) -> None:
    fresh = rows(store)
    assert len(fresh) >= 20
    old = sorted(fresh)[::2]
    make_old(store, old)
    with pytest.raises(ValueError, match=r"run `newsdedup db refingerprint` \(stop match first\)"):
        load(store, settings)

    batches: list[int] = []
    result = store.refingerprint(settings.fingerprint_config(), batch_rows=4, on_batch=batches.append)

    assert (result.updated, result.refused) == (len(old), 0)
    assert batches == [4] * (len(old) // 4) + ([len(old) % 4] if len(old) % 4 else [])  # keyset pages
    assert rows(store) == fresh  # signature and shingle_hashes byte-equal, keys and stories unchanged
    assert store.fingerprint_identities() == {settings.fingerprint_config().identity: len(fresh)}
    assert store.refingerprint(settings.fingerprint_config()).updated == 0
    assert load(store, settings) == len(fresh)
    with SAMPLES.open("rb") as source:  # the `newsdedup run` path loads the store first, then matches
        assert run_embedded(source, SAMPLES.name, settings, store).stored == 0  # all known: duplicates


def test_a_row_whose_text_no_longer_gives_its_content_hash_is_refused_and_left_untouched(
        store: StoryStore, settings: Settings) -> None:
    fresh = rows(store)
    changed, other = sorted(fresh)[:2]
    make_old(store, [changed], body=fresh[changed][4] + " An added sentence.")
    make_old(store, [other])
    before = rows(store)[changed]

    result = store.refingerprint(settings.fingerprint_config())

    assert (result.updated, result.refused, result.refused_examples) == (1, 1, (changed,))
    assert rows(store)[changed] == before
    assert rows(store)[other] == fresh[other]
    assert store.refingerprint(settings.fingerprint_config()).refused == 1  # still refused on a second run


def test_the_command_reports_and_exits_non_zero_on_refused_rows(
        store: StoryStore, capsys: pytest.CaptureFixture[str]) -> None:
    url = str(store.engine.url)
    keys = sorted(rows(store))
    make_old(store, keys[:3])
    assert main(["db", "refingerprint", "--db", url, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f": 3 updated, {len(keys) - 3} skipped (already at it), 0 refused, " in out

    make_old(store, keys[:1], body="Something else entirely.")
    assert main(["db", "refingerprint", "--db", url, "--no-progress", "--batch-rows", "2"]) == 1
    captured = capsys.readouterr()
    assert ": 0 updated, " in captured.out and ", 1 refused, " in captured.out
    assert "1 articles were left untouched" in captured.err and keys[0] in captured.err


def test_the_old_db_actions_still_parse() -> None:
    from consumers.cli import build_parser

    args = build_parser().parse_args(["db", "upgrade", "--db", "sqlite://"])
    assert (args.action, args.url) == ("upgrade", "sqlite://")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["db"])
