"""Scoring a clustering against gold labels, with the same definitions as the reference scorer.

Pairwise precision / recall / F1 over all pairs of labelled articles, B-cubed, the adjusted Rand
index, and the canonical accuracy: the share of gold clusters with more than one article whose
earliest-published article is the canonical of the story holding it. Articles without a
prediction count as singletons; precision or recall with nothing to count is 1 (vacuous).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class Scores:
    articles: int
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    adjusted_rand_index: float
    canonical_accuracy: float
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _f1(p: Fraction, r: Fraction) -> Fraction:
    return 2 * p * r / (p + r) if p + r else Fraction(0)


def score(
    gold: Mapping[str, str],
    predicted: Mapping[str, str],
    canonical_of: Mapping[str, str] | None = None,
    published_at: Mapping[str, datetime] | None = None,
) -> Scores:
    """``gold``: article id → cluster; ``predicted``: article id → story; ``canonical_of``: story → canonical id."""
    ids = sorted(gold)
    story = {i: predicted.get(i, f"__singleton__{i}") for i in ids}
    cells = Counter((gold[i], story[i]) for i in ids)
    gold_sizes = Counter(gold[i] for i in ids)
    story_sizes = Counter(story[i] for i in ids)
    tp = sum(_pairs(n) for n in cells.values())
    true_pairs = sum(_pairs(n) for n in gold_sizes.values())
    predicted_pairs = sum(_pairs(n) for n in story_sizes.values())
    p = Fraction(tp, predicted_pairs) if predicted_pairs else Fraction(1)
    r = Fraction(tp, true_pairs) if true_pairs else Fraction(1)
    n = len(ids)
    bp = sum(Fraction(v * v, story_sizes[s]) for (_, s), v in cells.items()) / n
    br = sum(Fraction(v * v, gold_sizes[g]) for (g, _), v in cells.items()) / n
    expected = Fraction(true_pairs * predicted_pairs, _pairs(n)) if n > 1 else Fraction(0)
    maximum = Fraction(true_pairs + predicted_pairs, 2)
    # Both partitions trivial (all singletons, say): ARI is 1 when they agree, else 0.
    ari = (tp - expected) / (maximum - expected) if maximum != expected else Fraction(int(tp == maximum))
    return Scores(
        articles=n, pairwise_precision=float(p), pairwise_recall=float(r), pairwise_f1=float(_f1(p, r)),
        bcubed_precision=float(bp), bcubed_recall=float(br), bcubed_f1=float(_f1(bp, br)),
        adjusted_rand_index=float(ari),
        canonical_accuracy=canonical_accuracy(gold, story, canonical_of or {}, published_at or {}),
        true_pairs=true_pairs, predicted_pairs=predicted_pairs, correct_pairs=tp,
    )


def canonical_accuracy(gold: Mapping[str, str], story: Mapping[str, str], canonical_of: Mapping[str, str],
                       published_at: Mapping[str, datetime]) -> float:
    clusters: dict[str, list[str]] = {}
    for article_id, cluster in gold.items():
        clusters.setdefault(cluster, []).append(article_id)
    judged = right = 0
    for members in clusters.values():
        dated = [m for m in members if m in published_at]
        if len(members) < 2 or not dated:
            continue
        earliest = min(dated, key=lambda m: (published_at[m], m))
        judged += 1
        right += canonical_of.get(story.get(earliest, ""), None) == earliest
    return right / judged if judged else 1.0


@dataclass(frozen=True)
class ArticleView:
    """What error analysis needs of a stored article."""

    id: str
    story_id: str
    title: str
    source: str
    shingle_hashes: np.ndarray

    @property
    def num_shingles(self) -> int:
        return len(self.shingle_hashes)


@dataclass(frozen=True)
class Mistake:
    kind: str  # "false merge" or "false split"
    missed_pairs: int  # pairs this mistake costs
    left: ArticleView
    right: ArticleView
    jaccard: float
    containment: float


def mistakes(gold: Mapping[str, str], articles: Mapping[str, ArticleView], limit: int = 5) -> list[Mistake]:
    """The costliest false merges and false splits, each shown by its most similar pair of articles."""
    from consumers.stages.match import compare

    def closest(xs: list[ArticleView], ys: list[ArticleView]) -> tuple[ArticleView, ArticleView, float, float]:
        best = None
        for x in xs:
            for y in ys:
                s = compare(x.shingle_hashes, y.shingle_hashes)
                if best is None or s.score > best[2].score:
                    best = (x, y, s)
        x, y, s = best  # type: ignore[misc]  # both lists are non-empty by construction
        return x, y, s.jaccard, s.containment

    by_story: dict[str, dict[str, list[ArticleView]]] = {}
    by_cluster: dict[str, dict[str, list[ArticleView]]] = {}
    for article_id, cluster in gold.items():
        view = articles.get(article_id)
        if view is None:
            continue
        by_story.setdefault(view.story_id, {}).setdefault(cluster, []).append(view)
        by_cluster.setdefault(cluster, {}).setdefault(view.story_id, []).append(view)
    found = []
    for groups in by_story.values():  # a story holding several gold clusters
        parts = sorted(groups.values(), key=len, reverse=True)
        for other in parts[1:]:
            left, right, jaccard, containment = closest(parts[0], other)
            found.append(Mistake("false merge", len(parts[0]) * len(other), left, right, jaccard, containment))
    for groups in by_cluster.values():  # a gold cluster spread over several stories
        parts = sorted(groups.values(), key=len, reverse=True)
        for other in parts[1:]:
            left, right, jaccard, containment = closest(parts[0], other)
            found.append(Mistake("false split", len(parts[0]) * len(other), left, right, jaccard, containment))
    found.sort(key=lambda m: (-m.missed_pairs, m.kind, m.left.id))
    merges = [m for m in found if m.kind == "false merge"][:limit]
    splits = [m for m in found if m.kind == "false split"][:limit]
    return merges + splits
