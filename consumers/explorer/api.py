"""The JSON API under /api: lookup by URL or article id, stories (paged, filtered), one story, why together.

Every parameter is declared with its bounds, so FastAPI answers bad input with a 422 that names the
parameter (and the OpenAPI document states the bounds); what a type cannot say (a URL one can look up,
an id's form) raises ``InvalidInput``, answered the same way (consumers/explorer/app.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict

from consumers.explorer.auth import require_token
from consumers.explorer.similarity import join_chain, links_from_events, pair_similarity
from consumers.explorer.views import (
    MAX_QUERY_CHARS,
    MAX_URL_CHARS,
    InvalidInput,
    check_id,
    check_text,
    lookup_url,
    title_words,
)
from consumers.storage.explore import ExplorerStore, StoryFilter

MAX_PAGE = 100
MAX_OFFSET = 10_000  # deeper pages: narrow the filter (time window, outlet) instead
EXCERPT_CHARS = 400


class Model(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Article(Model):
    id: str
    story_id: str
    input_id: str
    url: str
    url_normalised: str
    source: str
    title: str
    lang: str
    published_at: datetime
    scraped_at: datetime | None
    stored_at: datetime
    match_method: str
    similarity: float
    containment: float
    canonical: bool
    num_shingles: int
    source_topic: str
    source_partition: int
    source_offset: int
    source_timestamp: datetime | None


class Story(Model):
    id: str
    canonical_article_id: str
    canonical_title: str
    canonical_source: str
    member_count: int
    outlet_count: int
    first_seen_at: datetime
    last_seen_at: datetime
    updated_at: datetime
    merged_into: str | None


class Event(Model):
    id: int
    story_id: str
    kind: str
    article_id: str | None
    reason: str
    similarity: float | None
    occurred_at: datetime


class LookupMatch(Model):
    article: Article
    story: Story | None
    canonical: Article | None


class Lookup(Model):
    url_normalised: str | None
    matches: list[LookupMatch]


class StoryList(Model):
    stories: list[Story]
    limit: int
    offset: int
    next_offset: int | None


class StoryDetail(Model):
    story: Story
    members: list[Article]
    events: list[Event]


class PairArticle(Model):
    id: str
    story_id: str
    source: str
    title: str
    excerpt: str
    shingles: int
    basis: str  # stored_hashes, or text when retention dropped the hashes


class ChainStep(Model):
    from_id: str
    to_id: str
    kind: str  # joined, or merged (the join merged a story the other article had founded)
    method: str
    similarity: float | None
    event_id: int
    story_id: str


class Why(Model):
    a: PairArticle
    b: PairArticle
    jaccard: float
    containment: float
    verified: bool
    same_story: bool
    chain: list[ChainStep] | None


router = APIRouter(prefix="/api", tags=["api"], dependencies=[Depends(require_token)])
ArticleId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$",
                                description="an article id (24 hex digits)")]
StoryId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$",
                              description="a story id ('s-' and 24 hex digits)")]


def store_of(request: Request) -> ExplorerStore:
    return request.app.state.store


@router.get("/lookup", response_model=Lookup, summary="Which story is this URL or article in?")
def lookup(request: Request,
           url: Annotated[str | None, Query(max_length=MAX_URL_CHARS, description="an article's URL (normalised as "
                                                                                    "ingest does)")] = None,
           article_id: Annotated[str | None, Query(max_length=40, description="a stored article's id")] = None,
           ) -> Lookup:
    if (url is None) == (article_id is None):
        raise InvalidInput("give exactly one of the query parameters 'url' and 'article_id'")
    store = store_of(request)
    if url is not None:
        normalised = lookup_url(url)
        found = store.lookup(url_normalised=normalised)
        if not found:
            raise HTTPException(404, f"not seen: no stored article has the URL {normalised}")
    else:
        normalised = None
        found = store.lookup(article_id=check_id(article_id or "", "article_id"))
        if not found:
            raise HTTPException(404, "not seen: no stored article has this id")
    return Lookup(url_normalised=normalised, matches=[
        LookupMatch(article=Article.model_validate(f.article), story=_story(f.story), canonical=_article(f.canonical))
        for f in found])


@router.get("/articles/{article_id}", response_model=Lookup, summary="One stored article, its story and canonical")
def article(request: Request, article_id: ArticleId) -> Lookup:
    return lookup(request, url=None, article_id=article_id)


@router.get("/stories", response_model=StoryList, summary="Stories, newest or largest first, filtered")
def stories(request: Request,
            since: Annotated[datetime | None, Query(description="whose last copy was published at or after this "
                                                                "(ISO 8601 with a zone)")] = None,
            until: Annotated[datetime | None, Query(description="whose first copy was published at or before "
                                                                "this")] = None,
            outlet: Annotated[str | None, Query(max_length=256, description="with a copy from this source, "
                                                                            "e.g. apnews.com")] = None,
            min_size: Annotated[int | None, Query(ge=1, le=1_000_000, description="at least this many copies")] = None,
            max_size: Annotated[int | None, Query(ge=1, le=1_000_000, description="at most this many copies")] = None,
            q: Annotated[str | None, Query(max_length=MAX_QUERY_CHARS, description="words that one copy's title "
                                                                                   "holds, all of them")] = None,
            order: Annotated[Literal["recent", "largest"], Query(description="recent: last copy newest first; "
                                                                             "largest: most copies first")] = "recent",
            limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
            offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
            ) -> StoryList:
    where = story_filter(since, until, outlet, min_size, max_size, q)
    page = store_of(request).stories(where, order, limit, offset)
    return StoryList(stories=[Story.model_validate(s) for s in page.stories], limit=limit, offset=offset,
                     next_offset=offset + limit if page.more and offset + limit <= MAX_OFFSET else None)


def story_filter(since: datetime | None, until: datetime | None, outlet: str | None, min_size: int | None,
                 max_size: int | None, q: str | None) -> StoryFilter:
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"{name} needs a time zone (2024-07-01T00:00:00Z), as published_at has one")
    if since is not None and until is not None and since > until:
        raise InvalidInput("since is after until: the time window is empty")
    if min_size is not None and max_size is not None and min_size > max_size:
        raise InvalidInput("min_size is above max_size")
    return StoryFilter(since, until, check_text(outlet or "", "outlet").strip() or None, min_size, max_size,
                       title_words(q or ""))


@router.get("/stories/{story_id}", response_model=StoryDetail, summary="One story: its members and event log")
def story(request: Request, story_id: StoryId) -> StoryDetail:
    detail = store_of(request).story(story_id)
    if detail is None:
        raise HTTPException(404, "no story has this id")
    return StoryDetail(story=Story.model_validate(detail.story),
                       members=[Article.model_validate(m) for m in detail.members],
                       events=[Event.model_validate(e) for e in detail.events])


@router.get("/why", response_model=Why, summary="Why are these two articles together?")
def why(request: Request,
        a: Annotated[str, Query(min_length=1, max_length=40, description="an article id")],
        b: Annotated[str, Query(min_length=1, max_length=40, description="another article id")]) -> Why:
    return why_together(request, check_id(a, "a"), check_id(b, "b"))


def why_together(request: Request, a: str, b: str) -> Why:
    store = store_of(request)
    sources = store.shingle_sources([a, b])
    missing = [name for name, key in (("a", a), ("b", b)) if key not in sources]
    if missing:
        raise HTTPException(404, f"no stored article has the id given as {' and '.join(missing)}")
    found = store.article(a), store.article(b)
    if found[0] is None or found[1] is None:
        raise HTTPException(404, "the articles went while they were read (pruned?)")
    state = request.app.state
    pair = pair_similarity(sources[a], sources[b], state.fingerprint, state.match)
    same = found[0].story_id == found[1].story_id
    chain = None
    if same:
        steps = join_chain(a, b, links_from_events(store.events(found[0].story_id)))
        chain = None if steps is None else [
            ChainStep(from_id=s.from_id, to_id=s.to_id, kind=s.link.kind, method=s.link.method,
                      similarity=s.link.similarity, event_id=s.link.event_id, story_id=s.link.story_id)
            for s in steps]

    def side(record: Any, shingles: int, basis: str) -> PairArticle:
        return PairArticle(id=record.id, story_id=record.story_id, source=record.source, title=record.title,
                           excerpt=sources[record.id].body[:EXCERPT_CHARS], shingles=shingles, basis=basis)

    return Why(a=side(found[0], pair.shingles_a, pair.basis_a), b=side(found[1], pair.shingles_b, pair.basis_b),
               jaccard=pair.jaccard, containment=pair.containment, verified=pair.verified, same_story=same,
               chain=chain)


def _story(summary: Any) -> Story | None:
    return Story.model_validate(summary) if summary is not None else None


def _article(record: Any) -> Article | None:
    return Article.model_validate(record) if record is not None else None
