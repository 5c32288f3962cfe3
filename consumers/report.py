"""The human-readable summary printed by ``newsdedup run``."""

from __future__ import annotations

from consumers.embedded import RunSummary
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
