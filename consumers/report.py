"""The human-readable summary printed by ``newsdedup run``."""

from __future__ import annotations

from consumers.embedded import RunSummary
from consumers.evaluation import Mistake, Scores
from consumers.matcher import DUPLICATE
from consumers.stages.match import CANONICAL, EXACT, NEAR
from consumers.storage.store import StoryStore


def print_run_summary(summary: RunSummary, store: StoryStore, top: int, export: str | None) -> None:
    counts = store.counts()
    outcomes = summary.outcomes
    print(f"read {summary.read} articles in {summary.seconds:.1f} s ({summary.articles_per_second:.0f} articles/s)")
    print(f"  new stories:       {outcomes[CANONICAL]}")
    print(f"  near duplicates:   {outcomes[NEAR]}")
    print(f"  exact duplicates:  {outcomes[EXACT]}")
    print(f"  already stored:    {outcomes[DUPLICATE]}")
    rejected = sum(summary.rejected.values())
    reasons = ", ".join(f"{reason} {n}" for reason, n in summary.rejected.most_common())
    print(f"  rejected:          {rejected}" + (f" ({reasons})" if reasons else ""))
    print(f"database: {counts['articles']} articles in {counts['stories']} stories, {counts['events']} events")
    largest = store.largest_stories(top)
    if largest:
        print("largest stories:")
        for story_id, members, outlets in largest:
            shown = ", ".join(outlets[:6]) + (f" and {len(outlets) - 6} more" if len(outlets) > 6 else "")
            print(f"  {story_id}  {members} articles  {shown}")
    if export:
        print(f"export written to {export}")


def print_scores(summary: RunSummary, scores: Scores, mistakes: list[Mistake]) -> None:
    print(f"articles {scores.articles} labelled, {summary.read} read in {summary.seconds:.1f} s "
          f"({summary.articles_per_second:.0f} articles/s), rejected {sum(summary.rejected.values())}")
    print(f"pairs: true {scores.true_pairs}, predicted {scores.predicted_pairs}, correct {scores.correct_pairs}")
    print(f"pairwise  precision {scores.pairwise_precision:.4f}  recall {scores.pairwise_recall:.4f}  "
          f"F1 {scores.pairwise_f1:.4f}")
    print(f"B-cubed   precision {scores.bcubed_precision:.4f}  recall {scores.bcubed_recall:.4f}  "
          f"F1 {scores.bcubed_f1:.4f}")
    print(f"adjusted Rand index {scores.adjusted_rand_index:.4f}")
    print(f"canonical accuracy  {scores.canonical_accuracy:.4f}")
    for mistake in mistakes:
        print(f"{mistake.kind} costing {mistake.missed_pairs} pair(s): jaccard {mistake.jaccard:.3f} "
              f"containment {mistake.containment:.3f}")
        for view in (mistake.left, mistake.right):
            print(f"    {view.id:>16}  {view.source[:28]:28}  {view.num_shingles:5d} shingles  {view.title[:70]}")
    print(f"F1={scores.pairwise_f1:.4f} ARI={scores.adjusted_rand_index:.4f} "
          f"canonical={scores.canonical_accuracy:.4f}")
