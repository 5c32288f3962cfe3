"""Growth of the database as metrics, measured by a process that has the database anyway.

The match role calls ``export_growth`` on its idle database pings (consumers/match_worker.py); it measures
at most every ``GROWTH_SECONDS``: database size, rows per table and the oldest stored article's arrival
(``StoryStore.growth``: catalog reads and one index probe, cheap on 100M rows). A failure only logs: the
ping itself already reports the database's health.
"""

from __future__ import annotations

import logging
import time
import weakref

from sqlalchemy.exc import SQLAlchemyError

from consumers.metrics import Metrics
from consumers.storage.store import StoryStore

log = logging.getLogger(__name__)
GROWTH_SECONDS = 60.0  # Prometheus scrapes every 15 s: a minute is plenty for a figure that moves in days

_last_measured: weakref.WeakKeyDictionary[Metrics, float] = weakref.WeakKeyDictionary()


def export_growth(store: StoryStore, metrics: Metrics, disk_bytes: int, interval: float = GROWTH_SECONDS) -> bool:
    """Measure and export, unless this process measured less than ``interval`` seconds ago; True if it did."""
    now = time.monotonic()
    last = _last_measured.get(metrics)
    if last is not None and now - last < interval:
        return False
    _last_measured[metrics] = now
    try:
        stats = store.growth()
    except SQLAlchemyError as exc:
        log.warning("database growth not measured", extra={"error": str(exc).splitlines()[0]})
        return False
    oldest = stats.oldest_article_stored_at.timestamp() if stats.oldest_article_stored_at else None
    metrics.set_growth(stats.database_bytes, stats.rows, oldest, disk_bytes)
    return True
