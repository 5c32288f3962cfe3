"""ingest.sources: what `newsdedup ingest` reads from a file, a folder or stdin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.contract import MISSING_FIELD, parse_article
from ingest.sources import read_source, source_size

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
