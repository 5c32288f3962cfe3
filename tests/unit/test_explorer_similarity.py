"""consumers/explorer/similarity.py: the matcher's similarity from stored hashes or text, and the chain of joins."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest

from consumers.explorer.similarity import (
    MERGED,
    STORED,
    TEXT,
    join_chain,
    links_from_events,
    pair_similarity,
    shingles_of,
)
from consumers.stages.fingerprint import FingerprintConfig, shingle_hashes
from consumers.stages.match import MatchConfig, compare
from consumers.stages.normalise import normalise_text
from consumers.storage.codec import decode_shingle_hashes, encode_shingle_hashes
from tests.unit.explorer_articles import Ev, paragraph

CONFIG = FingerprintConfig()


@dataclass(frozen=True)
class Stored:
    shingle_hashes: np.ndarray | None
    body: str
    fingerprint_identity: str = CONFIG.identity


def stored(body: str) -> Stored:
    # Through the column's codec, as the explorer reads a row.
    return Stored(decode_shingle_hashes(encode_shingle_hashes(shingle_hashes(normalise_text(body), CONFIG))), body)


WIRE = "\n\n".join(paragraph(seed) for seed in range(6))
TRIMMED = "\n\n".join(paragraph(seed) for seed in range(3))
OTHER = "\n\n".join(paragraph(seed) for seed in range(50, 56))


def test_stored_hashes_give_the_matchers_own_figures() -> None:
    pair = pair_similarity(stored(WIRE), stored(TRIMMED), CONFIG, MatchConfig())
    expected = compare(shingle_hashes(normalise_text(WIRE), CONFIG), shingle_hashes(normalise_text(TRIMMED), CONFIG))
    assert (pair.jaccard, pair.containment) == (expected.jaccard, expected.containment)
    assert pair.containment == 1.0 and 0.4 < pair.jaccard < 0.6
    assert pair.verified and (pair.basis_a, pair.basis_b) == (STORED, STORED)
    assert not pair_similarity(stored(WIRE), stored(OTHER), CONFIG, MatchConfig()).verified


@pytest.mark.parametrize("dropped", [
    lambda s: replace(s, shingle_hashes=None),  # prune dropped the hashes
    lambda s: replace(s, fingerprint_identity="mh1-some-older-identity"),  # hashes of another identity never compare
])
def test_without_usable_hashes_the_text_is_fingerprinted_again_to_the_same_figures(dropped) -> None:
    from_hashes = pair_similarity(stored(WIRE), stored(TRIMMED), CONFIG, MatchConfig())
    from_text = pair_similarity(dropped(stored(WIRE)), stored(TRIMMED), CONFIG, MatchConfig())
    assert (from_text.jaccard, from_text.containment, from_text.shingles_a) == \
        (from_hashes.jaccard, from_hashes.containment, from_hashes.shingles_a)
    assert (from_text.basis_a, from_text.basis_b) == (TEXT, STORED)
    assert shingles_of(dropped(stored(WIRE)), CONFIG)[1] == TEXT


def test_the_chain_follows_joins_both_ways() -> None:
    events = [Ev(1, "s-a", "founded", "a", "founded"), Ev(2, "s-a", "joined", "b", "near match with a", 0.8),
              Ev(3, "s-a", "joined", "c", "exact match with b", 1.0), Ev(4, "s-a", "canonical_changed", "c", "x"),
              Ev(5, "s-a", "joined", "d", "near match with a", 0.5)]
    links = links_from_events(list(reversed(events)))  # any order in, id order used
    chain = join_chain("c", "d", links)
    assert [(s.from_id, s.to_id, s.link.method) for s in chain] == [("c", "b", "exact"), ("b", "a", "near"),
                                                                    ("a", "d", "near")]
    assert chain[0].link.event_id == 3 and chain[0].link.similarity == 1.0
    assert join_chain("a", "a", links) == []
    assert join_chain("a", "zz", links) is None


def test_a_join_that_merged_stories_links_to_each_founder() -> None:
    events = [Ev(1, "s-x", "founded", "x", "founded"), Ev(2, "s-y", "founded", "y", "founded"),
              Ev(3, "s-y", "merged", None, "merged into s-x"), Ev(4, "s-x", "merged", None, "absorbed s-y"),
              Ev(5, "s-x", "joined", "r", "near match with y", 0.9)]
    links = links_from_events(events)
    assert {(link.matched_id, link.kind) for link in links} == {("y", "joined"), ("x", MERGED), ("y", MERGED)}
    chain = join_chain("x", "y", links)
    assert [(s.from_id, s.to_id) for s in chain] == [("x", "r"), ("r", "y")]
    assert chain[0].link.kind == MERGED


def test_reasons_it_cannot_read_are_no_links() -> None:
    events = [Ev(1, "s", "joined", "b", "something else"), Ev(2, "s", "joined", None, "near match with a")]
    assert links_from_events(events) == []
