"""Process lifecycle for the long-running roles: stop on SIGTERM/SIGINT after the batch in hand;
exit when the loop is wedged, so that the supervisor starts the role again."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from consumers.metrics import Health

log = logging.getLogger(__name__)
EXIT_WEDGED = 70  # EX_SOFTWARE: an internal error; restart-on-failure policies start the role again


class StopFlag:
    """Set by a signal; the loop checks it between batches, so a batch is never half done."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> StopFlag:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on stop; True if stopping."""
        return self._event.wait(seconds)

    def __bool__(self) -> bool:
        return self._event.is_set()


class Watchdog:
    """Ends the process when its loop has not ticked for ``seconds``.

    kafka-python 3.0.12 can block forever inside ``KafkaConsumer.poll`` (dpkp/kafka-python#3121,
    fixed after that release): the role then holds its partitions' place in the group yet does
    nothing. Nothing inside the process can free that thread, so the way out is to exit non-zero
    and let the supervisor (docker compose ``restart``, systemd, Kubernetes) start it again;
    offsets are stored only after the work, so nothing is lost.
    """

    def __init__(self, health: Health, seconds: float, exit_process: Callable[[int], None] = os._exit,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.health = health
        self.seconds = seconds
        self._exit = exit_process
        self._clock = clock
        self._stopped = threading.Event()

    def start(self) -> Watchdog:
        if self.seconds > 0:
            threading.Thread(target=self._watch, daemon=True, name="watchdog").start()
        return self

    def stop(self) -> None:
        self._stopped.set()

    def check(self) -> bool:
        """True if the loop is wedged; then the process exits (os._exit: a stuck thread blocks a normal exit)."""
        stalled = self._clock() - self.health.last_tick
        if stalled < self.seconds:
            return False
        log.critical("loop made no progress; exiting so that the supervisor restarts the role",
                     extra={"stalled_seconds": round(stalled, 1), "exit_code": EXIT_WEDGED})
        logging.shutdown()
        self._exit(EXIT_WEDGED)
        return True

    def _watch(self) -> None:
        while not self._stopped.wait(min(5.0, self.seconds / 4)):
            if self.check():
                return
