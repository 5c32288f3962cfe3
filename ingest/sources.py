"""Where ``newsdedup ingest`` reads articles: a JSONL file, stdin, or a folder of .json/.html files.

Each source yields ``Record``s: the raw JSON bytes of one article and a label for messages.
An .html file becomes an article with its text left to the prepare stage's extractor; its URL,
date, outlet and title come from the page's own metadata (``og:url``, ``article:published_time``
and the like, read by trafilatura).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ingest.contract import INVALID_VALUE, MISSING_FIELD, InvalidArticle


@dataclass(frozen=True, slots=True)
class Record:
    label: str  # "file.jsonl:12" or "page.html", for messages
    raw: bytes | None  # None when the file could not be turned into an article
    error: InvalidArticle | None = None


def read_source(path: str) -> Iterator[Record]:
    if path == "-":
        yield from _jsonl(sys.stdin.buffer, "stdin")
        return
    target = Path(path)
    if target.is_dir():
        for file in sorted(p for p in target.rglob("*") if p.suffix.lower() in {".json", ".html", ".htm"}):
            yield _json_file(file) if file.suffix.lower() == ".json" else _html_file(file)
    elif target.is_file():
        with target.open("rb") as stream:
            yield from _jsonl(stream, target.name)
    else:
        raise FileNotFoundError(f"{path}: no such file or folder (give a .jsonl file, a folder, or - for stdin)")


def source_size(path: str) -> int | None:
    """Units for the progress bar: bytes of a file, files of a folder, unknown for stdin."""
    target = Path(path)
    if path == "-" or not target.exists():
        return None
    if target.is_dir():
        return sum(1 for p in target.rglob("*") if p.suffix.lower() in {".json", ".html", ".htm"})
    return target.stat().st_size


def _jsonl(stream: BinaryIO, name: str) -> Iterator[Record]:
    for number, line in enumerate(stream, 1):
        if line.strip():
            yield Record(f"{name}:{number}", line.rstrip(b"\r\n"))


def _json_file(file: Path) -> Record:
    return Record(file.name, file.read_bytes())


def _html_file(file: Path) -> Record:
    import trafilatura  # imported here: it is slow to import and only folders of pages need it

    html = file.read_text(encoding="utf-8", errors="replace")
    # Ask htmldate for the original publication time, with its zone when the page gives one.
    meta = trafilatura.extract_metadata(html, date_config={"original_date": True, "extensive_search": False,
                                                            "outputformat": "%Y-%m-%dT%H:%M:%S%z"})
    url = getattr(meta, "url", None)
    date = getattr(meta, "date", None)
    if not url:
        return Record(file.name, None,
                      InvalidArticle(MISSING_FIELD, "the page names no URL (og:url or canonical link)"))
    if not date:
        return Record(file.name, None, InvalidArticle(INVALID_VALUE, "the page names no publication date"))
    article = {
        "id": file.stem,
        "url": url,
        "source": getattr(meta, "sitename", None) or getattr(meta, "hostname", None) or file.parent.name,
        "title": getattr(meta, "title", None) or "",
        "html": html,
        "published_at": date if date[-5] in "+-" or date.endswith("Z") else f"{date}Z",  # no zone given: UTC
    }
    return Record(file.name, json.dumps(article, ensure_ascii=False).encode("utf-8"))
