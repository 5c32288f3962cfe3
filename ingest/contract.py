"""The article message contract: what scrapers send on ``articles.raw``.

One JSON object per message, UTF-8. Version 1 fields:

=============  ========  =====================================================
field          required  meaning
=============  ========  =====================================================
schema_version no        integer, 1 (absent means 1)
id             yes       the producer's own id for the article (string)
url            yes       absolute http(s) URL of the page
source         yes       the outlet (domain or name)
title          no        headline as scraped (string, may be empty)
body           one of    plain text, paragraphs separated by blank lines
html           one of    the page's HTML; text is extracted from it
published_at   yes       ISO 8601 time, with a zone (``Z`` or ``+hh:mm``)
scraped_at     no        ISO 8601 time the scraper fetched the page
lang           no        ISO 639-1 language code, default ``und``
metadata       no        a flat object of producer-specific extras
=============  ========  =====================================================

Validation never raises anything but :class:`InvalidArticle`, whose ``reason`` is one of
:data:`REJECT_REASONS` (a small fixed set, because it becomes a metric label and a DLQ header).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

SCHEMA_VERSION = 1
DEFAULT_MAX_MESSAGE_BYTES = 2_000_000
# Dates outside this window are typos or epoch-zero defaults, not news.
EARLIEST_DATE = datetime(1990, 1, 1, tzinfo=UTC)
LATEST_DATE = datetime(2100, 1, 1, tzinfo=UTC)
MAX_FIELD_CHARS = {"id": 256, "url": 4096, "source": 256, "title": 2048, "lang": 16}
MAX_JSON_DEPTH = 8

# Reasons are label values: keep this set small and fixed.
TOO_LARGE = "too_large"
INVALID_UTF8 = "invalid_utf8"
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
INVALID_VALUE = "invalid_value"
UNSUPPORTED_VERSION = "unsupported_version"
EMPTY_TEXT = "empty_text"
REJECT_REASONS = (
    TOO_LARGE, INVALID_UTF8, MALFORMED_JSON, NOT_AN_OBJECT, MISSING_FIELD,
    WRONG_TYPE, INVALID_VALUE, UNSUPPORTED_VERSION, EMPTY_TEXT,
)


class InvalidArticle(ValueError):
    """A message that breaks the contract; ``reason`` is one of REJECT_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Article:
    """A validated article as the producer sent it (text not yet extracted or cleaned)."""

    id: str
    url: str
    source: str
    published_at: datetime
    title: str = ""
    body: str | None = None
    html: str | None = None
    scraped_at: datetime | None = None
    lang: str = "und"
    metadata: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


def parse_article(raw: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> Article:
    """Decode and validate one message; raise InvalidArticle naming the first problem found."""
    if len(raw) > max_bytes:
        raise InvalidArticle(TOO_LARGE, f"message is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArticle(INVALID_UTF8, f"byte {exc.start} is not valid UTF-8") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidArticle(MALFORMED_JSON, "JSON nested too deeply") from None
    except _OutOfRange:
        # JSON allows numbers beyond float range (1e400 → inf), which cannot be stored: refuse them here.
        raise InvalidArticle(INVALID_VALUE, "a number is out of range (it overflows to infinity)") from None
    except ValueError as exc:
        raise InvalidArticle(MALFORMED_JSON, str(exc)) from None
    if not isinstance(obj, dict):
        raise InvalidArticle(NOT_AN_OBJECT, f"expected a JSON object, got {type(obj).__name__}")
    # JSON allows escapes of lone surrogates ("\ud800"), which are no characters and cannot be stored.
    # Only a \uD8xx-\uDFxx escape makes one (raw UTF-8 cannot): the cheap test first.
    if ("\\ud" in text or "\\uD" in text) and _holds_lone_surrogate(obj):
        raise InvalidArticle(INVALID_VALUE, "a string holds a lone surrogate escape, which is no character")
    if "\\u0000" in text and _holds_nul(obj):  # the cheap test first; PostgreSQL text cannot hold NUL
        raise InvalidArticle(INVALID_VALUE, "a string holds a NUL character (\\u0000)")
    return article_from_dict(obj)


def article_from_dict(obj: dict[str, Any]) -> Article:
    """Validate a decoded JSON object against the contract."""
    version = obj.get("schema_version", SCHEMA_VERSION)
    if type(version) is not int:
        raise InvalidArticle(WRONG_TYPE, f"schema_version must be an integer, got {_type_name(version)}")
    if version != SCHEMA_VERSION:
        raise InvalidArticle(UNSUPPORTED_VERSION,
                             f"schema_version {version} is not supported (this build reads {SCHEMA_VERSION})")
    article_id = _required_str(obj, "id")
    url = _required_str(obj, "url")
    _check_url(url)
    source = _required_str(obj, "source")
    body = _optional_str(obj, "body")
    html = _optional_str(obj, "html")
    if body is None and html is None:
        raise InvalidArticle(MISSING_FIELD, "one of 'body' or 'html' is required")
    if not (body or "").strip() and not (html or "").strip():
        raise InvalidArticle(EMPTY_TEXT, "'body' and 'html' are both empty")
    published_at = _checked_time("published_at", _required_str(obj, "published_at"))
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidArticle(WRONG_TYPE, f"metadata must be an object, got {_type_name(metadata)}")
    if _too_deep(metadata, MAX_JSON_DEPTH):
        raise InvalidArticle(INVALID_VALUE, f"metadata is nested deeper than {MAX_JSON_DEPTH} levels")
    return Article(
        id=article_id,
        url=url,
        source=source,
        published_at=published_at,
        title=_optional_str(obj, "title") or "",
        body=body,
        html=html,
        scraped_at=_optional_time(obj, "scraped_at"),
        lang=_lang(obj),
        metadata=metadata,
        schema_version=version,
    )


def article_to_dict(article: Article) -> dict[str, Any]:
    """The JSON form of an article (the inverse of article_from_dict)."""
    out: dict[str, Any] = {
        "schema_version": article.schema_version,
        "id": article.id,
        "url": article.url,
        "source": article.source,
        "title": article.title,
        "published_at": format_time(article.published_at),
        "lang": article.lang,
    }
    if article.body is not None:
        out["body"] = article.body
    if article.html is not None:
        out["html"] = article.html
    if article.scraped_at is not None:
        out["scraped_at"] = format_time(article.scraped_at)
    if article.metadata:
        out["metadata"] = article.metadata
    return out


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse ISO 8601 with a zone into an aware UTC datetime; ValueError otherwise."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("time has no zone; add 'Z' or an offset such as '+02:00'")
    return value.astimezone(UTC)


def _holds_nul(value: object) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _check_url(url: str) -> None:
    if not url.lower().startswith(("http://", "https://")):
        raise InvalidArticle(INVALID_VALUE, f"url must be an absolute http(s) URL, got {url[:80]!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise InvalidArticle(INVALID_VALUE, f"url {url[:80]!r} cannot be parsed: {exc}") from None
    if not parts.hostname:
        raise InvalidArticle(INVALID_VALUE, f"url {url[:80]!r} names no host")


def _lang(obj: dict[str, Any]) -> str:
    # Lower-case before the length check: some letters grow when lower-cased ("İ" becomes two).
    lang = (_optional_str(obj, "lang") or "und").lower()
    if len(lang) > MAX_FIELD_CHARS["lang"]:
        raise InvalidArticle(INVALID_VALUE, f"field 'lang' is {len(lang)} characters, the limit is "
                                            f"{MAX_FIELD_CHARS['lang']}")
    return lang


def _optional_time(obj: dict[str, Any], name: str) -> datetime | None:
    text = _optional_str(obj, name)
    return None if text is None or not text.strip() else _checked_time(name, text)


def _checked_time(name: str, text: str) -> datetime:
    try:
        value = parse_time(text)
    except (ValueError, OverflowError) as exc:  # OverflowError: year 1 or 9999 shifted by its offset
        raise InvalidArticle(INVALID_VALUE, f"{name} {text[:40]!r} is not an ISO 8601 time: {exc}") from None
    if not EARLIEST_DATE <= value < LATEST_DATE:
        raise InvalidArticle(INVALID_VALUE, f"{name} {text[:40]!r} is outside {EARLIEST_DATE.year}..{LATEST_DATE.year}")
    return value


def _required_str(obj: dict[str, Any], name: str) -> str:
    if name not in obj or obj[name] is None:
        raise InvalidArticle(MISSING_FIELD, f"field '{name}' is required")
    value = _optional_str(obj, name)
    if value is None or not value.strip():
        raise InvalidArticle(INVALID_VALUE, f"field '{name}' must not be empty")
    return value


def _optional_str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArticle(WRONG_TYPE, f"field '{name}' must be a string, got {_type_name(value)}")
    limit = MAX_FIELD_CHARS.get(name)
    if limit is not None and len(value) > limit:
        raise InvalidArticle(INVALID_VALUE, f"field '{name}' is {len(value)} characters, the limit is {limit}")
    return value


class _OutOfRange(ValueError):
    pass


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _OutOfRange(text)
    return value


def _holds_lone_surrogate(obj: object) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")  # a pair of surrogate escapes is one character
    except UnicodeEncodeError:
        return True
    return False


def _reject_constant(name: str) -> float:
    # NaN and Infinity are not JSON; Python's parser accepts them unless told otherwise.
    raise ValueError(f"{name} is not valid JSON")


def _type_name(value: object) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "non-finite number"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _too_deep(value: object, limit: int) -> bool:
    """True when containers nest deeper than ``limit``; iterative, so no depth can exhaust the stack."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False
