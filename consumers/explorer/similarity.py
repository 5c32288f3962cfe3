"""Why two stored articles are together: their similarity, and the chain of joins linking them.

Pure functions over plain values. The similarity is the matcher's own (consumers/stages/match.py
``compare`` and ``verify`` on the sorted shingle hashes), from the stored hashes, or from the stored
text, fingerprinted again as prepare does, where retention dropped the hashes or they were made under
another fingerprint identity (hashes of two identities never compare).

The chain comes from the event log: every ``joined`` event names the member its article verified
against best ("near match with KEY"); a join that verified against members of several stories merged
them first, and its event follows their ``merged`` events, so the joining article also links to the
founder of each story it merged (it verified against some member of each). A path through those links
from one article to the other is how they came to be in one story.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from consumers.stages.fingerprint import FingerprintConfig, shingle_hashes
from consumers.stages.match import MatchConfig, compare, verify
from consumers.stages.normalise import normalise_text

STORED = "stored_hashes"
TEXT = "text"
JOINED = "joined"
MERGED = "merged"
FOUNDED = "founded"
_MATCHED = re.compile(r"^(\w+) match with (\S+)$")
_ABSORBED = re.compile(r"^absorbed (\S+)$")


class Shingled(Protocol):
    @property
    def shingle_hashes(self) -> np.ndarray | None: ...
    @property
    def body(self) -> str: ...
    @property
    def fingerprint_identity(self) -> str: ...


class LoggedEvent(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def story_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def article_id(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def similarity(self) -> float | None: ...


@dataclass(frozen=True, slots=True)
class PairSimilarity:
    jaccard: float
    containment: float  # of the smaller shingle set in the larger, as the matcher computes it
    shingles_a: int
    shingles_b: int
    basis_a: str  # STORED or TEXT: where each article's shingles came from
    basis_b: str
    verified: bool  # the matcher's verification accepts the pair under the current settings


def shingles_of(article: Shingled, config: FingerprintConfig) -> tuple[np.ndarray, str]:
    """The article's sorted shingle hashes under ``config``, and where they came from."""
    if article.shingle_hashes is not None and article.fingerprint_identity == config.identity:
        return article.shingle_hashes, STORED
    return shingle_hashes(normalise_text(article.body), config), TEXT


def pair_similarity(a: Shingled, b: Shingled, fingerprint: FingerprintConfig, match: MatchConfig) -> PairSimilarity:
    hashes_a, basis_a = shingles_of(a, fingerprint)
    hashes_b, basis_b = shingles_of(b, fingerprint)
    similarity = compare(hashes_a, hashes_b)
    return PairSimilarity(similarity.jaccard, similarity.containment, len(hashes_a), len(hashes_b), basis_a, basis_b,
                          verify(similarity, len(hashes_a), len(hashes_b), match))


@dataclass(frozen=True, slots=True)
class Link:
    """One recorded reason two articles are in one story."""

    article_id: str  # the article that joined
    matched_id: str  # the member it verified against; for MERGED, the founder of a story its join merged
    kind: str  # JOINED or MERGED
    method: str  # near / exact (JOINED); "merge" (MERGED)
    similarity: float | None
    event_id: int  # the joined event that records it
    story_id: str  # the story the event belongs to


@dataclass(frozen=True, slots=True)
class ChainStep:
    from_id: str
    to_id: str
    link: Link


def links_from_events(events: Sequence[LoggedEvent]) -> list[Link]:
    """Every link the event log records (events of one story and of those merged into it, any order)."""
    ordered = sorted(events, key=lambda e: e.id)
    founders = {e.story_id: e.article_id for e in ordered if e.kind == FOUNDED and e.article_id}
    links: list[Link] = []
    pending_absorbed: dict[str, list[str]] = {}  # story -> stories it absorbed since its last join
    for e in ordered:
        if e.kind == MERGED:
            absorbed = _ABSORBED.match(e.reason)
            if absorbed:
                pending_absorbed.setdefault(e.story_id, []).append(absorbed.group(1))
        elif e.kind == JOINED and e.article_id:
            matched = _MATCHED.match(e.reason)
            if matched:
                links.append(Link(e.article_id, matched.group(2), JOINED, matched.group(1), e.similarity, e.id,
                                  e.story_id))
            absorbed_stories = pending_absorbed.pop(e.story_id, [])
            # It verified against a member of each story it merged, the surviving one too; the log names only
            # its best match, so it links to the founder of each.
            for story_id in [e.story_id, *absorbed_stories] if absorbed_stories else []:
                founder = founders.get(story_id)
                if founder and founder != e.article_id:
                    links.append(Link(e.article_id, founder, MERGED, "merge", None, e.id, e.story_id))
    return links


def join_chain(a: str, b: str, links: Sequence[Link]) -> list[ChainStep] | None:
    """The shortest path of links from article ``a`` to article ``b`` (links count both ways); [] if a is b,
    None if the log links them by no path (say, events pruned, or a and b in different stories)."""
    if a == b:
        return []
    neighbours: dict[str, list[tuple[str, Link]]] = {}
    for link in links:
        neighbours.setdefault(link.article_id, []).append((link.matched_id, link))
        neighbours.setdefault(link.matched_id, []).append((link.article_id, link))
    came_from: dict[str, tuple[str, Link] | None] = {a: None}
    queue = deque([a])
    while queue:
        node = queue.popleft()
        if node == b:
            break
        for other, link in neighbours.get(node, ()):
            if other not in came_from:
                came_from[other] = (node, link)
                queue.append(other)
    if b not in came_from:
        return None
    steps: list[ChainStep] = []
    node = b
    while (previous := came_from[node]) is not None:
        steps.append(ChainStep(previous[0], node, previous[1]))
        node = previous[0]
    return steps[::-1]
