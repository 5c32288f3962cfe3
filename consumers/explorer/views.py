"""Pure helpers between the stored records and what the explorer shows: reading a search, checking a
URL or ids, and placing a story's events on its timeline."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from consumers.explorer.similarity import LoggedEvent
from ingest.urls import normalise_url

MAX_URL_CHARS = 2048
MAX_QUERY_CHARS = 2048
MAX_WORDS = 8
MAX_WORD_CHARS = 100
ID_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"  # article keys are 24 hex digits, story ids "s-" and one: the column's 40
_ID = re.compile(ID_PATTERN)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_CONTROL_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tabs and line breaks are spaces between words
URL = "url"
WORDS = "words"
EMPTY = "empty"


class InvalidInput(ValueError):
    """Input the explorer refuses; its message says what is wrong and what is accepted (a 4xx)."""


def check_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise InvalidInput(f"{what} must be 1 to 40 letters, digits, '-' or '_' (an article id is 24 hex digits, "
                           f"a story id 's-' and 24 hex digits)")
    return value


def lookup_url(url: str) -> str:
    """The URL normalised as ingest does, or InvalidInput saying why it cannot be an article's URL."""
    if len(url) > MAX_URL_CHARS:
        raise InvalidInput(f"the URL is {len(url)} characters long; at most {MAX_URL_CHARS} are accepted")
    url = url.strip()
    if _CONTROL.search(url):
        raise InvalidInput("the URL contains spaces or control characters: percent-encode them")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise InvalidInput("the URL cannot be parsed (a malformed host or port)") from None
    if parts.scheme.lower() not in {"http", "https"} or not host:
        raise InvalidInput("give an absolute http:// or https:// URL with a host, as the articles were sent")
    return normalise_url(url)


def title_words(text: str) -> tuple[str, ...]:
    check_text(text, "the search")
    words = tuple(text.split())
    if len(words) > MAX_WORDS:
        raise InvalidInput(f"{len(words)} words given; search with at most {MAX_WORDS}")
    if any(len(word) > MAX_WORD_CHARS for word in words):
        raise InvalidInput(f"a word is longer than {MAX_WORD_CHARS} characters")
    return words


def check_text(value: str, what: str) -> str:
    """Refuse control characters in free text: no title or outlet holds one, and PostgreSQL refuses NUL outright."""
    if _CONTROL_TEXT.search(value):
        raise InvalidInput(f"{what} contains control characters")
    return value


@dataclass(frozen=True, slots=True)
class SearchQuery:
    kind: str  # URL, WORDS or EMPTY
    url: str = ""  # normalised, for URL
    words: tuple[str, ...] = ()


def read_search(text: str) -> SearchQuery:
    """A search box's text: a URL (it has a scheme) goes to lookup, anything else is title words."""
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInput(f"the search is {len(text)} characters long; at most {MAX_QUERY_CHARS} are accepted")
    text = text.strip()
    if not text:
        return SearchQuery(EMPTY)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return SearchQuery(URL, url=lookup_url(text))
    return SearchQuery(WORDS, words=title_words(text))


@dataclass(frozen=True, slots=True)
class Mark:
    kind: str
    at: datetime | None
    label: str


def timeline_marks(events: Sequence[LoggedEvent], published: dict[str, datetime], outlets: dict[str, str]
                   ) -> list[Mark]:
    """Merges and canonical changes, placed at publication times, the timeline's axis.

    The log stores when an event was written, which for a backlog is long after the copies were
    published; so a canonical change sits at its new canonical's publication, and a merge at that of
    the article whose join caused it (the story's next ``joined`` event). ``published`` and ``outlets``
    are by article id; an article not in them leaves the mark without a time.
    """
    ordered = sorted(events, key=lambda e: e.id)
    marks: list[Mark] = []
    for index, e in enumerate(ordered):
        if e.kind == "canonical_changed":
            outlet = outlets.get(e.article_id or "", "another copy")
            marks.append(Mark(e.kind, published.get(e.article_id or ""), f"now {outlet}"))
        elif e.kind == "merged" and e.reason.startswith("absorbed "):
            joiner = next((later.article_id for later in ordered[index + 1:]
                           if later.kind == "joined" and later.story_id == e.story_id), None)
            marks.append(Mark(e.kind, published.get(joiner or ""), f"absorbed {e.reason.removeprefix('absorbed ')}"))
    return marks
