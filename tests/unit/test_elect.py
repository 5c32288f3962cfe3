"""consumers.stages.elect: the canonical policy is a total order over members."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from consumers.stages.elect import (
    EARLIER_PUBLISHED,
    MORE_COMPLETE,
    PREFERRED_SOURCE,
    TIE_BREAK,
    Contender,
    challenge,
    elect_canonical,
)

NOON = datetime(2024, 7, 2, 12, 0, tzinfo=UTC)
PREFERRED = ("baylinewire.example", "harbourpress.example")


def contender(key: str, *, minutes: int = 0, source: str = "northfield.example", chars: int = 2000) -> Contender:
    return Contender(key=key, published_at=NOON + timedelta(minutes=minutes), source=source, text_chars=chars)


def test_earliest_published_wins_over_everything_else() -> None:
    original = contender("k9", minutes=0, source="smalltown.example", chars=900)
    copy = contender("k1", minutes=5, source="baylinewire.example", chars=3000)
    assert elect_canonical([copy, original], PREFERRED) == original
    assert challenge(original, copy, PREFERRED) == EARLIER_PUBLISHED
    assert challenge(copy, original, PREFERRED) is None


def test_equal_times_prefer_the_listed_source_in_list_order() -> None:
    wire = contender("k3", source="baylinewire.example", chars=1000)
    second = contender("k2", source="harbourpress.example", chars=1500)
    paper = contender("k1", source="northfield.example", chars=2500)
    assert elect_canonical([paper, second, wire], PREFERRED) == wire
    assert challenge(wire, second, PREFERRED) == PREFERRED_SOURCE
    assert challenge(second, paper, PREFERRED) == PREFERRED_SOURCE
    assert challenge(paper, second, PREFERRED) is None


def test_source_preference_is_case_insensitive_on_the_contender() -> None:
    shouty = contender("k2", source="BaylineWire.Example")
    assert challenge(shouty, contender("k1"), PREFERRED) == PREFERRED_SOURCE


def test_then_the_longer_text() -> None:
    longer = contender("k2", chars=2400)
    shorter = contender("k1", chars=1800)
    assert elect_canonical([shorter, longer], PREFERRED) == longer
    assert challenge(longer, shorter, PREFERRED) == MORE_COMPLETE
    assert challenge(shorter, longer, PREFERRED) is None


def test_then_the_smaller_key() -> None:
    a, b = contender("a1"), contender("b2")
    assert elect_canonical([b, a], PREFERRED) == a
    assert challenge(a, b, PREFERRED) == TIE_BREAK
    assert challenge(b, a, PREFERRED) is None


def test_an_article_does_not_challenge_itself() -> None:
    a = contender("a1")
    assert challenge(a, a, PREFERRED) is None


def test_time_zone_of_published_at_does_not_matter() -> None:
    lisbon = Contender("k2", (NOON - timedelta(minutes=1)).astimezone(timezone(timedelta(hours=1))), "x", 10)
    assert challenge(lisbon, contender("k1"), PREFERRED) == EARLIER_PUBLISHED


def test_election_does_not_depend_on_order() -> None:
    members = [
        contender("k4", minutes=10, source="baylinewire.example"),
        contender("k3", minutes=0, source="northfield.example", chars=1000),
        contender("k2", minutes=0, source="harbourpress.example", chars=800),
        contender("k1", minutes=0, source="harbourpress.example", chars=800),
    ]
    winners = {elect_canonical(order, PREFERRED) for order in itertools.permutations(members)}
    assert winners == {members[3]}


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_pairwise_challenges_converge_to_the_elected_one(order: tuple[int, ...]) -> None:
    members = [contender("k1", minutes=3), contender("k2", minutes=1, chars=10),
               contender("k3", minutes=1, chars=20), contender("k4", minutes=2, source="baylinewire.example")]
    incumbent = members[order[0]]
    for i in order[1:]:
        if challenge(members[i], incumbent, PREFERRED) is not None:
            incumbent = members[i]
    assert incumbent == elect_canonical(members, PREFERRED) == members[2]


def test_elect_of_no_members_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        elect_canonical([], PREFERRED)
