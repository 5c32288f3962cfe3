"""The watchdog's decision: exit only when the loop has not ticked for its whole period."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

from kafka.structs import MemberState

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
    """What joining_group reads of kafka-python's group coordinator."""

    def __init__(self, state: str, rejoin: bool = False) -> None:
        self.state, self.rejoin = state, rejoin

    def need_rejoin(self) -> bool:
        return self.rejoin


class Client:
    def __init__(self, connected: bool) -> None:
        self.is_connected = connected
        self.cluster = self

    def brokers(self) -> list[object]:
        return [types.SimpleNamespace(node_id=1)]

    def connected(self, node_id: int) -> bool:
        return self.is_connected


class Consumer:
    def __init__(self, coordinator: object, connected: bool = True) -> None:
        self._coordinator, self._client = coordinator, Client(connected)


def test_only_an_unsettled_membership_with_a_broker_answering_holds_back_the_loops_progress() -> None:
    assert joining_group(Consumer(Coordinator(MemberState.REBALANCING)))  # outside the group: no tick
    assert joining_group(Consumer(Coordinator(MemberState.UNJOINED)))
    assert joining_group(Consumer(Coordinator(MemberState.STABLE, rejoin=True)))  # revoked, join not sent yet
    assert not joining_group(Consumer(Coordinator(MemberState.STABLE)))  # in the group (a standby too)
    assert not joining_group(Consumer(Coordinator(MemberState.REBALANCING), connected=False))  # no broker: wait
    assert not joining_group(Consumer(object()))  # other client internals: never hold back
