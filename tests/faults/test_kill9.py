"""kill -9 of a prepare worker, and separately of the matcher, at random moments while articles flow.

After every kill the process is started again (as a supervisor would). Afterwards every input
article is stored exactly once, and `newsdedup export` equals the export of a clean embedded run
(`newsdedup run`) on the same input: the same partition of article ids into stories and the same
canonical article for each.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from tests.faults.support import (
    Harness,
    dev_lines,
    poll_until,
    replicated_dev_lines,
)

pytestmark = pytest.mark.faults

SHORT_ARTICLES = 3000
SHORT_RATE = 150.0  # articles/s: a 20 s stream
SLOW_REPLICAS = 4  # 4 x 4,948 = 19,792 articles
SLOW_RATE = 300.0  # a 66 s stream


def kill_schedule(rng: random.Random, kills: int, stream_seconds: float) -> list[float]:
    """Seconds after the feed starts: a random first kill, then random gaps long enough for the group
    to settle between kills (session timeout 6 s), all inside the stream."""
    moments = [rng.uniform(2.0, 5.0)]
    for _ in range(kills - 1):
        moments.append(moments[-1] + rng.uniform(7.0, 10.0))
    assert moments[-1] < stream_seconds - 2, "the kills must fall while articles flow"
    return moments


def run_kill_scenario(harness: Harness, baseline: dict[str, dict], lines: list[bytes], *, victim: str,
                      kills: int, seed: int, rate: float, prepares: int) -> None:
    rng = random.Random(seed)
    harness.ensure_topics()
    harness.liveness_probe()
    matcher = harness.start("match")
    workers = [harness.start("prepare") for _ in range(prepares)]
    assert poll_until(matcher.owns_match_partition, 60), matcher.tail()
    assert poll_until(lambda: all(w.prepare_partitions() for w in workers), 60)

    feeder = harness.feed(lines, rate)
    began = time.monotonic()
    injected: list[tuple[object, list[int] | None]] = []
    for at in kill_schedule(rng, kills, len(lines) / rate):
        time.sleep(max(0.0, began + at - time.monotonic()))
        harness.assert_alive()
        target = matcher if victim == "match" else rng.choice(workers)
        partitions = target.prepare_partitions() if victim == "prepare" else None
        killed_at = target.kill9()
        injected.append((killed_at, partitions))
        time.sleep(rng.uniform(0.2, 2.0))
        target.start()
    end_of_run = harness.finish(feeder, lines, baseline)
    recoveries = []
    for killed_at, partitions in injected:
        # prepare: the dead worker's partitions flow again (records sent after the kill are stored);
        # match: the restarted matcher stores its first article.
        first = harness.first_stored_after(killed_at, partitions, produced_after=victim == "prepare")
        recoveries.append((first - killed_at).total_seconds() if first else None)
    known = [r for r in recoveries if r is not None]
    harness.report(
        f"kill -9 {victim} (seed {seed})", len(injected), len(lines), end_of_run.audit,
        f"max {max(known):.1f}s" if known else "-", equal=end_of_run.equal,
        notes="per kill: " + ", ".join("-" if r is None else f"{r:.1f}s" for r in recoveries)
              + f"; prepare workers {prepares}" + harness.events_note(end_of_run.events) + harness.wedge_note())

    end_of_run.assert_exact()


# The matcher with several seeds: each kill also tests the outbox (events stored, not yet published).
@pytest.mark.parametrize(("victim", "seed", "prepares"), [("prepare", 1, 2), ("match", 2, 1), ("match", 3, 1),
                                                          ("match", 4, 1)])
def test_kill9_short(harness: Harness, embedded_baseline: Callable[..., dict[str, dict]], victim: str, seed: int,
                     prepares: int) -> None:
    lines = dev_lines(SHORT_ARTICLES)
    run_kill_scenario(harness, embedded_baseline("dev3000", lines), lines, victim=victim, kills=2, seed=seed,
                      rate=SHORT_RATE, prepares=prepares)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize(("victim", "prepares"), [("prepare", 2), ("match", 1)])
def test_kill9_slow(harness: Harness, embedded_baseline: Callable[..., dict[str, dict]], victim: str, seed: int,
                    prepares: int) -> None:
    lines = replicated_dev_lines(SLOW_REPLICAS)
    run_kill_scenario(harness, embedded_baseline("dev-x4", lines), lines, victim=victim, kills=6, seed=seed,
                      rate=SLOW_RATE, prepares=prepares)
