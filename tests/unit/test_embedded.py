"""consumers.embedded: JSONL lines or a folder's files → SQLite through the same chain as the service (no Kafka)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from consumers.embedded import Rejection, RunSummary, run_embedded, run_source
from consumers.settings import Settings, load_settings
from consumers.stages.match import CANONICAL, EXACT, NEAR
from consumers.storage.database import make_engine
from consumers.storage.schema import upgrade
from consumers.storage.store import ExportRow, StoryStore
from ingest.sources import read_source, source_name
from tests.unit.invented_news import DEPOT, FERRY, T0, TURTLES, body, with_chrome
from tests.unit.pages import page, write


def line(article_id: str, text: str, *, hours: float = 0.0, source: str = "baylinewire.example") -> bytes:
    return json.dumps({
        "id": article_id,
        "url": f"https://{source}/news/{article_id}",
        "source": source,
        "title": f"Headline of {article_id}",
        "body": text,
        "published_at": (T0 + timedelta(hours=hours)).isoformat().replace("+00:00", "Z"),
        "scraped_at": (T0 + timedelta(hours=hours, minutes=5)).isoformat().replace("+00:00", "Z"),
        "lang": "en",
    }).encode("utf-8") + b"\n"


LINES = [
    line("ferry-wire", body(FERRY), hours=0),
    line("ferry-courier", with_chrome(FERRY[:3]), hours=1, source="tidewater.example"),
    b"\n",  # blank lines are not messages
    line("depot-post", body(DEPOT), hours=2, source="brennockpost.example"),
    b'{"id": "broken", "url": "https://x.example/a", \n',  # a truncated line
    line("depot-courier", with_chrome(DEPOT), hours=3, source="tidewater.example"),
    json.dumps({"id": "no-date", "url": "https://x.example/b", "source": "x.example", "body": "Text."}).encode(),
    line("turtles", body(TURTLES), hours=4, source="coastwatch.example"),
]
GOOD = {"ferry-wire", "ferry-courier", "depot-post", "depot-courier", "turtles"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoryStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'news.db'}")
    upgrade(engine)
    yield StoryStore(engine)
    engine.dispose()


@pytest.fixture
def settings() -> Settings:
    return load_settings({}, overrides={"batch_max_messages": 3})


def run(lines: list[bytes], settings: Settings, store: StoryStore, **kwargs: Any) -> RunSummary:
    return run_embedded(iter(lines), "articles.jsonl", settings, store, **kwargs)


def exported(store: StoryStore) -> dict[str, ExportRow]:
    return {row.input_id: row for row in store.export_rows()}


def test_run_stores_articles_stories_and_events(settings: Settings, store: StoryStore) -> None:
    rejections: list[Rejection] = []
    progress: list[int] = []
    summary = run(LINES, settings, store, on_reject=rejections.append, on_progress=progress.append)

    assert summary.read == 7
    assert summary.outcomes == Counter({CANONICAL: 3, NEAR: 1, EXACT: 1})
    assert summary.stored == 5
    assert summary.rejected == Counter({"malformed_json": 1, "missing_field": 1})
    assert sum(progress) == 7 and len(progress) == 3  # batches of 3, 3 and 1
    assert summary.index_size == 5
    assert store.counts() == {"articles": 5, "stories": 3, "events": 5}  # 3 founded + 2 joined


def test_malformed_lines_are_counted_and_the_lines_around_them_stored(settings: Settings, store: StoryStore) -> None:
    rejections: list[Rejection] = []
    run(LINES, settings, store, on_reject=rejections.append)
    assert [(r.line, r.reason) for r in rejections] == [(5, "malformed_json"), (7, "missing_field")]
    assert rejections[0].raw.startswith(b'{"id": "broken"')
    assert "published_at" in rejections[1].detail
    assert set(exported(store)) == GOOD


def test_export_names_each_story_and_its_canonical(settings: Settings, store: StoryStore) -> None:
    run(LINES, settings, store)
    rows = exported(store)
    assert rows["ferry-courier"].story_id == rows["ferry-wire"].story_id
    assert rows["depot-courier"].story_id == rows["depot-post"].story_id
    assert len({rows[i].story_id for i in GOOD}) == 3
    assert {i: rows[i].canonical_input_id for i in GOOD} == {
        "ferry-wire": "ferry-wire", "ferry-courier": "ferry-wire", "depot-post": "depot-post",
        "depot-courier": "depot-post", "turtles": "turtles"}
    assert {i for i in GOOD if rows[i].is_canonical} == {"ferry-wire", "depot-post", "turtles"}
    assert rows["depot-courier"].similarity == 1.0  # exact copy once the chrome is gone
    assert 0.3 < rows["ferry-courier"].similarity < 1.0
    assert list(rows) == ["ferry-wire", "ferry-courier", "depot-post", "depot-courier", "turtles"]  # input order


def test_running_the_same_lines_again_stores_nothing_new(settings: Settings, store: StoryStore) -> None:
    run(LINES, settings, store)
    before, rows_before = store.counts(), exported(store)
    again = run(LINES, settings, store)
    assert again.outcomes == Counter({"duplicate": 5})
    assert again.stored == 0
    assert again.rejected == Counter({"malformed_json": 1, "missing_field": 1})
    assert store.counts() == before
    assert exported(store) == rows_before


def test_a_later_run_joins_stories_stored_by_an_earlier_one(settings: Settings, store: StoryStore) -> None:
    run([line("ferry-wire", body(FERRY))], settings, store)
    summary = run([line("ferry-gazette", with_chrome(FERRY[:2] + FERRY[3:]), hours=6, source="gazette.example")],
                  settings, store)
    assert summary.outcomes == Counter({NEAR: 1})
    rows = exported(store)
    assert rows["ferry-gazette"].story_id == rows["ferry-wire"].story_id
    assert rows["ferry-gazette"].canonical_input_id == "ferry-wire"


def test_a_late_original_takes_over_across_runs(settings: Settings, store: StoryStore) -> None:
    run([line("ferry-courier", with_chrome(FERRY[:3]), hours=1, source="tidewater.example")], settings, store)
    run([line("ferry-wire", body(FERRY), hours=0)], settings, store)
    rows = exported(store)
    assert rows["ferry-courier"].canonical_input_id == "ferry-wire"
    assert rows["ferry-wire"].is_canonical and not rows["ferry-courier"].is_canonical
    assert rows["ferry-courier"].similarity < 1.0
    assert store.counts() == {"articles": 2, "stories": 1, "events": 3}  # founded, joined, canonical_changed


def test_stories_merged_across_batches_are_stored_merged(store: StoryStore) -> None:
    settings = load_settings({}, overrides={"batch_max_messages": 2})
    lines = [
        line("ferry-head", body(FERRY[:2]), hours=2, source="northfield.example"),
        line("ferry-tail", body(FERRY[3:]), hours=1, source="gazette.example"),
        line("ferry-full", body(FERRY), hours=0),
    ]
    run(lines, settings, store)
    rows = exported(store)
    assert len({row.story_id for row in rows.values()}) == 1
    assert {row.canonical_input_id for row in rows.values()} == {"ferry-full"}
    assert store.counts()["stories"] == 1  # the absorbed story is kept, marked merged_into
    assert store.largest_stories(5)[0][1:] == (3, ["baylinewire.example", "gazette.example", "northfield.example"])


def test_stored_signatures_from_other_settings_are_refused(settings: Settings, store: StoryStore) -> None:
    run([line("ferry-wire", body(FERRY))], settings, store)
    other = load_settings({"NEWSDEDUP_SEED": "2"})
    with pytest.raises(ValueError, match=r"stored signatures were made with 'mh1-.*-s1-.*', this build uses"):
        run([line("depot-post", body(DEPOT))], other, store)


def test_a_folder_of_pages_runs_the_same_chain_and_rejections_name_their_file(
        settings: Settings, store: StoryStore, tmp_path: Path) -> None:
    folder = tmp_path / "scrapes"
    write(folder, "a/wire.html", page(FERRY, url="https://baylinewire.example/ferry", published="2024-07-02T08:00:00Z"))
    write(folder, "b/copy.html", page(FERRY[:3], url="https://tidewater.example/ferry",
                                      published="2024-07-02T09:00:00Z"))
    write(folder, "b/no-url.html", page(DEPOT, published="2024-07-02T10:00:00Z"))
    write(folder, "c.json", line("turtles", body(TURTLES), hours=4, source="coastwatch.example").decode())
    write(folder, "d.json", '{"id": "broken", ')
    rejections: list[Rejection] = []
    progress: list[int] = []
    summary = run_source(read_source(str(folder)), source_name(str(folder)), settings, store,
                         on_reject=rejections.append, on_progress=progress.append)

    assert summary.read == 5 and progress == [3, 2]
    assert summary.outcomes == Counter({CANONICAL: 2, NEAR: 1})
    assert [(r.file, r.line, r.reason) for r in rejections] == [("b/no-url.html", None, "missing_field"),
                                                                ("d.json", None, "malformed_json")]
    assert "--url-map or --base-url can supply one" in rejections[0].detail
    assert rejections[0].raw is None and rejections[1].raw == b'{"id": "broken", '
    rows = exported(store)
    assert list(rows) == ["a/wire", "b/copy", "turtles"]  # in folder order
    assert rows["b/copy"].story_id == rows["a/wire"].story_id and rows["b/copy"].canonical_input_id == "a/wire"
    with store.engine.connect() as conn:
        lineage = conn.execute(text("SELECT input_id, source_topic, source_offset FROM articles ORDER BY 3")).all()
    assert [tuple(row) for row in lineage] == [("a/wire", "file:scrapes", 0), ("b/copy", "file:scrapes", 1),
                                               ("turtles", "file:scrapes", 3)]


def test_rejected_jsonl_lines_name_their_line_not_a_file(settings: Settings, store: StoryStore) -> None:
    rejections: list[Rejection] = []
    run(LINES, settings, store, on_reject=rejections.append)
    assert [(r.line, r.file) for r in rejections] == [(5, None), (7, None)]
