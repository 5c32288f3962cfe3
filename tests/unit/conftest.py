"""Shared factories for the unit tests (the invented stories live in invented_news.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from consumers.prepare import PreparedArticle, prepare_article
from consumers.stages.fingerprint import FingerprintConfig
from ingest.contract import Article
from tests.unit.invented_news import T0


@pytest.fixture
def fingerprint_config() -> FingerprintConfig:
    return FingerprintConfig()


@pytest.fixture
def make_article() -> Callable[..., Article]:
    def make(article_id: str, text: str, *, hours: float = 0.0, source: str | None = None,
             url: str | None = None) -> Article:
        source = source or f"{article_id}.example"
        return Article(
            id=article_id,
            url=url or f"https://{source}/news/{article_id}",
            source=source,
            published_at=T0 + timedelta(hours=hours),
            title=f"Headline of {article_id}",
            body=text,
            lang="en",
        )

    return make


@pytest.fixture
def make_prepared(make_article: Callable[..., Article],
                  fingerprint_config: FingerprintConfig) -> Callable[..., PreparedArticle]:
    def make(article_id: str, text: str, **kwargs: object) -> PreparedArticle:
        return prepare_article(make_article(article_id, text, **kwargs), fingerprint_config)

    return make
