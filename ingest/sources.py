"""Where ``newsdedup ingest`` and ``newsdedup run`` read articles: a JSONL file, stdin, or a folder of
.json/.html files.

Each source yields ``Record``s: the raw JSON bytes of one article, a label for messages, and its place in
the source. An .html file becomes an article with its text left to the prepare stage's extractor; its URL,
date, outlet and title come from the page's own metadata (``og:url``, ``article:published_time`` and the
like, read by trafilatura). A page that names no URL or no date is refused with the reason, unless the
operator supplies the value (:class:`PageFallbacks`: a URL map, a base URL, a default time). What the page
names always wins; an article built with a supplied value says so in its ``metadata`` (``url_from``,
``published_at_from``), beside the page's file (``page_file``).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import quote, urlsplit

from ingest.contract import (
    EARLIEST_DATE,
    INVALID_VALUE,
    LATEST_DATE,
    MISSING_FIELD,
    InvalidArticle,
    format_time,
    parse_time,
)

PAGE_SUFFIXES = frozenset({".html", ".htm"})
FILE_SUFFIXES = frozenset({".json"}) | PAGE_SUFFIXES
MTIME = "mtime"
# metadata keys and values that tell where a page's URL and date came from (provenance, stored as `extra`)
PAGE_FILE = "page_file"
URL_FROM = "url_from"
PUBLISHED_AT_FROM = "published_at_from"
FROM_URL_MAP = "url_map"
FROM_BASE_URL = "base_url"
FROM_FILE_MTIME = "file_mtime"
FROM_DEFAULT = "default_published_at"
FALLBACK_OPTIONS = "--url-map, --base-url and --default-published-at"


@dataclass(frozen=True, slots=True)
class Record:
    label: str  # "file.jsonl:12" for a line, the path relative to the folder ("2024/page.html") for a file
    raw: bytes | None  # None when the file could not be turned into an article
    error: InvalidArticle | None = None
    offset: int = 0  # place in the source: line number - 1 in a JSONL source, index of the file in a folder
    line: int | None = None  # line number in a JSONL source; None for a file of a folder


@dataclass(frozen=True, slots=True)
class MappedPage:
    """One row of a URL map: what the operator knows about a page the page itself may not say."""

    url: str | None = None
    published_at: datetime | None = None


NO_ROW = MappedPage()


@dataclass(frozen=True, slots=True)
class PageFallbacks:
    """Values for .html pages that name no URL or no date; what a page names always wins over them.

    Order for the URL: the page, the page's row in ``url_map``, ``base_url`` + the page's path in the folder.
    For the date: the page, the row's ``published_at``, ``published_at`` (a fixed time, or ``"mtime"``:
    the file's modification time).
    """

    url_map: Mapping[str, MappedPage] = field(default_factory=dict)  # by path relative to the folder
    base_url: str | None = None
    published_at: datetime | Literal["mtime"] | None = None

    @property
    def given(self) -> bool:
        return bool(self.url_map) or self.base_url is not None or self.published_at is not None


NO_FALLBACKS = PageFallbacks()


def check_source(path: str, fallbacks: PageFallbacks = NO_FALLBACKS) -> None:
    """Raise OSError or ValueError, with a one-line message, when a source cannot be read as asked."""
    target = Path(path)
    if path != "-" and not target.exists():
        raise FileNotFoundError(
            f"{path}: no such file or folder (give a .jsonl file, a folder of .json/.html files, or - for stdin)")
    if fallbacks.given and (path == "-" or not target.is_dir()):
        raise ValueError(f"{FALLBACK_OPTIONS} are for a folder of .html pages; "
                         f"{'stdin' if path == '-' else path} is no folder")
    try:
        if target.is_dir():
            with os.scandir(target):
                pass
        elif target.is_file():  # not a pipe: opening one would wait for its writer
            target.open("rb").close()
    except OSError as exc:
        raise type(exc)(f"{path}: cannot be read ({exc.strerror or exc})") from None


def read_source(path: str, fallbacks: PageFallbacks = NO_FALLBACKS) -> Iterator[Record]:
    """The records of a source; raises at once (see check_source) when it cannot be read."""
    check_source(path, fallbacks)
    if path == "-":
        return jsonl_records(sys.stdin.buffer, "stdin")
    target = Path(path)
    if target.is_dir():
        return _folder(target, folder_files(target), fallbacks)
    return _jsonl_file(target)


def source_name(path: str) -> str:
    """The source's name in lineage and messages: the file's or the folder's name, ``stdin`` for -."""
    if path == "-":
        return "stdin"
    target = Path(path)
    return target.resolve().name if target.is_dir() else target.name  # "." names the folder it is


def source_size(path: str) -> int | None:
    """Units for the progress bar: bytes of a file, files of a folder, unknown for stdin."""
    target = Path(path)
    if path == "-" or not target.exists():
        return None
    if target.is_dir():
        return len(folder_files(target))
    return target.stat().st_size if target.is_file() else None


def count_records(path: str) -> int | None:
    """How many records a source holds: non-blank lines of a file, files of a folder; unknown for stdin."""
    target = Path(path)
    if path == "-" or not target.exists():
        return None
    if target.is_dir():
        return len(folder_files(target))
    if not target.is_file():
        return None  # a pipe cannot be read twice
    with target.open("rb") as stream:
        return sum(1 for line in stream if line.strip())


def folder_files(folder: Path) -> list[Path]:
    """The .json and .html files under a folder, in the order they are read (their sorted paths)."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in FILE_SUFFIXES and p.is_file())


def jsonl_records(lines: Iterable[bytes], name: str) -> Iterator[Record]:
    """One record per non-blank line; the offset is the line number - 1, blank lines included."""
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield Record(f"{name}:{number}", line.rstrip(b"\r\n"), offset=number - 1, line=number)


# -- the operator's fallbacks ----------------------------------------------------------------------


def parse_base_url(text: str) -> str:
    """Check a --base-url: an absolute http(s) URL without query or fragment."""
    if not _is_http_url(text.strip()):
        raise ValueError(f"{text!r} is no absolute http(s) URL; give one such as https://archive.example/pages/")
    parts = urlsplit(text.strip())
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r} has a query or fragment; the page's path is appended, so give a bare URL")
    return text.strip()


def parse_default_published_at(text: str) -> datetime | Literal["mtime"]:
    """Check a --default-published-at: ``mtime`` or an ISO 8601 time with its zone."""
    if text.strip().lower() == MTIME:
        return MTIME
    try:
        return _time(text)
    except ValueError as exc:
        raise ValueError(f"{exc}; or give 'mtime' (the file's modification time)") from None


def load_url_map(path: str) -> dict[str, MappedPage]:
    """Read a --url-map: pages by their path relative to the folder, with a URL and/or a publication time.

    JSONL (.jsonl, .ndjson, .json): one object a line, ``{"file": ..., "url": ..., "published_at": ...}``.
    Anything else is CSV: the columns ``file,url,published_at`` in that order, or named by a header row
    that starts with ``file`` (other columns are ignored). Either URL or time may be left empty, not both.
    Raises ValueError naming the line of the first bad row.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{path}: no such file (the --url-map)")
    try:
        jsonl = source.suffix.lower() in {".jsonl", ".ndjson", ".json"}
        rows = list(_map_rows_jsonl(source) if jsonl else _map_rows_csv(source))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise type(exc)(f"{path}: cannot be read ({exc.strerror or exc})") from None
    mapping: dict[str, MappedPage] = {}
    for where, file, url, published_at in rows:
        key = _map_key(file)
        if not key:
            raise ValueError(f"{where}: no file name (the first column, or 'file')")
        if key in mapping:
            raise ValueError(f"{where}: {key!r} is mapped twice")
        if not url and not published_at:
            raise ValueError(f"{where}: neither a url nor a published_at for {key!r}")
        if url and not _is_http_url(url):
            raise ValueError(f"{where}: {url[:80]!r} is no absolute http(s) URL")
        try:
            mapping[key] = MappedPage(url or None, _time(published_at) if published_at else None)
        except ValueError as exc:
            raise ValueError(f"{where}: published_at {exc}") from None
    if not mapping:
        raise ValueError(f"{path}: no rows")
    return mapping


def map_rows_without_page(folder: str, url_map: Mapping[str, MappedPage]) -> list[str]:
    """Rows of a URL map that name no .html page in the folder (a map keyed by another root, say)."""
    root = Path(folder)
    pages = {p.relative_to(root).as_posix() for p in folder_files(root) if p.suffix.lower() in PAGE_SUFFIXES}
    return sorted(set(url_map) - pages)


def _map_rows_csv(source: Path) -> Iterator[tuple[str, str, str, str]]:
    columns = {"file": 0, "url": 1, "published_at": 2}
    with source.open(newline="", encoding="utf-8-sig") as stream:  # -sig: spreadsheets write a BOM
        reader = csv.reader(stream)
        first = True
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if first and row[0].strip().lower() == "file":  # a header names the columns
                names = [cell.strip().lower() for cell in row]
                columns = {name: names.index(name) for name in ("file", "url", "published_at") if name in names}
                if "url" not in columns and "published_at" not in columns:
                    raise ValueError(f"{source}:{reader.line_num}: the header names neither a 'url' nor a "
                                     f"'published_at' column")
                first = False
                continue
            first = False
            values = {name: row[index].strip() for name, index in columns.items() if index < len(row)}
            yield (f"{source}:{reader.line_num}", values.get("file", ""), values.get("url", ""),
                   values.get("published_at", ""))


def _map_rows_jsonl(source: Path) -> Iterator[tuple[str, str, str, str]]:
    with source.open(encoding="utf-8-sig") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            where = f"{source}:{number}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{where}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected an object with 'file' and 'url' and/or 'published_at'")
            file, url, published_at = (row.get(name) or "" for name in ("file", "url", "published_at"))
            if not all(isinstance(value, str) for value in (file, url, published_at)):
                raise ValueError(f"{where}: 'file', 'url' and 'published_at' must be strings")
            yield where, file.strip(), url.strip(), published_at.strip()


def _map_key(file: str) -> str:
    """A map's file name as a path relative to the folder: forward slashes, no ./ or leading /."""
    parts = [part for part in PurePosixPath(file.strip().replace("\\", "/")).parts if part not in {"/", "."}]
    return "/".join(parts)


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)
    except ValueError:  # "http://[bad" and the like
        return False


def _time(text: str) -> datetime:
    try:
        value = parse_time(text)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{text!r} is no ISO 8601 time with a zone, such as 2024-07-01T00:00:00Z ({exc})") from None
    if not EARLIEST_DATE <= value < LATEST_DATE:
        raise ValueError(f"{text!r} is outside {EARLIEST_DATE.year}..{LATEST_DATE.year}")
    return value


# -- reading ---------------------------------------------------------------------------------------


def _jsonl_file(file: Path) -> Iterator[Record]:
    with file.open("rb") as stream:
        yield from jsonl_records(stream, file.name)


def _folder(root: Path, files: list[Path], fallbacks: PageFallbacks) -> Iterator[Record]:
    for offset, file in enumerate(files):
        name = file.relative_to(root).as_posix()
        try:
            if file.suffix.lower() == ".json":
                yield Record(name, file.read_bytes(), offset=offset)
            else:
                yield _page(file, name, offset, fallbacks)
        except OSError as exc:  # gone or unreadable since the folder was listed: this file only
            yield Record(name, None, InvalidArticle(INVALID_VALUE, f"the file cannot be read ({exc.strerror})"),
                         offset=offset)


def _page(file: Path, name: str, offset: int, fallbacks: PageFallbacks) -> Record:
    import trafilatura  # imported here: it is slow to import and only folders of pages need it

    html = file.read_text(encoding="utf-8", errors="replace")
    # Ask htmldate for the original publication time, with its zone when the page gives one.
    meta = trafilatura.extract_metadata(html, date_config={"original_date": True, "extensive_search": False,
                                                            "outputformat": "%Y-%m-%dT%H:%M:%S%z"})
    row = fallbacks.url_map.get(name, NO_ROW)
    metadata = {PAGE_FILE: name}
    url = getattr(meta, "url", None)
    if not url and row.url:
        url, metadata[URL_FROM] = row.url, FROM_URL_MAP
    elif not url and fallbacks.base_url:
        url, metadata[URL_FROM] = fallbacks.base_url.rstrip("/") + "/" + quote(name), FROM_BASE_URL
    if not url:
        detail = "the page names no URL (og:url or canonical link)"
        detail += (f" and --url-map has no url for {name!r}; --base-url can supply one" if fallbacks.url_map
                   else "; --url-map or --base-url can supply one")
        return Record(name, None, InvalidArticle(MISSING_FIELD, detail), offset=offset)
    date = getattr(meta, "date", None)
    published_at = (date if date[-5] in "+-" or date.endswith("Z") else f"{date}Z") if date else None  # no zone: UTC
    if not published_at and row.published_at:
        published_at, metadata[PUBLISHED_AT_FROM] = format_time(row.published_at), FROM_URL_MAP
    elif not published_at and fallbacks.published_at == MTIME:
        modified = datetime.fromtimestamp(file.stat().st_mtime, UTC)
        published_at, metadata[PUBLISHED_AT_FROM] = format_time(modified), FROM_FILE_MTIME
    elif not published_at and isinstance(fallbacks.published_at, datetime):
        published_at, metadata[PUBLISHED_AT_FROM] = format_time(fallbacks.published_at), FROM_DEFAULT
    if not published_at:
        return Record(name, None, InvalidArticle(
            MISSING_FIELD, "the page names no publication date; --default-published-at (mtime or a time) or a "
                           "published_at column in --url-map can supply one"), offset=offset)
    article = {
        "id": str(PurePosixPath(name).with_suffix("")),  # the path, as pages of two subfolders may share a name
        "url": url,
        "source": getattr(meta, "sitename", None) or getattr(meta, "hostname", None) or urlsplit(url).hostname,
        "title": getattr(meta, "title", None) or "",
        "html": html,
        "published_at": published_at,
        "metadata": metadata,
    }
    return Record(name, json.dumps(article, ensure_ascii=False).encode("utf-8"), offset=offset)
