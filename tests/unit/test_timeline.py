"""consumers.explorer.timeline: the story page's SVG, parsed as XML so that structure, not substrings, is checked."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from consumers.explorer.timeline import (
    MAX_LANES,
    MAX_LISTED_MARKS,
    MAX_TICKS,
    TimelineCopy,
    TimelineMark,
    render_timeline,
)

SVG = "{http://www.w3.org/2000/svg}"
NOON = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HOSTILE = "<script>window.__pwned=1</script>\" onload=\"alert('x')\" &amp; é"


def copy(article_id: str, outlet: str, minutes: float = 0, *, canonical: bool = False,
         title: str = "A wire story", at: datetime | None = NOON) -> TimelineCopy:
    published = None if at is None else at + timedelta(minutes=minutes)
    return TimelineCopy(article_id, outlet, title, published, canonical)


def parse(markup: Markup) -> ET.Element:
    assert isinstance(markup, Markup)
    root = ET.fromstring(str(markup))  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg"
    return root


def classes(element: ET.Element) -> set[str]:
    return set(element.get("class", "").split())


def having(root: ET.Element, cls: str) -> list[ET.Element]:
    return [e for e in root.iter() if cls in classes(e)]


def own_text(element: ET.Element) -> str:
    """The text an element shows, without its <title> tooltip."""
    return "".join(t for child in [element] for t in _texts(child))


def _texts(element: ET.Element) -> list[str]:
    if element.tag == f"{SVG}title":
        return [element.tail or ""]
    parts = [element.text or ""]
    for child in element:
        parts += _texts(child)
    parts.append(element.tail or "")
    return parts


def x_percent(element: ET.Element, attribute: str = "cx") -> float:
    value = element.get(attribute, "")
    assert value.endswith("%"), value
    return float(value[:-1])


def lane_of(root: ET.Element, dot: ET.Element) -> str:
    """The outlet of the lane a dot sits in: lanes are rows, the lane label sits just above its dots."""
    lanes = having(root, "lane")
    tops = [(int(lane.find(f"{SVG}text").get("y")), lane.get("data-outlet")) for lane in lanes]
    y = float(dot.get("cy"))
    above = [(top, outlet) for top, outlet in tops if top < y]
    return max(above)[1]


def test_the_svg_has_the_agreed_hooks_one_dot_per_copy_and_one_lane_per_outlet() -> None:
    copies = [
        copy("a1", "Harbour Press", 0, canonical=True),
        copy("a2", "Northfield Daily", 12),
        copy("a3", "Harbour Press", 30),
        copy("a4", "Bayline Wire", 45),
    ]
    root = parse(render_timeline(copies, []))
    assert root.get("data-testid") == "timeline-svg"
    assert root.get("width") == "100%"
    # Nothing a strict Content-Security-Policy would block: no script, no event handler, no inline style.
    assert not [e for e in root.iter() if e.tag.endswith("script") or e.tag.endswith("style")]
    assert not [a for e in root.iter() for a in e.attrib if a == "style" or a.startswith("on")]
    dots = having(root, "copy")
    assert sorted(d.get("data-article-id") for d in dots) == ["a1", "a2", "a3", "a4"]
    assert [d.get("data-article-id") for d in having(root, "canonical")] == ["a1"]
    # Lanes in the order of each outlet's first publication, each dot in its outlet's lane.
    assert [lane.get("data-outlet") for lane in having(root, "lane")] == [
        "Harbour Press", "Northfield Daily", "Bayline Wire"]
    outlet_of = {c.article_id: c.outlet for c in copies}
    for dot in dots:
        assert lane_of(root, dot) == outlet_of[dot.get("data-article-id")]
    # Time runs left to right.
    x = {d.get("data-article-id"): x_percent(d) for d in dots}
    assert x["a1"] < x["a2"] < x["a3"] < x["a4"]
    # The canonical is drawn bigger than a copy, and the legend names both.
    assert float(having(root, "canonical")[0].get("r")) > float(dots[0].get("r"))
    legend = own_text(having(root, "legend")[0])
    assert "copy" in legend and "canonical" in legend


def test_every_dot_has_a_tooltip_with_outlet_title_and_utc_time() -> None:
    root = parse(render_timeline([copy("a1", "Harbour Press", 5, title="Storm hits coast")], []))
    (dot,) = having(root, "copy")
    tip = dot.find(f"{SVG}title").text
    assert "Harbour Press" in tip and "Storm hits coast" in tip and "2026-12-06 12:05:00 UTC" in tip


def test_marks_are_vertical_lines_at_their_time_with_their_labels_listed() -> None:
    copies = [copy("a1", "Harbour Press", 0, canonical=True), copy("a2", "Bayline Wire", 60)]
    marks = [
        TimelineMark("merged", NOON + timedelta(minutes=20), "merged story 3f9c into this one"),
        TimelineMark("canonical_changed", NOON + timedelta(minutes=40), "earlier copy from Bayline Wire"),
        TimelineMark("joined", NOON + timedelta(minutes=50), "a2 joined"),
    ]
    root = parse(render_timeline(copies, marks))
    merged, changed = having(root, "merged"), having(root, "canonical_changed")
    assert len(merged) == 1 and len(changed) == 1
    assert classes(merged[0]) == {"mark", "merged"} and classes(changed[0]) == {"mark", "canonical_changed"}
    assert len(having(root, "mark")) == 3  # other kinds are drawn too, in a neutral colour
    lines = {m.get("data-kind"): m.find(f"{SVG}line") for m in having(root, "mark")}
    for line in lines.values():
        assert line.get("x1") == line.get("x2")  # vertical
        assert float(line.get("y2")) > float(line.get("y1"))
    dots = {d.get("data-article-id"): x_percent(d) for d in having(root, "copy")}
    merged_x, changed_x = x_percent(lines["merged"], "x1"), x_percent(lines["canonical_changed"], "x1")
    assert dots["a1"] < merged_x < changed_x < dots["a2"]
    assert merged_x == pytest.approx(dots["a1"] + (dots["a2"] - dots["a1"]) / 3, abs=0.01)
    listed = [own_text(t) for t in having(root, "mark-label")]
    assert listed[0] == "1 merged, 12:20: merged story 3f9c into this one"
    assert listed[1].startswith("2 canonical changed, 12:40: earlier copy from")
    assert having(root, "mark-label")[1].find(f"{SVG}title").text.startswith("earlier copy from Bayline Wire")


def test_the_legend_names_the_kinds_of_mark_the_picture_has_and_no_other() -> None:
    copies = [copy("a1", "Harbour Press", canonical=True), copy("a2", "Bayline Wire", 30)]
    both = parse(render_timeline(copies, [TimelineMark("merged", NOON, "m"), TimelineMark("joined", NOON, "j"),
                                          TimelineMark("canonical_changed", NOON, "c")]))
    assert own_text(having(both, "legend")[0]) == "copycanonicalmergecanonical changeother event"
    changes = parse(render_timeline(copies, [TimelineMark("canonical_changed", NOON, "c")]))
    assert own_text(having(changes, "legend")[0]) == "copycanonicalcanonical change"


def test_no_marks_draws_no_mark_and_no_mark_legend() -> None:
    root = parse(render_timeline([copy("a1", "Harbour Press", canonical=True), copy("a2", "Bayline Wire", 3)], []))
    assert having(root, "mark") == [] and having(root, "mark-label") == []
    assert "merge" not in own_text(having(root, "legend")[0])


def test_outlet_names_titles_ids_and_labels_are_escaped_text() -> None:
    copies = [copy(HOSTILE, HOSTILE, 0, canonical=True, title=HOSTILE), copy("a2", "Bayline Wire", 9, title=HOSTILE)]
    marks = [TimelineMark(f"merged{HOSTILE}", NOON + timedelta(minutes=3), HOSTILE)]
    markup = str(render_timeline(copies, marks))
    assert "<script" not in markup and "onload=\"" not in markup
    root = parse(Markup(markup))  # still well-formed: nothing broke out of an attribute or element
    assert not [e for e in root.iter() if e.tag.endswith("script") or any(a.startswith("on") for a in e.attrib)]
    canonical = having(root, "canonical")[0]
    assert canonical.get("data-article-id") == HOSTILE  # the parser gets back exactly the hostile string
    assert HOSTILE in canonical.find(f"{SVG}title").text
    assert having(root, "lane")[0].get("data-outlet") == HOSTILE
    assert own_text(having(root, "lane")[0]).startswith("<script>window.__pwned=1</script>")
    # A hostile kind cannot add classes or attributes: it becomes one harmless token.
    (mark,) = having(root, "mark")
    assert len(classes(mark)) == 2 and re.fullmatch(r"[a-z0-9_-]+", (classes(mark) - {"mark"}).pop())
    assert mark.get("data-kind") == f"merged{HOSTILE}"


def test_one_copy_gets_an_axis_around_it() -> None:
    root = parse(render_timeline([copy("solo", "Harbour Press", canonical=True)], []))
    (dot,) = having(root, "copy")
    assert 40 < x_percent(dot) < 60
    assert 2 <= len(having(root, "tick")) <= MAX_TICKS
    assert "canonical" in classes(dot)


def test_copies_at_the_same_instant_share_an_x_in_their_own_lanes() -> None:
    copies = [copy(f"a{i}", f"Outlet {i}", 0, canonical=i == 2) for i in range(4)]
    root = parse(render_timeline(copies, []))
    dots = having(root, "copy")
    assert len({d.get("cx") for d in dots}) == 1
    assert len({d.get("cy") for d in dots}) == 4
    assert len(having(root, "tick")) >= 2


def test_naive_times_are_utc_and_other_zones_are_converted() -> None:
    paris = timezone(timedelta(hours=1))
    copies = [
        TimelineCopy("naive", "A", "t", datetime(2026, 12, 6, 12, 0), True),
        TimelineCopy("paris", "B", "t", datetime(2026, 12, 6, 13, 0, tzinfo=paris), False),  # 12:00 UTC
        TimelineCopy("later", "C", "t", datetime(2026, 12, 6, 12, 30, tzinfo=UTC), False),
    ]
    root = parse(render_timeline(copies, []))
    x = {d.get("data-article-id"): x_percent(d) for d in having(root, "copy")}
    assert x["naive"] == x["paris"] < x["later"]
    assert "12:00:00 UTC" in having(root, "canonical")[0].find(f"{SVG}title").text


def test_copies_and_marks_without_a_time_are_drawn_right_of_the_axis_and_said_so() -> None:
    copies = [copy("dated", "A", 0, canonical=True), copy("undated", "B", at=None), copy("dated2", "B", 30)]
    marks = [TimelineMark("merged", None, "no time known")]
    root = parse(render_timeline(copies, marks))
    x = {d.get("data-article-id"): x_percent(d) for d in having(root, "copy")}
    assert x["undated"] > x["dated2"] > x["dated"]
    assert "time unknown" in having(root, "undated")[0].find(f"{SVG}title").text
    assert "1 without a publication time" in own_text(having(root, "undated-note")[0])
    assert having(root, "merged")[0].get("data-pinned") == "true"


def test_nothing_with_a_time_still_renders() -> None:
    root = parse(render_timeline([copy("u", "A", at=None, canonical=True)], [TimelineMark("merged", None, "?")]))
    assert len(having(root, "copy")) == 1 and having(root, "tick") == []


def test_no_copies_renders_a_note() -> None:
    root = parse(render_timeline([], []))
    assert root.get("data-testid") == "timeline-svg" and having(root, "copy") == []


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (timedelta(minutes=25), r"\d\d:\d\d"),  # minutes: times of day
        (timedelta(hours=9), r"\d\d:00"),  # hours
        (timedelta(days=3), r"(\d\d:00|\d{1,2} [A-Z][a-z]{2})"),  # days: hours, dates at midnight
        (timedelta(days=20), r"\d{1,2} [A-Z][a-z]{2}"),  # weeks: dates
        (timedelta(days=400), r"[A-Z][a-z]{2} \d{4}"),  # months: month and year
        (timedelta(days=3000), r"\d{4}"),  # years
    ],
)
def test_ticks_use_units_that_fit_the_span(span: timedelta, expected: str) -> None:
    copies = [copy("first", "A", 0, canonical=True), copy("last", "B", span / timedelta(minutes=1))]
    root = parse(render_timeline(copies, []))
    ticks = having(root, "tick")
    assert 2 <= len(ticks) <= MAX_TICKS, [own_text(t) for t in ticks]
    at = [datetime.fromisoformat(t.get("data-at")) for t in ticks]
    assert at == sorted(at) and all(NOON <= moment <= NOON + span for moment in at)
    for tick in ticks:
        assert re.fullmatch(expected, own_text(tick).strip()), own_text(tick)
    # Ticks sit on the axis where their time falls, like the dots.
    first, last = (x_percent(d) for d in sorted(having(root, "copy"), key=lambda d: d.get("data-article-id")))
    for moment, tick in zip(at, ticks, strict=True):
        share = (moment - NOON) / span
        assert x_percent(tick.find(f"{SVG}line"), "x1") == pytest.approx(first + (last - first) * share, abs=0.01)
    assert "UTC" in own_text(having(root, "axis-caption")[0])


def test_ticks_are_round_utc_values() -> None:
    copies = [copy("a", "A", 7, canonical=True), copy("b", "B", 7 + 170)]  # 12:07 to 14:57
    ticks = having(parse(render_timeline(copies, [])), "tick")
    assert [own_text(t).strip() for t in ticks] == ["12:30", "13:00", "13:30", "14:00", "14:30"]


def test_a_mark_long_after_the_copies_is_pinned_right_of_the_axis_not_squashing_it() -> None:
    copies = [copy("a", "A", 0, canonical=True), copy("b", "B", 120)]
    marks = [TimelineMark("merged", NOON + timedelta(days=300), "processed much later")]
    root = parse(render_timeline(copies, marks))
    x = {d.get("data-article-id"): x_percent(d) for d in having(root, "copy")}
    assert x["b"] - x["a"] > 80  # the copies keep the width
    mark = having(root, "merged")[0]
    assert mark.get("data-pinned") == "true" and x_percent(mark.find(f"{SVG}line"), "x1") > x["b"]
    assert "after the axis" in own_text(having(root, "mark-label")[0])


def test_a_mark_shortly_after_the_copies_stretches_the_axis() -> None:
    copies = [copy("a", "A", 0, canonical=True), copy("b", "B", 60)]
    root = parse(render_timeline(copies, [TimelineMark("merged", NOON + timedelta(minutes=90), "soon after")]))
    mark = having(root, "merged")[0]
    assert mark.get("data-pinned") is None
    x = {d.get("data-article-id"): x_percent(d) for d in having(root, "copy")}
    assert x["b"] < x_percent(mark.find(f"{SVG}line"), "x1")


def test_dozens_of_outlets_are_capped_and_the_canonical_keeps_its_lane() -> None:
    outlets = 45
    copies = [copy(f"a{i}", f"Outlet {i % outlets:02d}", i, canonical=i == 44) for i in range(400)]
    marks = [TimelineMark("merged", NOON + timedelta(minutes=m), f"m{m}") for m in range(0, 400, 20)]
    root = parse(render_timeline(copies, marks))
    lanes = having(root, "lane")
    assert len(lanes) == MAX_LANES
    assert "Outlet 44" in [lane.get("data-outlet") for lane in lanes]  # published last, but the canonical's
    other = lanes[-1]
    assert classes(other) == {"lane", "other"} and own_text(other).startswith(f"+{outlets - MAX_LANES + 1} other")
    assert len(having(root, "copy")) == 400  # no copy is dropped, only lanes are merged
    assert len(having(root, "mark")) == 20
    assert len(having(root, "mark-label")) == MAX_LISTED_MARKS
    assert f"and {20 - MAX_LISTED_MARKS} more" in own_text(root)


def test_long_outlet_names_are_shortened_in_the_label_but_whole_in_the_tooltip() -> None:
    name = "The Extraordinarily Long-Named Regional Evening Chronicle and Advertiser"
    root = parse(render_timeline([copy("a", name, canonical=True)], []))
    lane = having(root, "lane")[0]
    assert own_text(lane).startswith(name[:30]) and "…" in own_text(lane)
    assert lane.find(f"{SVG}title").text == name


_texts_st = st.text(max_size=60)
_times_st = st.none() | st.datetimes(timezones=st.none() | st.just(UTC) | st.just(timezone(timedelta(hours=-11))))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(_texts_st, _texts_st, _times_st), min_size=1, max_size=40),
    st.lists(st.tuples(st.sampled_from(["merged", "canonical_changed", "joined"]), _times_st, _texts_st), max_size=8),
)
def test_any_copies_and_marks_give_well_formed_svg_with_every_copy_drawn(raw_copies: list, raw_marks: list) -> None:
    copies = [TimelineCopy(f"id{i}", outlet, title, at, i == 0) for i, (outlet, title, at) in enumerate(raw_copies)]
    marks = [TimelineMark(kind, at, label) for kind, at, label in raw_marks]
    root = parse(render_timeline(copies, marks))
    assert sorted(d.get("data-article-id") for d in having(root, "copy")) == sorted(c.article_id for c in copies)
    assert len(having(root, "mark")) == len(marks)
    assert len(having(root, "tick")) <= MAX_TICKS
    for dot in having(root, "copy"):
        assert 0 <= x_percent(dot) <= 100
