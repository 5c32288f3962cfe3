"""ingest.sources: what `newsdedup ingest` and `newsdedup run` read from a file, a folder or stdin."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.contract import MISSING_FIELD, Article, parse_article
from ingest.sources import (
    NO_FALLBACKS,
    PAGE_FILE,
    PUBLISHED_AT_FROM,
    URL_FROM,
    MappedPage,
    PageFallbacks,
    Record,
    count_records,
    load_url_map,
    map_rows_without_page,
    parse_base_url,
    parse_default_published_at,
    read_source,
    source_name,
    source_size,
)
from tests.unit.invented_news import FERRY
from tests.unit.pages import page, write

PAGE = """<html><head>
<meta property="og:url" content="https://news.example/2024/07/ferry">
<meta property="article:published_time" content="2024-07-02T08:30:00Z">
<meta property="og:site_name" content="Tidewater Courier"><title>Ferry sailings halted</title>
</head><body><article><h1>Ferry sailings halted</h1>
<p>All ferry sailings between the two islands were halted on Tuesday after a storm damaged the pier.</p>
<p>The operator said repairs would take at least a week and promised refunds to travellers.</p>
</article></body></html>"""


def test_a_folder_of_json_and_html_files_becomes_articles(tmp_path: Path) -> None:
    article = {"id": "j1", "url": "https://news.example/a", "source": "news.example", "title": "A",
               "body": "Text of the story.", "published_at": "2024-07-01T10:00:00Z"}
    (tmp_path / "one.json").write_text(json.dumps(article))
    (tmp_path / "two.html").write_text(PAGE)
    (tmp_path / "notes.txt").write_text("ignored")
    records = list(read_source(str(tmp_path)))
    assert [r.label for r in records] == ["one.json", "two.html"]
    assert source_size(str(tmp_path)) == 2
    from_page = parse_article(records[1].raw or b"")
    assert from_page.url == "https://news.example/2024/07/ferry"
    assert from_page.published_at.isoformat() == "2024-07-02T08:30:00+00:00"
    assert from_page.html is not None and from_page.body is None


def test_a_page_without_a_url_is_reported_not_sent(tmp_path: Path) -> None:
    (tmp_path / "bare.html").write_text("<html><body><p>Just text.</p></body></html>")
    [record] = list(read_source(str(tmp_path)))
    assert record.raw is None
    assert record.error is not None and record.error.reason == MISSING_FIELD


def test_a_jsonl_file_yields_its_non_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "articles.jsonl"
    path.write_bytes(b'{"id": 1}\n\n{"id": 2}\r\n')
    assert [(r.label, r.raw) for r in read_source(str(path))] == [
        ("articles.jsonl:1", b'{"id": 1}'), ("articles.jsonl:3", b'{"id": 2}')]


def test_a_missing_path_says_what_to_give() -> None:
    with pytest.raises(FileNotFoundError, match=r"no such file or folder \(give a \.jsonl file"):
        list(read_source("/nonexistent/articles"))


# -- pages that name no URL or date: the operator's fallbacks -----------------------------------------

MTIME_2023 = datetime(2023, 3, 14, 9, 26, 53, tzinfo=UTC)


def article_of(record: Record) -> Article:
    assert record.raw is not None, f"{record.label} was refused: {record.error}"
    return parse_article(record.raw)


def only_record(folder: Path, fallbacks: PageFallbacks = NO_FALLBACKS) -> Record:
    [record] = list(read_source(str(folder), fallbacks))
    return record


def bare_page(folder: Path, name: str = "storm.html") -> Path:
    """A page that names neither its URL nor its date, saved an hour in 2023 (its mtime)."""
    path = write(folder, name, page(FERRY[:2]))
    os.utime(path, (MTIME_2023.timestamp(), MTIME_2023.timestamp()))
    return path


def test_pages_in_subfolders_are_labelled_and_named_by_their_path(tmp_path: Path) -> None:
    for folder in ("north", "south"):
        write(tmp_path, f"{folder}/index.html", page(FERRY, url=f"https://{folder}.example/ferry",
                                                     published="2024-07-02T09:00:00+02:00"))
    records = list(read_source(str(tmp_path)))
    assert [(r.label, r.offset, r.line) for r in records] == [("north/index.html", 0, None),
                                                              ("south/index.html", 1, None)]
    assert [article_of(r).id for r in records] == ["north/index", "south/index"]
    assert article_of(records[0]).published_at == datetime(2024, 7, 2, 7, 0, tzinfo=UTC)
    assert article_of(records[1]).metadata == {PAGE_FILE: "south/index.html"}  # no fallback was used
    assert count_records(str(tmp_path)) == 2


def test_by_default_a_page_without_a_url_is_refused_naming_the_options_that_supply_one(tmp_path: Path) -> None:
    bare_page(tmp_path)
    record = only_record(tmp_path)
    assert record.raw is None and record.error is not None
    assert record.error.reason == MISSING_FIELD
    assert record.error.detail == ("the page names no URL (og:url or canonical link); --url-map or --base-url "
                                   "can supply one")


def test_by_default_a_page_without_a_date_is_refused_naming_the_options_that_supply_one(tmp_path: Path) -> None:
    write(tmp_path, "storm.html", page(FERRY[:2], url="https://tidewater.example/ferry"))
    record = only_record(tmp_path, PageFallbacks(base_url="https://archive.example/"))
    assert record.raw is None and record.error is not None
    assert record.error.reason == MISSING_FIELD
    assert "names no publication date; --default-published-at (mtime or a time) or a published_at column in " \
           "--url-map can supply one" in record.error.detail


def test_base_url_gives_a_page_without_one_its_path_in_the_folder(tmp_path: Path) -> None:
    bare_page(tmp_path, "2024/storm night.html")
    fallbacks = PageFallbacks(base_url=parse_base_url("https://archive.example/scrapes"),
                              published_at=parse_default_published_at("2024-07-02T10:00:00+02:00"))
    article = article_of(only_record(tmp_path, fallbacks))
    assert article.url == "https://archive.example/scrapes/2024/storm%20night.html"
    assert article.source == "archive.example"  # the page names no outlet: the URL's host
    assert article.published_at == datetime(2024, 7, 2, 8, 0, tzinfo=UTC)
    assert article.metadata == {PAGE_FILE: "2024/storm night.html", URL_FROM: "base_url",
                                PUBLISHED_AT_FROM: "default_published_at"}


def test_mtime_gives_a_page_without_a_date_its_modification_time(tmp_path: Path) -> None:
    bare_page(tmp_path)
    fallbacks = PageFallbacks(base_url="https://archive.example/", published_at=parse_default_published_at("mtime"))
    article = article_of(only_record(tmp_path, fallbacks))
    assert article.published_at == MTIME_2023
    assert article.metadata[PUBLISHED_AT_FROM] == "file_mtime"


def test_a_csv_url_map_with_a_header_gives_urls_and_times_by_relative_path(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    bare_page(pages, "2024/storm.html")
    bare_page(pages, "calm.html")
    url_map = tmp_path / "map.csv"
    url_map.write_text("\ufefffile,title,url,published_at\n"  # a BOM and a column of its own, as spreadsheets save
                       "./2024/storm.html,Storm,https://tidewater.example/ferry?id=7,2024-07-02T08:30:00Z\n"
                       "calm.html,Calm,https://tidewater.example/calm,\n", encoding="utf-8")
    fallbacks = PageFallbacks(load_url_map(str(url_map)), published_at="mtime")
    storm, calm = (article_of(r) for r in read_source(str(pages), fallbacks))  # sorted: 2024/ first
    assert (storm.url, storm.published_at) == ("https://tidewater.example/ferry?id=7",
                                               datetime(2024, 7, 2, 8, 30, tzinfo=UTC))
    assert storm.metadata == {PAGE_FILE: "2024/storm.html", URL_FROM: "url_map", PUBLISHED_AT_FROM: "url_map"}
    assert (calm.url, calm.published_at) == ("https://tidewater.example/calm", MTIME_2023)  # no time in its row
    assert calm.metadata == {PAGE_FILE: "calm.html", URL_FROM: "url_map", PUBLISHED_AT_FROM: "file_mtime"}


def test_url_maps_in_jsonl_and_in_csv_without_a_header(tmp_path: Path) -> None:
    jsonl = tmp_path / "map.jsonl"
    jsonl.write_text('{"file": "a.html", "url": "https://a.example/1"}\n\n'
                     '{"file": "b\\\\c.html", "published_at": "2024-07-01T00:00:00Z", "note": 1}\n')
    csv_file = tmp_path / "map.txt"
    csv_file.write_text('a.html,https://a.example/1\n"b/c.html",,2024-07-01T00:00:00Z\n')
    expected = {"a.html": MappedPage("https://a.example/1"),
                "b/c.html": MappedPage(None, datetime(2024, 7, 1, tzinfo=UTC))}
    assert load_url_map(str(jsonl)) == expected
    assert load_url_map(str(csv_file)) == expected


def test_the_url_map_goes_before_the_base_url_and_the_default_time(tmp_path: Path) -> None:
    bare_page(tmp_path, "mapped.html")
    bare_page(tmp_path, "unmapped.html")
    url_map = tmp_path / "map.csv"
    url_map.write_text("file,url,published_at\nmapped.html,https://tidewater.example/ferry,2024-07-02T08:30:00Z\n")
    fallbacks = PageFallbacks(load_url_map(str(url_map)), "https://archive.example/", datetime(2024, 1, 1, tzinfo=UTC))
    mapped, unmapped = (article_of(r) for r in read_source(str(tmp_path), fallbacks))
    assert (mapped.url, mapped.published_at.day) == ("https://tidewater.example/ferry", 2)
    assert (unmapped.url, unmapped.published_at.day) == ("https://archive.example/unmapped.html", 1)
    assert unmapped.metadata[URL_FROM] == "base_url"


def test_what_the_page_names_wins_over_every_fallback(tmp_path: Path) -> None:
    path = write(tmp_path, "ferry.html", page(FERRY, url="https://tidewater.example/ferry",
                                              published="2024-07-02T08:30:00Z", site="Tidewater Courier"))
    os.utime(path, (MTIME_2023.timestamp(), MTIME_2023.timestamp()))
    url_map = tmp_path / "map.csv"
    url_map.write_text("ferry.html,https://elsewhere.example/x,2020-01-01T00:00:00Z\n")
    for published_at in ("mtime", datetime(2020, 1, 1, tzinfo=UTC)):
        fallbacks = PageFallbacks(load_url_map(str(url_map)), "https://archive.example/", published_at)
        article = article_of(only_record(tmp_path, fallbacks))
        assert article.url == "https://tidewater.example/ferry"
        assert article.published_at == datetime(2024, 7, 2, 8, 30, tzinfo=UTC)
        assert article.source == "Tidewater Courier"
        assert article.metadata == {PAGE_FILE: "ferry.html"}


def test_a_url_map_without_the_pages_row_says_so(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    bare_page(pages, "storm.html")
    url_map = tmp_path / "map.csv"
    url_map.write_text("pages/storm.html,https://tidewater.example/ferry\n")  # keyed from the wrong folder
    fallbacks = PageFallbacks(load_url_map(str(url_map)), published_at="mtime")
    record = only_record(pages, fallbacks)
    assert record.error is not None and record.error.reason == MISSING_FIELD
    assert "--url-map has no url for 'storm.html'; --base-url can supply one" in record.error.detail
    assert map_rows_without_page(str(pages), fallbacks.url_map) == ["pages/storm.html"]


@pytest.mark.parametrize(("text", "message"), [
    ("a.html,https://a.example/1\na.html,https://a.example/2\n", r"map.csv:2: 'a.html' is mapped twice"),
    ("a.html,/relative/path\n", r"map.csv:1: '/relative/path' is no absolute http\(s\) URL"),
    ("a.html,https://a.example/1,2024-07-01\n", r"map.csv:1: published_at '2024-07-01' is no ISO 8601 time "
                                                r"with a zone.*time has no zone"),
    ("a.html,https://a.example/1,1970-01-01T00:00:00Z\n", r"map.csv:1: published_at .* is outside 1990..2100"),
    ("\n\na.html\n", r"map.csv:3: neither a url nor a published_at for 'a.html'"),
    (",https://a.example/1\n", r"map.csv:1: no file name"),
    ("file,link\na.html,https://a.example/1\n", r"map.csv:1: the header names neither a 'url' nor a 'published_at'"),
    ("file,url\n", r"map.csv: no rows"),
])
def test_a_bad_url_map_is_refused_naming_its_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "map.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_url_map(str(tmp_path / "map.csv"))


def test_a_jsonl_url_map_must_hold_objects_of_strings(tmp_path: Path) -> None:
    (tmp_path / "map.jsonl").write_text('{"file": "a.html", "url": 7}\n')
    with pytest.raises(ValueError, match=r"map.jsonl:1: 'file', 'url' and 'published_at' must be strings"):
        load_url_map(str(tmp_path / "map.jsonl"))
    with pytest.raises(FileNotFoundError, match=r"nowhere.csv: no such file \(the --url-map\)"):
        load_url_map(str(tmp_path / "nowhere.csv"))


@pytest.mark.parametrize(("parse", "text", "message"), [
    (parse_base_url, "archive.example/pages", r"is no absolute http\(s\) URL; give one such as https://"),
    (parse_base_url, "https://archive.example/?page=", r"has a query or fragment"),
    (parse_default_published_at, "2024-07-01T10:00:00", r"time has no zone.*or give 'mtime'"),
    (parse_default_published_at, "yesterday", r"'yesterday' is no ISO 8601 time"),
])
def test_option_values_are_checked(parse: Callable[[str], object], text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(text)


def test_the_fallbacks_are_refused_for_a_jsonl_file_or_stdin(tmp_path: Path) -> None:
    (tmp_path / "articles.jsonl").write_text("{}\n")
    fallbacks = PageFallbacks(base_url="https://archive.example/")
    for path in (str(tmp_path / "articles.jsonl"), "-"):
        with pytest.raises(ValueError, match=r"--url-map, --base-url and --default-published-at are for a folder"):
            read_source(path, fallbacks)


def test_records_counts_and_names_of_each_kind_of_source(tmp_path: Path) -> None:
    path = tmp_path / "articles.jsonl"
    path.write_bytes(b'{"id": 1}\n\n{"id": 2}\n')
    assert (count_records(str(path)), count_records(str(tmp_path)), count_records("-")) == (2, 0, None)
    assert [(r.offset, r.line) for r in read_source(str(path))] == [(0, 1), (2, 3)]
    assert (source_name(str(path)), source_name(str(tmp_path)), source_name("-")) == (
        "articles.jsonl", tmp_path.name, "stdin")


def test_an_unreadable_source_is_refused_at_once_and_an_unreadable_file_in_a_folder_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "one.json").write_text("{}")
    (tmp_path / "two.json").write_text("{}")
    real_read_bytes = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.name == "one.json":
            raise PermissionError(13, "Permission denied")
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    one, two = read_source(str(tmp_path))
    assert one.raw is None and one.error is not None
    assert str(one.error) == "invalid_value: the file cannot be read (Permission denied)"
    assert two.raw == b"{}"

    def scandir(path: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(PermissionError, match=rf"^{tmp_path}: cannot be read \(Permission denied\)$"):
        read_source(str(tmp_path))
