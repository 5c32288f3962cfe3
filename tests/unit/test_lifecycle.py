"""The watchdog's decision: exit only when the loop has not ticked for its whole period."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from consumers.kafka_io import joining_group
from consumers.lifecycle import EXIT_WEDGED, Watchdog
from consumers.metrics import Health


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_watchdog(seconds: float) -> tuple[Watchdog, Health, Clock, list[int]]:
    clock, exits = Clock(), []
    health = Health(last_tick=clock.now)
    return Watchdog(health, seconds, exits.append, clock), health, clock, exits


def test_a_loop_that_ticks_is_left_alone() -> None:
    watchdog, health, clock, exits = make_watchdog(60)
    for _ in range(10):
        clock.now += 50
        health.last_tick = clock.now
        assert not watchdog.check()
    assert exits == []


def test_a_loop_stalled_for_the_period_exits_with_its_code() -> None:
    watchdog, _health, clock, exits = make_watchdog(60)
    clock.now += 59.9
    assert not watchdog.check()
    clock.now += 0.1
    assert watchdog.check()
    assert exits == [EXIT_WEDGED]


def test_a_wedged_process_really_exits() -> None:
    """A main thread blocked for good (as in kafka-python#3121) does not stop the exit."""
    script = textwrap.dedent("""
        import threading, time
        from consumers.lifecycle import Watchdog
        from consumers.metrics import Health
        health = Health(last_tick=time.monotonic())
        Watchdog(health, 0.4).start()
        threading.Event().wait()  # blocked forever, like a wedged poll
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == EXIT_WEDGED, result.stderr


class Coordinator:
    """The two answers of kafka-python's group coordinator that joining_group reads."""

    def __init__(self, rejoin: bool, unknown: bool) -> None:
        self.rejoin, self.unknown = rejoin, unknown

    def need_rejoin(self) -> bool:
        return self.rejoin

    def coordinator_unknown(self) -> bool:
        return self.unknown


class Consumer:
    def __init__(self, coordinator: object) -> None:
        self._coordinator = coordinator


def test_only_a_join_with_an_answering_coordinator_holds_back_the_loops_progress() -> None:
    assert joining_group(Consumer(Coordinator(rejoin=True, unknown=False)))  # a join under way: no tick
    assert not joining_group(Consumer(Coordinator(rejoin=False, unknown=False)))  # in the group
    assert not joining_group(Consumer(Coordinator(rejoin=True, unknown=True)))  # no broker answers: waiting is right
    assert not joining_group(Consumer(object()))  # other client internals: never hold back
