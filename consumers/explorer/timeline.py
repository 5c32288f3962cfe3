"""The story page's picture: how a story spread over outlets and time, as inline SVG (no JavaScript).

``render_timeline(copies, marks)`` is a pure function: values in, markup out. One lane per outlet (ordered by
its first publication), one dot per stored copy at its ``published_at``, the canonical as a ringed dot, and a
vertical line per event mark (merges, canonical changes), numbered and listed under the axis. All times UTC.

Layout, and why it is not a scaled viewBox: a viewBox scales text with the picture, so labels readable on a
laptop shrink to 5 px on a 390 px phone. Here the width is 100% of the page, every x is a percentage of it, and
every y and font size is in px: text keeps its size and only the time axis stretches. Tick, lane and mark labels
are therefore kept short enough for a phone (about 330 px of plot).

Scale: at most ``MAX_LANES`` lanes. A story with more outlets keeps its first ``MAX_LANES - 1`` outlets by
first publication (always including the canonical's) and draws every other outlet's copies in one last lane,
"+N other outlets", whose dots still name their outlet in their tooltip. Dots are translucent, so a burst of
copies at one instant reads as a darker dot. Marks beyond ``MAX_LISTED_MARKS`` are drawn but not listed.
The axis covers the copies (at least ``MIN_SPAN``) and stretches to a mark only up to ``MARK_STRETCH`` times that:
a mark further out is pinned just outside the axis, dotted, and its listed line says "before/after the axis",
so that one late event does not squeeze every copy into a corner. Copies without a time sit right of the axis.

Everything from an article (outlet, title, id, event labels) is hostile: it reaches the SVG only through
``markupsafe.escape`` (after characters XML forbids become U+FFFD, so the SVG also parses as XML). No script,
no event handler, no inline style: a strict Content-Security-Policy draws it unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import Markup, escape

MERGED = "merged"
CANONICAL_CHANGED = "canonical_changed"

MAX_LANES = 20
MAX_LISTED_MARKS = 12
MAX_TICKS = 5  # tick labels (up to "30 Dec", "13:00") need about 60 px each on a 330 px phone plot
LANE_LABEL_CHARS = 40
# A listed event's line: whole on a laptop; a phone (about 60 characters) clips it at the picture's edge, and its
# tooltip has it all. Clipping, not an ellipsis at 60, because the width is unknown here.
MARK_LABEL_CHARS = 160

# Vertical layout in px.
LEGEND_HEIGHT = 22
BADGE_ROW_HEIGHT = 16
BADGE_ROWS = 3  # badges of marks close in time alternate between rows instead of covering each other
LANE_HEIGHT = 32  # a label row above the lane's line, apart from the largest dot
AXIS_HEIGHT = 40  # ticks, their labels and the UTC caption
UNDATED_NOTE_HEIGHT = 14
LISTED_MARK_HEIGHT = 16

# Horizontal: the time axis runs from X_START% to X_END% of the width, so the edge dots and labels fit.
X_START = 4.0
X_END = 96.0
X_UNKNOWN = 98.0  # right of the axis: copies without a publication time, and events after the axis
X_BEFORE = 2.0  # left of the axis: events before it

# A story published within minutes still gets an axis of this width around it: its copies then sit close together,
# which is the truth at this scale (tooltips give the seconds), and the ticks read as plain times of day.
MIN_SPAN = timedelta(minutes=10)
MARK_STRETCH = 2.0  # the axis may grow to this many times the copies' span to show a mark; beyond, it is pinned

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
COLOUR_COPY = "#2b6cb0"
COLOUR_CANONICAL = "#c05621"
COLOUR_MARK = {MERGED: "#6b46c1", CANONICAL_CHANGED: "#c05621"}
COLOUR_OTHER_MARK = "#718096"
COLOUR_GRID = "#e2e8f0"
COLOUR_BAND = "#f4f6f9"  # every other lane, so that a label reads with its line
COLOUR_TEXT = "#1a202c"
COLOUR_MUTED = "#4a5568"


@dataclass(frozen=True)
class TimelineCopy:
    """One stored copy of the story."""

    article_id: str
    outlet: str
    title: str
    published_at: datetime | None  # naive is read as UTC; None is drawn right of the axis, "time unknown"
    canonical: bool


@dataclass(frozen=True)
class TimelineMark:
    """An event on the time axis."""

    kind: str  # "merged" | "canonical_changed" | any other event kind
    at: datetime | None
    label: str


def render_timeline(copies: Sequence[TimelineCopy], marks: Sequence[TimelineMark]) -> Markup:
    """The SVG of one story's copies by outlet over time, with its event marks; safe to put in a page as is."""
    copies = list(copies)
    if not copies:
        return _svg(
            LEGEND_HEIGHT + 8,
            [f'<text x="0" y="16" font-size="12" fill="{COLOUR_MUTED}">No copies to draw.</text>'],
            "Timeline: no copies",
        )
    times = [_utc(copy.published_at) for copy in copies]
    mark_times = [_utc(mark.at) for mark in marks]
    axis = _Axis.fit([t for t in times if t is not None], [t for t in mark_times if t is not None])
    lanes = _lanes(copies, times)
    listed = [(n, mark, at) for n, (mark, at) in enumerate(zip(marks, mark_times, strict=True), 1)]

    undated = sum(t is None for t in times)
    top = LEGEND_HEIGHT + BADGE_ROW_HEIGHT * min(BADGE_ROWS, len(marks))
    lanes_bottom = top + LANE_HEIGHT * len(lanes)
    axis_bottom = lanes_bottom + AXIS_HEIGHT + (UNDATED_NOTE_HEIGHT if undated else 0)
    shown_marks = min(len(listed), MAX_LISTED_MARKS) + (1 if len(listed) > MAX_LISTED_MARKS else 0)
    height = axis_bottom + LISTED_MARK_HEIGHT * shown_marks + (6 if marks else 0)

    # Painted back to front: bands, grid, event lines, then labels and dots over them.
    parts: list[str] = [_legend({mark.kind for mark in marks})]
    parts += [
        f'<rect x="0" y="{top + LANE_HEIGHT * index}" width="100%" height="{LANE_HEIGHT}" fill="{COLOUR_BAND}"/>'
        for index in range(0, len(lanes), 2)
    ]
    parts += _axis(axis, top, lanes_bottom, undated)
    parts += _marks(listed, axis, LEGEND_HEIGHT, lanes_bottom)
    for index, lane in enumerate(lanes):
        parts += _lane(lane, top + LANE_HEIGHT * index, axis, COLOUR_BAND if index % 2 == 0 else "#fff")
    parts += _mark_list(listed, axis, axis_bottom)
    summary = (
        f"Timeline: {len(copies)} {'copy' if len(copies) == 1 else 'copies'} in "
        f"{sum(len(lane.outlets) for lane in lanes)} outlets, {len(marks)} events; times in UTC"
    )
    return _svg(height, parts, summary)


# --- time --------------------------------------------------------------------------------------------------


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # the store keeps UTC; a naive value from SQLite is UTC without its zone
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# Tick steps, each with the format of its labels: the first step giving at most MAX_TICKS ticks wins.
_STEPS: list[tuple[timedelta, str]] = [
    *((timedelta(minutes=m), "%H:%M") for m in (1, 2, 5, 10, 15, 30)),
    *((timedelta(hours=h), "%H:%M") for h in (1, 2, 3, 6, 12)),
    *((timedelta(days=d), "%d %b") for d in (1, 2, 7, 14)),
]
_MONTH_STEPS = (1, 2, 3, 6, *(12 * years for years in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)))


@dataclass(frozen=True)
class _Axis:
    start: datetime
    end: datetime

    @classmethod
    def fit(cls, copy_times: list[datetime], mark_times: list[datetime]) -> _Axis:
        known = copy_times or mark_times
        if not known:  # nothing has a time: an axis of one minute around the epoch would be a lie; draw none
            return cls(datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC))
        start, end = min(known), max(known)
        if end - start < MIN_SPAN:
            middle = start + (end - start) / 2
            start, end = _shift(middle, -MIN_SPAN / 2), _shift(middle, MIN_SPAN / 2)
        # Stretch to the marks only while the copies keep most of the width: the event log's times are when
        # the matcher saw an article, which can be days after articles published long ago.
        limit = (end - start) * MARK_STRETCH
        wide_start = min([start, *(t for t in mark_times if end - t <= limit)])
        wide_end = max([end, *(t for t in mark_times if t - wide_start <= limit)])
        return cls(wide_start, wide_end)

    @property
    def empty(self) -> bool:
        return self.start == self.end

    def x(self, moment: datetime) -> float:
        """Percent of the width; moments off the axis are pinned to its ends (callers say so)."""
        if self.empty:
            return (X_START + X_END) / 2
        share = (moment - self.start) / (self.end - self.start)
        return X_START + (X_END - X_START) * min(1.0, max(0.0, share))

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment <= self.end

    def ticks(self) -> list[tuple[datetime, str]]:
        if self.empty:
            return []
        span = self.end - self.start
        for step, fmt in _STEPS:
            if span // step > MAX_TICKS:  # at least this many ticks: minutes over years would be millions
                continue
            moments = list(self._every(step))
            if len(moments) <= MAX_TICKS:
                return [(t, _tick_label(t, fmt)) for t in moments]
        for months in _MONTH_STEPS:  # up to millennia: a scraped date can hold any year
            if span.days // (31 * months) > MAX_TICKS:
                continue
            moments = list(self._every_month(months))
            if len(moments) <= MAX_TICKS:
                return [(t, t.strftime("%Y" if months >= 12 else "%b %Y")) for t in moments]
        return []

    def _every(self, step: timedelta) -> Iterable[datetime]:
        # Ticks on round UTC values: whole steps since midnight (weeks since a Monday).
        anchor = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
        if step >= timedelta(days=7):
            anchor -= timedelta(days=anchor.weekday())
        moment = anchor + ((self.start - anchor) // step) * step
        if moment < self.start:
            moment += step
        while moment <= self.end:
            yield moment
            if self.end - moment < step:  # also keeps the last step from passing datetime.max
                return
            moment += step

    def _every_month(self, months: int) -> Iterable[datetime]:
        index = self.start.year * 12 + self.start.month - 1
        index += -index % months
        while index // 12 <= datetime.max.year:
            moment = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
            if moment > self.end:
                return
            if moment >= self.start:
                yield moment
            index += months


def _shift(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:  # a hostile date at the end of datetime's range
        return datetime.max.replace(tzinfo=UTC) if delta > timedelta(0) else datetime.min.replace(tzinfo=UTC)


def _tick_label(moment: datetime, fmt: str) -> str:
    # Times of day, and the date alone at midnight, where the day changes; the caption gives the first date.
    if fmt == "%d %b" or (moment.hour == 0 and moment.minute == 0):
        return f"{moment.day} {moment:%b}"
    return moment.strftime(fmt)


def _when(moment: datetime | None) -> str:
    return "time unknown" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S} UTC"


# --- lanes -------------------------------------------------------------------------------------------------


@dataclass
class _Lane:
    label: str
    outlets: list[str]
    copies: list[tuple[TimelineCopy, datetime | None]]
    other: bool = False


def _lanes(copies: list[TimelineCopy], times: list[datetime | None]) -> list[_Lane]:
    by_outlet: dict[str, list[tuple[TimelineCopy, datetime | None]]] = {}
    for copy, moment in zip(copies, times, strict=True):
        by_outlet.setdefault(copy.outlet, []).append((copy, moment))
    never = datetime.max.replace(tzinfo=UTC)

    def first(outlet: str) -> tuple[datetime, str]:
        known = [moment for _, moment in by_outlet[outlet] if moment is not None]
        return (min(known) if known else never, outlet)

    order = sorted(by_outlet, key=first)
    if len(order) > MAX_LANES:
        kept = order[: MAX_LANES - 1]
        canonical = next((c.outlet for c in copies if c.canonical), None)
        if canonical is not None and canonical not in kept:
            kept[-1] = canonical
        rest = [outlet for outlet in order if outlet not in kept]
        order = kept
    else:
        rest = []
    lanes = [_Lane(outlet, [outlet], by_outlet[outlet]) for outlet in order]
    if rest:
        members = [pair for outlet in rest for pair in by_outlet[outlet]]
        lanes.append(_Lane(f"+{len(rest)} other outlets", rest, members, other=True))
    return lanes


def _lane(lane: _Lane, y: int, axis: _Axis, background: str) -> list[str]:
    count = len(lane.copies)
    name = _shorten(lane.label, LANE_LABEL_CHARS)
    label_title = ", ".join(lane.outlets) if lane.other else lane.label
    line_y = y + LANE_HEIGHT - 8
    # Event lines are drawn first; a patch of the lane's colour under the label (its width estimated at 7 px a
    # character of 12 px text, wide rather than short) and a halo around the glyphs keep the label readable.
    patch = 7 * (len(name) + len(str(count)) + 3)
    parts = [
        f'<g class="{"lane other" if lane.other else "lane"}" data-outlet="{_escape(lane.label)}">'
        f"<title>{_escape(_shorten(label_title, 2000))}</title>"
        f'<rect x="{X_START}%" y="{y + 1}" width="{patch}" height="14" fill="{background}" fill-opacity="0.85"/>'
        f'<text x="{X_START}%" y="{y + 12}" font-size="12" fill="{COLOUR_TEXT}" stroke="{background}"'
        f' stroke-width="3" paint-order="stroke">{_escape(name)}'
        f'<tspan fill="{COLOUR_MUTED}"> · {count}</tspan></text></g>',
        f'<line x1="{X_START}%" x2="{X_END}%" y1="{line_y}" y2="{line_y}" stroke="{COLOUR_GRID}"/>',
    ]
    # The canonical last, so that no copy covers its ring.
    for copy, moment in sorted(lane.copies, key=lambda pair: pair[0].canonical):
        x = X_UNKNOWN if moment is None else axis.x(moment)
        tip = f"{copy.outlet} — {copy.title} — {_when(moment)}" + (" (canonical)" if copy.canonical else "")
        title = f"<title>{_escape(_shorten(tip, 600))}</title>"
        article = _escape(copy.article_id)
        if copy.canonical:
            parts.append(
                f'<circle cx="{x:.3f}%" cy="{line_y}" r="8" fill="{COLOUR_CANONICAL}" fill-opacity="0.2"/>'
                f'<circle class="copy canonical" data-article-id="{article}" cx="{x:.3f}%" cy="{line_y}" r="6"'
                f' fill="#fff" stroke="{COLOUR_CANONICAL}" stroke-width="3">{title}</circle>'
            )
        elif moment is None:
            parts.append(
                f'<circle class="copy undated" data-article-id="{article}" cx="{x:.3f}%" cy="{line_y}" r="4"'
                f' fill="#fff" stroke="{COLOUR_COPY}" stroke-width="1.5">{title}</circle>'
            )
        else:
            parts.append(
                f'<circle class="copy" data-article-id="{article}" cx="{x:.3f}%" cy="{line_y}" r="4.5"'
                f' fill="{COLOUR_COPY}" fill-opacity="0.7">{title}</circle>'
            )
    return parts


# --- marks -------------------------------------------------------------------------------------------------


def _kind_class(kind: str) -> str:
    # The kind becomes a class token: keep it one harmless token whatever the caller passes.
    token = re.sub(r"[^a-z0-9_-]+", "_", kind.lower())[:32]
    return token or "event"


def _mark_colour(kind: str) -> str:
    return COLOUR_MARK.get(kind, COLOUR_OTHER_MARK)


def _dash(kind: str) -> str:
    return {MERGED: "6 3", CANONICAL_CHANGED: "3 3"}.get(kind, "1 3")


def _marks(listed: list[tuple[int, TimelineMark, datetime | None]], axis: _Axis, top: int, bottom: int) -> list[str]:
    parts: list[str] = []
    for index, (number, mark, at) in enumerate(listed):
        pinned = at is None or not axis.contains(at)
        if at is not None and at < axis.start:
            x = X_BEFORE
        elif pinned:
            x = X_UNKNOWN
        else:
            x = axis.x(at)
        colour = _mark_colour(mark.kind)
        badge_y = top + BADGE_ROW_HEIGHT * (index % BADGE_ROWS) + 11
        dash = "2 3" if pinned else _dash(mark.kind)
        tip = f"{mark.kind.replace('_', ' ')} — {mark.label} — {_when(at)}" + (" (off the axis)" if pinned else "")
        parts.append(
            f'<g class="mark {_kind_class(mark.kind)}" data-kind="{_escape(mark.kind)}" data-number="{number}"'
            f'{" data-pinned=" + chr(34) + "true" + chr(34) if pinned else ""}>'
            f"<title>{_escape(_shorten(tip, 600))}</title>"
            f'<line x1="{x:.3f}%" x2="{x:.3f}%" y1="{badge_y + 4}" y2="{bottom}" stroke="{colour}"'
            f' stroke-width="1.5" stroke-dasharray="{dash}"/>'
            f'<text x="{x:.3f}%" y="{badge_y}" font-size="11" font-weight="600" fill="{colour}"'
            f' text-anchor="{_anchor(x)}">{number}</text></g>'
        )
    return parts


def _mark_list(listed: list[tuple[int, TimelineMark, datetime | None]], axis: _Axis, y: int) -> list[str]:
    parts: list[str] = []
    for number, mark, at in listed[:MAX_LISTED_MARKS]:
        y += LISTED_MARK_HEIGHT
        if at is None:
            when = "time unknown"
        elif at.date() == axis.start.date() == axis.end.date():
            when = f"{at:%H:%M}"  # the caption gives the day
        else:
            year = f" {at.year}" if at.year != axis.end.year or at.year != axis.start.year else ""
            when = f"{at.day} {at:%b}{year} {at:%H:%M}"
            if at < axis.start:
                when += ", before the axis"
            elif at > axis.end:
                when += ", after the axis"
        text = _shorten(f"{mark.kind.replace('_', ' ')}, {when}: {mark.label}", MARK_LABEL_CHARS)
        parts.append(
            f'<text class="mark-label" x="0" y="{y}" font-size="11" fill="{COLOUR_TEXT}">'
            f'<tspan font-weight="600" fill="{_mark_colour(mark.kind)}">{number}</tspan> {_escape(text)}'
            f"<title>{_escape(_shorten(f'{mark.label} — {_when(at)}', 600))}</title></text>"
        )
    if len(listed) > MAX_LISTED_MARKS:
        y += LISTED_MARK_HEIGHT
        more = len(listed) - MAX_LISTED_MARKS
        parts.append(f'<text x="0" y="{y}" font-size="11" fill="{COLOUR_MUTED}">… and {more} more events</text>')
    return parts


# --- axis, legend, frame -----------------------------------------------------------------------------------


def _axis(axis: _Axis, top: int, bottom: int, undated: int) -> list[str]:
    parts = [f'<line x1="{X_START}%" x2="{X_END}%" y1="{bottom}" y2="{bottom}" stroke="{COLOUR_MUTED}"/>']
    for moment, label in axis.ticks():
        x = axis.x(moment)
        parts.append(
            f'<g class="tick" data-at="{moment.isoformat()}">'
            f'<line x1="{x:.3f}%" x2="{x:.3f}%" y1="{top}" y2="{bottom + 4}" stroke="{COLOUR_GRID}"/>'
            f'<text x="{x:.3f}%" y="{bottom + 16}" font-size="11" fill="{COLOUR_MUTED}"'
            f' text-anchor="{_anchor(x)}">{_escape(label)}</text></g>'
        )
    if axis.empty:
        caption = "No publication times"
    elif axis.start.date() == axis.end.date():
        caption = f"Times in UTC, {axis.start.day} {axis.start:%b %Y}"
    else:
        first, last = axis.start, axis.end
        caption = f"Times in UTC, {first.day} {first:%b %Y} to {last.day} {last:%b %Y}"
    parts.append(
        f'<text class="axis-caption" x="{X_START}%" y="{bottom + 32}" font-size="11"'
        f' fill="{COLOUR_MUTED}">{_escape(caption)}</text>'
    )
    if undated:
        note = f"○ right of the axis: {undated} without a publication time"
        parts.append(
            f'<text class="undated-note" x="{X_START}%" y="{bottom + 32 + UNDATED_NOTE_HEIGHT}" font-size="11"'
            f' fill="{COLOUR_MUTED}">{_escape(note)}</text>'
        )
    return parts


def _legend(kinds: set[str]) -> str:
    """Copy and canonical, and the kinds of mark this picture has (a merge line in a story without one misleads)."""
    items = [
        f'<circle cx="6" cy="10" r="4.5" fill="{COLOUR_COPY}" fill-opacity="0.7"/>'
        f'<text x="14" y="14" font-size="11" fill="{COLOUR_MUTED}">copy</text>',
        f'<circle cx="54" cy="10" r="5" fill="#fff" stroke="{COLOUR_CANONICAL}" stroke-width="3"/>'
        f'<text x="64" y="14" font-size="11" fill="{COLOUR_MUTED}">canonical</text>',
    ]
    x = 130
    others = kinds - {MERGED, CANONICAL_CHANGED}
    for kind, name, width in ((MERGED, "merge", 60), (CANONICAL_CHANGED, "canonical change", 112),
                              (next(iter(others), ""), "other event", 84)):
        if kind not in kinds:
            continue
        items.append(
            f'<line x1="{x}" x2="{x}" y1="3" y2="17" stroke="{_mark_colour(kind)}" stroke-width="1.5"'
            f' stroke-dasharray="{_dash(kind)}"/>'
            f'<text x="{x + 6}" y="14" font-size="11" fill="{COLOUR_MUTED}">{name}</text>'
        )
        x += width
    return f'<g class="legend">{"".join(items)}</g>'


# Characters XML forbids (C0 controls but tab and newlines, surrogates, U+FFFE/U+FFFF): an HTML page tolerates
# them, but the SVG must stay well-formed XML for the tests' parser and for anyone who saves the picture.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _escape(text: str) -> Markup:
    return escape(_NOT_XML.sub("\ufffd", text))


def _anchor(x: float) -> str:
    # Labels at the ends of the axis would spill out of the picture if centred on their x.
    if x < X_START + 8:
        return "start"
    if x > X_END - 8:
        return "end"
    return "middle"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())  # newlines and tabs from a scraped title
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _svg(height: int, parts: list[str], summary: str) -> Markup:
    # Every piece was built from constants, numbers and _escape(...); Markup() only marks the whole as such.
    # No style attribute, so a Content-Security-Policy without style-src 'unsafe-inline' draws it the same;
    # what overflows the width (a long event line on a phone) is clipped, as an inline <svg> is by default.
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" data-testid="timeline-svg" class="timeline-picture" role="img"'
        f' width="100%" height="{height}"'
        f' font-family="{FONT}" aria-label="{_escape(summary)}">'
        f"<title>{_escape(summary)}</title>{''.join(parts)}</svg>"
    )
