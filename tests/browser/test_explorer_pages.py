"""The explorer's pages in a real Chromium, over a PostgreSQL the real pipeline filled (Kafka → prepare → match).

What a person would see: the stories listed, a story's outlets and its canonical, one timeline dot per copy with
the canonical ringed, marks where the event log has merges and canonical changes; a URL typed in the search box
lands on its story; a hostile title shows as text and runs nothing. Each page is also saved as a screenshot at a
laptop's and a phone's width under out/screenshots/, for a person to look at.

The database is filled once for the module (``explorer_data``, about 15 s) and one ``newsdedup serve`` reads it
through the read-only role.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.browser.conftest import PHONE
from tests.integration.explorer_support import Explorer, ExplorerData, start_explorer, stop_explorer
from tests.unit.explorer_articles import HOSTILE_TITLE, WIRE_SOURCE

pytestmark = pytest.mark.integration

WIRE_OUTLETS = {WIRE_SOURCE, "riverside-post.example", "coastal-times.example"}


@pytest.fixture(scope="module")
def explorer(explorer_data: ExplorerData, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Explorer]:
    running = start_explorer(explorer_data.reader_url, tmp_path_factory.mktemp("serve"))
    try:
        yield running
    finally:
        stop_explorer(running)  # its exit code is the API tests' business


@pytest.fixture(autouse=True)
def nothing_ran(watched) -> Iterator[None]:
    """After every test: no dialog opened (an article's alert()) and no script failed on any page."""
    yield
    assert watched.dialogs == [], f"a script ran: {watched.dialogs}"
    assert watched.page_errors == [], watched.page_errors
    # The explorer's Content-Security-Policy forbids every script, so an injected one would be blocked
    # rather than run: the console's refusal is the evidence that one reached the page.
    assert not [e for e in watched.console_errors if "Content Security Policy" in e], watched.console_errors
    # Every stylesheet and link target loaded (Chromium's own request for /favicon.ico aside: there is none).
    assert [f for f in watched.failed_responses if not f.endswith("/favicon.ico")] == []


def timeline(page) -> dict:
    """What the story page's picture shows, read from the rendered SVG (positions in CSS pixels)."""
    return page.locator('[data-testid="timeline"] svg[data-testid="timeline-svg"]').evaluate("""svg => {
        const box = e => { const r = e.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2,
                                                                    w: r.width, h: r.height}; };
        return {
          svg: box(svg),
          dots: [...svg.querySelectorAll('.copy')].map(d => ({id: d.dataset.articleId, canonical:
                  d.classList.contains('canonical'), ...box(d), tip: d.querySelector('title').textContent})),
          marks: [...svg.querySelectorAll('.mark')].map(m => ({kind: m.dataset.kind, ...box(m.querySelector('line')),
                  pinned: m.dataset.pinned === 'true'})),
          lanes: [...svg.querySelectorAll('.lane')].map(l => l.dataset.outlet),
          labels: [...svg.querySelectorAll('.lane text')].map(t => t.textContent),
        };
    }""")


def members(page) -> list[dict]:
    return page.locator('[data-testid="member-row"]').evaluate_all("""rows => rows.map(r => ({
        id: r.dataset.articleId, canonical: r.dataset.canonical === 'true', text: r.innerText}))""")


def event_kinds(page) -> list[str]:
    return page.locator('[data-testid="event-row"]').evaluate_all("rows => rows.map(r => r.dataset.kind)")


def no_sideways_scroll_on_a_phone(page) -> None:
    """At a phone's width the page itself does not scroll sideways (wide tables scroll in their own box), and
    the timeline, where there is one, fits."""
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a {PHONE['width']} px phone"
    for svg in page.locator('svg[data-testid="timeline-svg"]').all():
        assert svg.evaluate("s => s.getBoundingClientRect().right") <= PHONE["width"]


def test_the_front_page_lists_the_stories(page, explorer, explorer_data, screenshot) -> None:
    page.goto(explorer.base_url + "/")
    rows = page.get_by_test_id("story-row")
    assert rows.count() > 0
    ids = rows.evaluate_all("rows => rows.map(r => r.dataset.storyId)")
    assert explorer_data.story_id in ids and explorer_data.merged_story_id in ids
    wire_row = page.locator(f'[data-testid="story-row"][data-story-id="{explorer_data.story_id}"]').first
    assert WIRE_SOURCE in wire_row.inner_text()  # the canonical outlet, once the wire original arrived
    screenshot("index")
    no_sideways_scroll_on_a_phone(page)


def test_a_story_page_shows_its_outlets_canonical_and_a_dot_per_copy(page, explorer, explorer_data,
                                                                     screenshot) -> None:
    page.goto(f"{explorer.base_url}/stories/{explorer_data.story_id}")
    rows = members(page)
    assert {row["id"] for row in rows} == {explorer_data.wire_article_id, *explorer_data.copy_article_ids}
    table = page.get_by_test_id("member-table").inner_text()
    assert all(outlet in table for outlet in WIRE_OUTLETS)
    (canonical_row,) = [row for row in rows if row["canonical"]]
    assert canonical_row["id"] == explorer_data.wire_article_id and "canonical" in canonical_row["text"]

    picture = timeline(page)
    assert sorted(dot["id"] for dot in picture["dots"]) == sorted(row["id"] for row in rows)
    assert [dot["id"] for dot in picture["dots"] if dot["canonical"]] == [explorer_data.wire_article_id]
    assert set(picture["lanes"]) == WIRE_OUTLETS
    assert picture["lanes"][0] == WIRE_SOURCE  # lanes by first publication: the original was first
    for dot in picture["dots"]:  # drawn, inside the picture, with a tooltip naming the outlet and the time
        assert dot["w"] > 0 and picture["svg"]["x"] - picture["svg"]["w"] / 2 <= dot["x"]
        assert dot["x"] <= picture["svg"]["x"] + picture["svg"]["w"] / 2
        assert "UTC" in dot["tip"]
    canonical_dot = next(dot for dot in picture["dots"] if dot["canonical"])
    others = [dot for dot in picture["dots"] if not dot["canonical"]]
    assert canonical_dot["w"] > max(dot["w"] for dot in others)  # the ring is larger than a copy's dot
    assert all(canonical_dot["x"] < dot["x"] for dot in others)  # published first: leftmost
    assert page.get_by_test_id("timeline").get_by_text("UTC").count() > 0

    # The wire original arrived after its copies, so the canonical changed: the log says so, and the picture
    # marks it at the new canonical's publication, on its dot.
    changes = event_kinds(page).count("canonical_changed")
    assert changes >= 1
    marks = [mark for mark in picture["marks"] if mark["kind"] == "canonical_changed"]
    assert len(marks) == changes
    assert any(abs(mark["x"] - canonical_dot["x"]) < 2 and not mark["pinned"] for mark in marks)
    screenshot("story-wire", part="timeline")
    no_sideways_scroll_on_a_phone(page)
    phone_picture = timeline(page)
    assert len(phone_picture["dots"]) == len(rows) and phone_picture["svg"]["w"] <= PHONE["width"]


def test_a_merged_story_shows_its_merge_on_the_timeline(page, explorer, explorer_data, screenshot) -> None:
    page.goto(f"{explorer.base_url}/stories/{explorer_data.merged_story_id}")
    rows = members(page)
    assert {row["id"] for row in rows} == set(explorer_data.merged_article_ids)
    assert "merged" in event_kinds(page)
    picture = timeline(page)
    assert sorted(dot["id"] for dot in picture["dots"]) == sorted(row["id"] for row in rows)
    merges = [mark for mark in picture["marks"] if mark["kind"] == "merged"]
    assert merges, "the event log has a merge, the timeline shows none"
    # The merge is placed where the round-up that caused it was published: the last copy.
    roundup = next(dot for dot in picture["dots"] if dot["id"] == explorer_data.merged_article_ids[2])
    assert any(abs(mark["x"] - roundup["x"]) < 2 for mark in merges)
    screenshot("story-merged", part="timeline")


def test_a_url_typed_in_the_search_box_lands_on_its_story(page, explorer, explorer_data, screenshot) -> None:
    page.goto(explorer.base_url + "/")
    box = page.get_by_test_id("search-box")
    box.fill(explorer_data.lookup_url)  # upper-case host and a utm_ parameter: normalised as ingest does
    box.press("Enter")
    page.wait_for_url(re.compile(rf"/stories/{explorer_data.story_id}"))
    assert page.locator(f'[data-testid="member-row"][data-article-id="{explorer_data.lookup_article_id}"]').count()
    assert page.get_by_test_id("timeline").is_visible()
    screenshot("search-url")


def test_title_words_in_the_search_box_list_the_story(page, explorer, explorer_data, screenshot) -> None:
    page.goto(explorer.base_url + "/")
    page.get_by_test_id("search-box").fill("Tollbridge strike")
    page.get_by_test_id("search-box").press("Enter")
    page.wait_for_url(re.compile(r"/search\?q="))
    rows = page.get_by_test_id("story-row")
    assert explorer_data.story_id in rows.evaluate_all("rows => rows.map(r => r.dataset.storyId)")
    screenshot("search-words")


def test_a_hostile_article_renders_as_text_and_runs_nothing(page, explorer, explorer_data, watched,
                                                            screenshot) -> None:
    pages = [f"/stories/{explorer_data.hostile_story_id}", "/", "/search?q=crane+collapse",
             f"/why?a={explorer_data.hostile_article_ids[0]}&b={explorer_data.hostile_article_ids[1]}"]
    for path in pages:
        # The HTML as served, before any parser or policy: the markup of the article arrives as text only.
        served = page.request.get(explorer.base_url + path).text()
        assert "<script" not in served.lower() and "<img" not in served.lower(), path
        assert "&lt;script&gt;alert(" in served, path
        page.goto(explorer.base_url + path)
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.evaluate("document.scripts.length") == 0, path  # the explorer itself has no script at all
        assert page.evaluate("document.querySelectorAll('[onerror], [onload], iframe, object, embed').length") == 0
        assert page.get_by_text('<script>alert("title")</script>', exact=False).count() > 0, path
    page.goto(f"{explorer.base_url}/stories/{explorer_data.hostile_story_id}")
    assert page.locator("h1").inner_text().startswith('<script>alert("title")</script>')
    picture = timeline(page)
    assert len(picture["dots"]) == 2 and all(HOSTILE_TITLE in dot["tip"] for dot in picture["dots"])
    assert watched.dialogs == []
    screenshot("story-hostile", part="timeline")
    no_sideways_scroll_on_a_phone(page)


def test_why_together_explains_a_pair(page, explorer, explorer_data, screenshot) -> None:
    page.goto(f"{explorer.base_url}/why?a={explorer_data.wire_article_id}&b={explorer_data.copy_article_ids[1]}")
    text = page.locator("main").inner_text()
    assert WIRE_SOURCE in text and "coastal-times.example" in text
    assert re.search(r"[Jj]accard", text) and re.search(r"0\.\d\d|1\.00", text)
    screenshot("why")
    no_sideways_scroll_on_a_phone(page)


@pytest.mark.parametrize("path", [
    "/stories/<script>alert(1)</script>",
    "/stories/s-000000000000000000000000",
    "/why?a=nothing&b=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
    "/search?q=https://never-seen.example/<script>alert(1)</script>",
])
def test_a_bad_or_unknown_address_gets_a_readable_4xx_page(page, explorer, watched, path) -> None:
    response = page.goto(explorer.base_url + path)
    assert 400 <= response.status < 500, f"{path}: {response.status}"
    assert page.locator("h1").inner_text().strip(), "an empty page"
    message = page.locator("main").inner_text()
    assert len(message) > 20 and "Traceback" not in message
    assert page.evaluate("document.scripts.length") == 0
    assert page.get_by_test_id("search-box").is_visible()  # the way on is still there
    watched.failed_responses.clear()  # this test's own 4xx, checked above
