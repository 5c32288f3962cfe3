"""The timeline picture as Chromium lays it out, at a phone's and a laptop's width: the claims of
consumers/explorer/timeline.py that only a renderer can check (text keeps its size, labels do not run into
each other, everything stays inside the picture), on stories the pipeline fixture does not have: hundreds of
copies over dozens of outlets, a span of weeks, one copy. No services needed; a real Chromium is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumers.explorer.timeline import MAX_LANES, TimelineCopy, TimelineMark, render_timeline
from tests.browser.conftest import LAPTOP, PHONE

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
PAGE = ("<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width,initial-scale=1'>"
        "<body style='margin:0;padding:0 16px;font:16px system-ui'><figure style='margin:0'>{}</figure>")


def crowded() -> tuple[list[TimelineCopy], list[TimelineMark]]:
    copies = [TimelineCopy(f"a{i:03d}", f"Regional Outlet {i % 45:02d} Evening Gazette", f"Copy {i} <b>of</b> it",
                           T0 + timedelta(minutes=11 * i), i == 30) for i in range(400)]
    marks = [TimelineMark("merged" if m % 3 else "canonical_changed", T0 + timedelta(minutes=m * 150),
                          f"event {m}: merged with another story") for m in range(20)]
    return copies, marks


def weeks() -> tuple[list[TimelineCopy], list[TimelineMark]]:
    return ([TimelineCopy(f"w{i}", f"Outlet {i % 4}", "t", T0 + timedelta(hours=13 * i), i == 0) for i in range(40)],
            [TimelineMark("merged", T0 + timedelta(days=9), "merged")])


def single() -> tuple[list[TimelineCopy], list[TimelineMark]]:
    return [TimelineCopy("only", "Harbour Press", "t", T0, True)], []


LAYOUT = """svg => {
  const r = e => { const b = e.getBoundingClientRect(); return {l: b.left, r: b.right, t: b.top, b: b.bottom}; };
  return {
    svg: r(svg),
    dots: [...svg.querySelectorAll('.copy')].map(r),
    lanes: [...svg.querySelectorAll('.lane text')].map(r),
    ticks: [...svg.querySelectorAll('.tick text')].map(r),
    fonts: [...svg.querySelectorAll('text')].map(t => parseFloat(getComputedStyle(t).fontSize)),
    scroll: document.documentElement.scrollWidth,
  };
}"""


def apart(boxes: list[dict], gap: float = 2) -> bool:
    """No two boxes overlap (with a little air between them)."""
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if a["l"] < b["r"] + gap and b["l"] < a["r"] + gap and a["t"] < b["b"] and b["t"] < a["b"]:
                return False
    return True


@pytest.mark.parametrize("story", [crowded, weeks, single])
@pytest.mark.parametrize("size", [PHONE, LAPTOP], ids=["phone", "laptop"])
def test_the_timeline_fits_and_stays_legible(page, screenshot, story, size) -> None:
    copies, marks = story()
    page.set_viewport_size(size)
    page.set_content(PAGE.format(render_timeline(copies, marks)))
    layout = page.locator('svg[data-testid="timeline-svg"]').evaluate(LAYOUT)
    svg = layout["svg"]
    assert layout["scroll"] <= size["width"], "the picture makes the page scroll sideways"
    assert len(layout["dots"]) == len(copies)
    for dot in layout["dots"]:  # every dot whole inside the picture
        assert svg["l"] <= dot["l"] and dot["r"] <= svg["r"] and svg["t"] <= dot["t"] and dot["b"] <= svg["b"]
    assert len(layout["lanes"]) == min(MAX_LANES, len({c.outlet for c in copies}))
    assert apart(layout["lanes"]), "lane labels overlap"
    assert apart(layout["ticks"], gap=6), "tick labels run into each other"
    assert all(svg["l"] <= t["l"] and t["r"] <= svg["r"] for t in layout["ticks"]), "a tick label is cut off"
    assert min(layout["fonts"]) >= 11, "text shrank with the width"  # px, as drawn: the same on a phone
    if size is PHONE:
        screenshot(f"timeline-{story.__name__}")
