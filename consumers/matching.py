"""One batch through the matcher, as every runner (embedded mode and the match role) does it."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence

from consumers.matcher import DUPLICATE, Decision, Matcher
from consumers.prepare import Lineage, PreparedArticle
from consumers.storage.store import StoryStore


def match_batch(matcher: Matcher, store: StoryStore,
                items: Sequence[tuple[PreparedArticle, Lineage]]) -> list[Decision]:
    """Decide every article of a batch; the caller then writes ``matcher.take_changes()``
    and, once that committed, reports the decisions (a failed write replays the batch).

    The matcher only remembers stories inside its retention window, so an article it does not
    know may still be stored from long ago (a re-scrape, a replay from an old offset). One
    query per batch asks the store about those keys; stored ones are duplicates, not new stories.
    """
    unknown = [prepared.key for prepared, _ in items if prepared.key not in matcher.articles]
    stored = store.stored_keys(unknown) if unknown else set()
    with fewer_collections():
        return [Decision(DUPLICATE, None) if prepared.key in stored else matcher.process(prepared, lineage)
                for prepared, lineage in items]


@contextlib.contextmanager
def fewer_collections(threshold: int = 100_000) -> Iterator[None]:
    """Python's cyclic garbage collector runs less often for the duration (and as before after).

    Deciding an article allocates a few dozen objects, so the default gen-0 threshold of 700
    starts a collection every ~15 articles, and each tenth of those walks generation 1, each
    hundredth or so the whole index (millions of long-lived objects): 10-15% of the matcher's
    time at 100k articles. The matcher's state has no reference cycles to wait for; a batch's
    garbage is freed by reference counting either way.
    """
    saved = gc.get_threshold()
    gc.set_threshold(threshold, *saved[1:])
    try:
        yield
    finally:
        gc.set_threshold(*saved)
