"""Elect: choose the canonical article of a story by a pure, documented policy.

The policy is a total order over members, best first:

1. earliest ``published_at`` (the original precedes its copies);
2. on equal times, the source that comes first in the preference list (wire services, say);
3. then the more complete text (more characters after cleaning);
4. then the smaller article key, so the choice never depends on arrival order.

Because it is a total order, comparing a newcomer with the current canonical is enough.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

# Reasons recorded with every canonical change.
FOUNDED = "founded"
EARLIER_PUBLISHED = "earlier_published"
PREFERRED_SOURCE = "preferred_source"
MORE_COMPLETE = "more_complete"
TIE_BREAK = "tie_break"


@dataclass(frozen=True, slots=True)
class Contender:
    key: str
    published_at: datetime
    source: str
    text_chars: int


def rank(contender: Contender, preferred_sources: Sequence[str]) -> tuple:
    """Sort key: smaller is better."""
    source = contender.source.lower()
    preference = preferred_sources.index(source) if source in preferred_sources else len(preferred_sources)
    return (contender.published_at, preference, -contender.text_chars, contender.key)


def challenge(challenger: Contender, incumbent: Contender, preferred_sources: Sequence[str]) -> str | None:
    """The reason the challenger should replace the incumbent, or None if it should not."""
    mine, theirs = rank(challenger, preferred_sources), rank(incumbent, preferred_sources)
    if mine >= theirs:
        return None
    reasons = (EARLIER_PUBLISHED, PREFERRED_SOURCE, MORE_COMPLETE, TIE_BREAK)
    return next(reason for reason, a, b in zip(reasons, mine, theirs, strict=True) if a != b)


def elect_canonical(members: Iterable[Contender], preferred_sources: Sequence[str]) -> Contender:
    """The best member of a non-empty story."""
    return min(members, key=lambda member: rank(member, preferred_sources))
