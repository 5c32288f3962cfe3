"""The articles the explorer's tests store: the invented samples, a wire story with copies, a merge, and
hostile articles (tests/integration/explorer_support.py sends them through Kafka; the unit tests through
embedded mode). Phase 2 arrives after phase 1 is stored: a canonical change and a merge need that order."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "articles.jsonl"
HOSTILE_TITLE = '<script>alert("title")</script> Harbour crane collapse <b>injures</b> two'
HOSTILE_MARKUP = ('<script>alert("body")</script>', '<img src=x onerror="alert(1)">')
WIRE_SOURCE = "apnews.com"  # first in preferred_sources: wins a tie, but here it is simply the earliest
WIRE_URL = "https://apnews.com/article/tollbridge-ferry-strike-9f2c"
# The URL a test looks up: sent with a tracking parameter and upper-case host, which normalisation drops.
LOOKUP_URL = "https://Riverside-Post.example/news/ferry-strike-copy?utm_source=feed"
VOCABULARY = (
    "the council port ferry union strike harbour minister river bridge court school hospital fire police "
    "report budget vote storm flood rail workers plan city water price market bank wage talks station "
    "crew night morning week year officials residents service closure repair contract safety inquiry "
    "district county region island coast village road tunnel airport energy grid farmers fishing season "
    "record level statement spokesperson announced expected warned said added according figures showed"
)


_WORDS = VOCABULARY.split()


def paragraph(seed: int, words: int = 60) -> str:
    rng = random.Random(seed)
    picked = [rng.choice(_WORDS) for _ in range(words)]
    return " ".join(picked).capitalize() + "."


def article(input_id: str, url: str, source: str, title: str, paragraphs: list[str], published: str) -> dict:
    return {"id": input_id, "url": url, "source": source, "title": title, "body": "\n\n".join(paragraphs),
            "published_at": published, "scraped_at": published.replace(":00Z", ":30Z"), "lang": "en"}


def phases() -> tuple[list[dict], list[dict]]:
    wire = [paragraph(seed) for seed in range(100, 106)]
    x_story = [paragraph(seed) for seed in range(200, 204)]
    y_story = [paragraph(seed) for seed in range(300, 304)]
    hostile = [f"{HOSTILE_MARKUP[0]} {paragraph(400)}", paragraph(401), f"{paragraph(402)} {HOSTILE_MARKUP[1]}",
               paragraph(403)]
    samples = [json.loads(line) for line in SAMPLES.read_text().splitlines() if line.strip()]
    first = [*samples,
             article("copy-1", LOOKUP_URL, "riverside-post.example", "Ferry crews walk out as Tollbridge strike begins",
                     ["Home / Region / Transport", *wire, "Share this article. Advertisement."],
                     "2024-10-02T09:00:00Z"),
             article("copy-2", "https://coastal-times.example/2024/10/02/ferry-strike", "coastal-times.example",
                     "Tollbridge ferry strike: what we know", wire[:4], "2024-10-02T11:30:00Z"),
             article("x-1", "https://northdesk.example/x", "northdesk.example", "Reservoir works delayed again",
                     x_story, "2024-10-03T08:00:00Z"),
             article("y-1", "https://southdesk.example/y", "southdesk.example", "Airport runway repairs start",
                     y_story, "2024-10-03T09:00:00Z"),
             article("hostile-1", "https://hostile.example/2024/crane?q=%22%3E%3Cscript%3E", "hostile.example",
                     HOSTILE_TITLE, hostile, "2024-10-04T07:00:00Z")]
    second = [article("wire-1", WIRE_URL, WIRE_SOURCE, "Ferry workers strike at Tollbridge port", wire,
                      "2024-10-02T07:45:00Z"),
              article("hostile-2", "https://mirror.example/crane", "mirror.example", HOSTILE_TITLE + " (copy)",
                      ["Advertisement", *hostile], "2024-10-04T08:00:00Z"),
              article("roundup-1", "https://digest.example/roundup", "digest.example",
                      "Week in review: works and repairs",
                      [*x_story, *y_story], "2024-10-05T18:00:00Z")]
    return first, second




@dataclass(frozen=True)
class Ev:
    """A story event as the explorer's pure functions read it (the store's StoredEvent without its time)."""

    id: int
    story_id: str
    kind: str
    article_id: str | None
    reason: str
    similarity: float | None = None
