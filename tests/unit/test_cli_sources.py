"""`newsdedup run` and `newsdedup ingest` on each kind of source, through consumers.cli.main (no Kafka)."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consumers.cli import main
from tests.unit.invented_news import DEPOT, FERRY, TURTLES, body
from tests.unit.pages import page, write
from tests.unit.test_embedded import line

SAVED_2023 = datetime(2023, 3, 14, 9, 0, tzinfo=UTC).timestamp()


@pytest.fixture(autouse=True)
def quiet_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """main() sets the process's logging and collector thresholds: put them back after each test."""
    for name in list(os.environ):
        if name.startswith("NEWSDEDUP_"):
            monkeypatch.delenv(name)
    handlers, level, threshold = logging.getLogger().handlers[:], logging.getLogger().level, gc.get_threshold()
    yield
    logging.getLogger().handlers[:] = handlers
    logging.getLogger().setLevel(level)
    gc.set_threshold(*threshold)


def run_cli(tmp_path: Path, *args: str) -> int:
    return main(["run", "--db", f"sqlite:///{tmp_path / 'news.db'}", "--metrics-port", "0", "--no-progress", *args])


def command_line(command: str, tmp_path: Path, path: str, *options: str) -> list[str]:
    """run or ingest on a path; run into a database in tmp_path (it must not be made)."""
    if command == "run":
        return ["run", "--db", f"sqlite:///{tmp_path / 'news.db'}", "--input", path, *options]
    return ["ingest", path, *options]


def exported(path: Path) -> dict[str, dict[str, object]]:
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


@pytest.fixture
def scrapes(tmp_path: Path) -> Path:
    """Three saved pages of two stories: one names its URL and date, two (a copy, another story) name neither."""
    folder = tmp_path / "scrapes"
    write(folder, "wire/ferry.html", page(FERRY, url="https://baylinewire.example/ferry",
                                          published="2024-07-02T08:00:00Z", site="Bayline Wire"))
    for name, paragraphs in (("courier/ferry.html", FERRY[:3]), ("courier/depot.html", DEPOT)):
        os.utime(write(folder, name, page(paragraphs)), (SAVED_2023, SAVED_2023))
    return folder


def test_run_on_a_folder_without_options_refuses_pages_naming_the_options(
        tmp_path: Path, scrapes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = tmp_path / "dead.jsonl"
    assert run_cli(tmp_path, "--input", str(scrapes), "--export", str(tmp_path / "out.jsonl"),
                   "--dead-letters", str(dead)) == 0
    out = capsys.readouterr().out
    assert "read 3 articles" in out and "rejected:          2 (missing_field 2)" in out
    assert ("  courier/depot.html: missing_field: the page names no URL (og:url or canonical link); --url-map or "
            "--base-url can supply one") in out
    assert list(exported(tmp_path / "out.jsonl")) == ["wire/ferry"]
    letters = [json.loads(row) for row in dead.read_text().splitlines()]
    assert [(letter["file"], letter["reason"], letter["raw"]) for letter in letters] == [
        ("courier/depot.html", "missing_field", None), ("courier/ferry.html", "missing_field", None)]


def test_run_on_a_folder_with_base_url_and_mtime_stores_every_page(tmp_path: Path, scrapes: Path) -> None:
    assert run_cli(tmp_path, "--input", str(scrapes), "--export", str(tmp_path / "out.jsonl"),
                   "--base-url", "https://archive.example/", "--default-published-at", "mtime") == 0
    rows = exported(tmp_path / "out.jsonl")
    assert set(rows) == {"wire/ferry", "courier/ferry", "courier/depot"}
    assert rows["courier/ferry"]["story_id"] == rows["wire/ferry"]["story_id"]
    # the copy was saved in 2023, before the wire's own date: the fallback date makes it the canonical
    assert rows["wire/ferry"]["canonical_id"] == "courier/ferry"
    assert rows["courier/depot"]["is_canonical"] is True


def test_run_on_a_folder_with_a_url_map(tmp_path: Path, scrapes: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url_map = tmp_path / "urls.jsonl"
    url_map.write_text(json.dumps({"file": "courier/ferry.html", "url": "https://tidewater.example/ferry",
                                   "published_at": "2024-07-02T09:00:00Z"}) + "\n" +
                       json.dumps({"file": "scrapes/courier/depot.html", "url": "https://tidewater.example/depot"}))
    assert run_cli(tmp_path, "--input", str(scrapes), "--export", str(tmp_path / "out.jsonl"),
                   "--url-map", str(url_map)) == 0
    captured = capsys.readouterr()
    assert "1 rows of --url-map name no .html file under" in captured.err  # the row keyed from the wrong folder
    assert "'scrapes/courier/depot.html'" in captured.err
    rows = exported(tmp_path / "out.jsonl")
    assert set(rows) == {"wire/ferry", "courier/ferry"}
    assert rows["courier/ferry"]["canonical_id"] == "wire/ferry"  # 09:00 from the map, after the wire's 08:00
    assert "courier/depot.html: missing_field: the page names no URL (og:url or canonical link) and --url-map " \
           "has no url for 'courier/depot.html'; --base-url can supply one" in captured.out


def test_run_on_a_jsonl_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "articles.jsonl"
    source.write_bytes(line("ferry", body(FERRY)) + b"\n" + b"{not json\n" + line("depot", body(DEPOT), hours=1))
    assert run_cli(tmp_path, "--input", str(source), "--export", str(tmp_path / "out.jsonl")) == 0
    assert list(exported(tmp_path / "out.jsonl")) == ["ferry", "depot"]
    out = capsys.readouterr().out
    assert "read 3 articles" in out
    assert "  articles.jsonl:3: malformed_json:" in out  # blank line 2 counts as a line


def test_run_on_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lines = line("ferry", body(FERRY)) + line("turtles", body(TURTLES), hours=2) + b'"just a string"\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(lines)))
    assert run_cli(tmp_path, "--input", "-", "--export", str(tmp_path / "out.jsonl")) == 0
    assert list(exported(tmp_path / "out.jsonl")) == ["ferry", "turtles"]
    assert "  stdin:3: not_an_object:" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "ingest"])
def test_a_missing_path_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    missing = str(tmp_path / "no-such-folder")
    assert main(command_line(command, tmp_path, missing)) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"newsdedup: {missing}: no such file or folder (give a .jsonl file, a folder of "
                            f".json/.html files, or - for stdin)\n")
    assert captured.out == ""
    assert not (tmp_path / "news.db").exists()  # nothing made before the source was found


@pytest.mark.parametrize("command", ["run", "ingest"])
def test_page_options_on_a_jsonl_file_or_a_missing_url_map_are_one_line_errors(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, scrapes: Path) -> None:
    source = tmp_path / "articles.jsonl"
    source.write_bytes(line("ferry", body(FERRY)))
    assert main(command_line(command, tmp_path, str(source), "--base-url", "https://archive.example/")) == 2
    assert capsys.readouterr().err == (f"newsdedup: --url-map, --base-url and --default-published-at are for a "
                                       f"folder of .html pages; {source} is no folder\n")
    assert main(command_line(command, tmp_path, str(scrapes), "--url-map", str(tmp_path / "urls.csv"))) == 2
    assert capsys.readouterr().err == f"newsdedup: {tmp_path / 'urls.csv'}: no such file (the --url-map)\n"
    assert not (tmp_path / "news.db").exists()


def test_a_bad_option_value_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_cli(tmp_path, "--input", str(tmp_path), "--default-published-at", "2024-07-02T10:00:00")
    assert stopped.value.code == 2
    assert "argument --default-published-at: '2024-07-02T10:00:00' is no ISO 8601 time with a zone" in \
        capsys.readouterr().err
