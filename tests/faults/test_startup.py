"""Roles that start together: none may wedge.

Found by the other fault tests: now and then a role that joins its group together with others never
returns from KafkaConsumer.poll(timeout_ms=200). Its main thread waits forever in kafka-python's
NetworkSelector.run (event.wait() without a timeout) under ensure_coordinator_ready; it stops heart-
beating, leaves the group and consumes nothing. /healthz turns 503 after stall_seconds (the tests of
the other faults restart it then: Harness.liveness_probe), and the role's watchdog makes it exit
after watchdog_seconds.
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
def test_roles_starting_together_never_stay_wedged(harness: Harness) -> None:
    """kafka-python 3.0.12's KafkaConsumer.poll(timeout_ms) can block forever (dpkp/kafka-python#3121: the
    main thread waits in NetworkSelector.run on event.wait() without a timeout under
    ensure_coordinator_ready, typically after a rebalance that assigned nothing). No release has the fix
    yet, so each role runs a watchdog (consumers/lifecycle.py) that exits with EXIT_WEDGED when its loop
    has not ticked for watchdog_seconds, for the supervisor (here the harness) to restart it. A role alive
    with a stalled loop past that time is the failure; exits by the watchdog are counted (the race is rare:
    1 of 36 starts in a scratch loop on a loaded machine, 0 of 160 on a quiet one)."""
    wedged: list[str] = []
    rounds = 0
    started = time.monotonic()
    while rounds < ROUNDS and not wedged:
        rounds += 1
        settings = replace(harness.settings, topic_raw=f"{harness.settings.topic_raw}.{rounds}",
                           prepare_group=f"{harness.settings.prepare_group}-{rounds}")
        ensure_topics(settings)
        roles = [harness.start("prepare", f"r{rounds}w{n}", topic_raw=settings.topic_raw,
                               prepare_group=settings.prepare_group, metrics_port=free_port(), stall_seconds=STALL,
                               watchdog_seconds=STALL)
                 for n in range(WORKERS)]
        time.sleep(2 * STALL + 6)  # the watchdog looks every STALL/4 seconds
        for role in roles:
            if role.alive and http_status(role.metrics_port, "/healthz") == 503:
                wedged.append(f"{role.name}: last log line {role.tail(1)[:160]}")
        for role in roles:
            if role.alive:
                role.kill9()
    harness.report("roles starting together", rounds * WORKERS, 0, None, "-", equal=None, stored=0, lost=0,
                   notes=f"{len(harness.wedges)} wedged and exited by the watchdog (restarted), {len(wedged)} "
                         f"stayed wedged, in {rounds} rounds of {WORKERS} prepare workers "
                         f"({time.monotonic() - started:.0f}s)"
                         + (f": {wedged[0][:150]}" if wedged else ""))
    assert not wedged, "\n".join(wedged)
    assert not harness.crashed(), harness.crashed()  # exits other than the watchdog's
