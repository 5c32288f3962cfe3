"""Roles that start together: none may wedge.

Found by the other fault tests: now and then a role that joins its group together with others never
returns from KafkaConsumer.poll(timeout_ms=200). Its main thread waits forever in kafka-python's
NetworkSelector.run (event.wait() without a timeout) under ensure_coordinator_ready; it stops heart-
beating, leaves the group and consumes nothing, yet stays alive. /healthz turns 503 after stall_seconds,
which is how the tests of the other faults detect it (Harness.liveness_probe) and restart it.
"""

from __future__ import annotations

import time

import pytest

from consumers.kafka_io import ensure_topics
from consumers.settings import replace
from tests.faults.support import Harness, free_port, http_status

pytestmark = pytest.mark.faults

ROUNDS, WORKERS, STALL = 30, 4, 8.0


@pytest.mark.slow
# Not strict: the wedge is a race. It struck 1 of 36 starts in a scratch loop and 3 times in the slow
# tests on a loaded machine, but 0 of 160 starts on a quiet one, so this test may pass while the bug remains.
@pytest.mark.xfail(strict=False, reason=(
    "BUG (dependency, hang) consumers/prepare_worker.py and consumers/match_worker.py poll through kafka-python "
    "3.0.12 (pyproject pins it), whose KafkaConsumer.poll(timeout_ms) can block forever: the main thread waits "
    "in kafka/net/selector.py NetworkSelector.run on event.wait() with no timeout (called from "
    "BaseCoordinator.ensure_coordinator_ready, coordinator/base.py:339), typically right after a group leader "
    "assigned nothing because the topic was not yet in its metadata ('No partition metadata for topic') and the "
    "group rebalanced again. The wedged role stays alive, stops heartbeating and consumes nothing; only /healthz "
    "(503 after stall_seconds=120) shows it, and nothing restarts it under docker compose. Upstream: "
    "dpkp/kafka-python#3121, first fix PR #3123 (default_api_timeout_ms), not in 3.0.12. Fix: take a release "
    "with that fix (or pin the 2.x line) and add a watchdog that exits non-zero when the loop has not ticked "
    "for stall_seconds, so any supervisor restarts the role."))
def test_roles_starting_together_never_wedge(harness: Harness) -> None:
    wedged: list[str] = []
    rounds = 0
    started = time.monotonic()
    while rounds < ROUNDS and not wedged:
        rounds += 1
        settings = replace(harness.settings, topic_raw=f"{harness.settings.topic_raw}.{rounds}",
                           prepare_group=f"{harness.settings.prepare_group}-{rounds}")
        ensure_topics(settings)
        roles = [harness.start("prepare", f"r{rounds}w{n}", topic_raw=settings.topic_raw,
                               prepare_group=settings.prepare_group, metrics_port=free_port(), stall_seconds=STALL)
                 for n in range(WORKERS)]
        time.sleep(STALL + 6)
        for role in roles:
            if role.alive and http_status(role.metrics_port, "/healthz") == 503:
                wedged.append(f"{role.name}: last log line {role.tail(1)[:160]}")
        for role in roles:
            if role.alive:
                role.kill9()
    harness.report("roles starting together", rounds * WORKERS, 0, None, "-", equal=None, stored=0, lost=0,
                   notes=f"{len(wedged)} wedged in {rounds} rounds of {WORKERS} prepare workers "
                         f"({time.monotonic() - started:.0f}s)" + (f": {wedged[0][:150]}" if wedged else ""))
    assert not wedged, "\n".join(wedged)
