"""One batch through the matcher, as every runner (embedded mode and the match role) does it."""

from __future__ import annotations

from collections.abc import Sequence

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
    return [Decision(DUPLICATE, None) if prepared.key in stored else matcher.process(prepared, lineage)
            for prepared, lineage in items]
