"""Scale-out and failover: three prepare workers and two matchers (one active, one standby on the one
partition of articles.fingerprinted). SIGKILL the active matcher while articles flow: the standby
takes over, rebuilds its index from the database and goes on; the result equals the single-process
(embedded) run. Prints the failover time (kill → the standby's first stored article) and the index
rebuild time (the standby's "index rebuilt" log line)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from tests.faults.support import (
    Harness,
    dev_lines,
    parse_ts,
    poll_until,
    replicated_dev_lines,
)

pytestmark = pytest.mark.faults


def run_failover(harness: Harness, baseline: dict[str, dict], lines: list[bytes], rate: float, seed: int) -> None:
    rng = random.Random(seed)
    group = harness.settings.match_group
    harness.ensure_topics()
    harness.liveness_probe()
    first = harness.start("match", "matchA")
    assert poll_until(first.owns_match_partition, 60), first.tail()
    workers = [harness.start("prepare") for _ in range(3)]
    # The kill comes when 40 to 60% of the stream is out. The feeder waits at the kill's article until
    # the group is ready, or on a slow machine the stream could end (everything stored) before the kill.
    kill_after = int(rng.uniform(0.4, 0.6) * len(lines))
    feeder = harness.feed(lines, rate, hold_at=kill_after)
    time.sleep(1.5)
    second = harness.start("match", "matchB")  # joins while the first one is busy: a rebalance under load
    # 120 s: once (on a machine busy with benchmarks) the joining matcher took longer than 60 s.
    assert poll_until(lambda: harness.group_state(group) == ("Stable", 2), 120), \
        (harness.group_state(group), harness.wedge_note(), second.tail())
    assert poll_until(lambda: all(len(w.prepare_partitions()) == 2 for w in workers), 60), \
        [w.prepare_partitions() for w in workers]
    feeder.release()  # from here the feeder is not held back any more
    assert poll_until(lambda: feeder.sent >= kill_after, len(lines) / rate + 60), (feeder.sent, kill_after)
    harness.assert_alive()
    active = [m for m in (first, second) if m.owns_match_partition()]
    assert len(active) == 1, "exactly one matcher should own the partition"
    active_matcher = active[0]
    standby = second if active_matcher is first else first
    stored_before = harness.stored_count()
    killed_at = active_matcher.kill9()

    def rebuilt() -> list[dict]:
        return [e for e in standby.events("index rebuilt") if parse_ts(e["ts"]) > killed_at]

    assert poll_until(lambda: bool(rebuilt()), 90), f"the standby did not take over:\n{standby.tail()}"
    end_of_run = harness.finish(feeder, lines, baseline)
    takeover = rebuilt()[0]
    assigned_after = (parse_ts(takeover["ts"]) - killed_at).total_seconds()
    first_stored = harness.first_stored_after(killed_at)
    failover = (first_stored - killed_at).total_seconds() if first_stored else None
    print(f"FAILOVER kill -> standby's first stored article: {failover:.2f}s" if failover is not None
          else "FAILOVER: the standby stored nothing")
    print(f"INDEX REBUILD {takeover['seconds']:.3f}s for {takeover['articles']} articles "
          f"(standby's index rebuilt {assigned_after:.2f}s after the kill)")
    harness.report(
        "kill -9 active matcher (3 prepare, 2 match)", 1, len(lines), end_of_run.audit,
        "-" if failover is None else f"{failover:.1f}s", equal=end_of_run.equal,
        notes=f"failover (kill -> standby's 1st stored) {'-' if failover is None else f'{failover:.2f}s'}; "
              f"index rebuild {takeover['seconds']:.3f}s for {takeover['articles']} articles "
              f"(stored at kill: {stored_before})" + harness.events_note(end_of_run.events) + harness.wedge_note())

    assert failover is not None
    assert takeover["articles"] >= (stored_before or 0), "the standby's index misses stored articles"
    end_of_run.assert_exact()


def test_failover_short(harness: Harness, embedded_baseline: Callable[..., dict[str, dict]]) -> None:
    lines = dev_lines(3000)
    run_failover(harness, embedded_baseline("dev3000", lines), lines, rate=150, seed=3)


@pytest.mark.slow
def test_failover_20k(harness: Harness, embedded_baseline: Callable[..., dict[str, dict]]) -> None:
    lines = replicated_dev_lines(4)
    run_failover(harness, embedded_baseline("dev-x4", lines), lines, rate=300, seed=4)
