"""The HTML pages, server-rendered, no JavaScript: stories (/), one story (/stories/{id}), search, why together.

Templates are autoescaped (consumers/explorer/app.py ``templates``); a link to an article's URL is made
only for http(s) URLs (``safe_href``), so a ``javascript:`` URL in an article stays text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from consumers.explorer import api
from consumers.explorer.timeline import TimelineCopy, TimelineMark, render_timeline
from consumers.explorer.views import (
    MAX_QUERY_CHARS,
    URL,
    WORDS,
    check_id,
    read_search,
    timeline_marks,
)
from consumers.storage.explore import StoryFilter

LIST_SIZE = 25
router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    template = request.app.state.templates.get_template(name)
    return HTMLResponse(template.render(request=request, **{"query": "", **context}), status_code=status)


@router.get("/")
def index(request: Request) -> HTMLResponse:
    store = api.store_of(request)
    recent = store.stories(StoryFilter(), "recent", LIST_SIZE, 0)
    largest = store.stories(StoryFilter(min_size=2), "largest", LIST_SIZE, 0)
    return render(request, "index.html", {"recent": recent.stories, "largest": largest.stories, "query": ""})


@router.get("/stories/{story_id}")
def story(request: Request, story_id: Annotated[str, Path(max_length=40)]) -> HTMLResponse:
    detail = api.store_of(request).story(check_id(story_id, "story id"))
    if detail is None:
        raise HTTPException(404, "no story has this id")
    published = {m.id: m.published_at for m in detail.members}
    outlets = {m.id: m.source for m in detail.members}
    copies = [TimelineCopy(m.id, m.source, m.title, m.published_at, m.canonical) for m in detail.members]
    marks = [TimelineMark(mark.kind, mark.at, mark.label)
             for mark in timeline_marks(detail.events, published, outlets)]
    canonical = next((m for m in detail.members if m.canonical), None)
    return render(request, "story.html", {
        "story": detail.story, "members": detail.members, "events": detail.events, "canonical": canonical,
        "timeline": render_timeline(copies, marks), "outlets": sorted({m.source for m in detail.members}),
        "query": ""})


@router.get("/search", response_model=None)
def search(request: Request, q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)] = "") -> Response:
    query = read_search(q)
    store = api.store_of(request)
    if query.kind == URL:
        found = store.articles_by_url(query.url, limit=1)
        if found:
            article = found[0]
            return RedirectResponse(f"/stories/{quote(article.story_id)}#article-{quote(article.id)}", 303)
        return render(request, "search.html", {"query": q, "kind": URL, "url": query.url, "stories": []},
                      status=404)
    stories = store.stories(StoryFilter(words=query.words), "recent", LIST_SIZE, 0).stories if query.kind == WORDS \
        else ()
    return render(request, "search.html", {"query": q, "kind": query.kind, "url": "", "stories": stories})


@router.get("/why")
def why(request: Request, a: Annotated[str, Query(max_length=40)], b: Annotated[str, Query(max_length=40)]
        ) -> HTMLResponse:
    result = api.why_together(request, check_id(a, "a"), check_id(b, "b"))
    return render(request, "why.html", {"why": result, "query": "",
                                         "jaccard_threshold": request.app.state.match.jaccard_threshold,
                                         "containment_threshold": request.app.state.match.containment_threshold})


# -- template helpers (pure) ------------------------------------------------------------------------


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "—"


def ratio(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "—"


def safe_href(url: str) -> str | None:
    """The URL if a link to it is safe to make (http or https), else None: the page shows it as text."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return url if scheme in {"http", "https"} else None


def operations(openapi: dict[str, Any]) -> list[dict[str, Any]]:
    """The OpenAPI document's operations, for the /docs page: method, path, summary, parameters."""
    found = []
    for path, methods in openapi.get("paths", {}).items():
        for method, operation in methods.items():
            found.append({"method": method.upper(), "path": path, "summary": operation.get("summary", ""),
                          "parameters": [{"name": p["name"], "where": p["in"], "required": p.get("required", False),
                                          "description": p.get("description", "")}
                                         for p in operation.get("parameters", [])]})
    return found

