"""The lag exporter's core: lag from the three offset lookups, and when a lag is only transaction markers."""

from __future__ import annotations

from consumers.lag_exporter import EmptyGaps, PartitionLag, Watch, partition_lags

WATCH = Watch("prepare", "newsdedup-prepare", "articles.raw")


def test_lag_is_log_end_minus_committed() -> None:
    rows = partition_lags({0: 0, 1: 0}, {0: 10, 1: 7}, {0: 4, 1: 7})
    assert rows == [PartitionLag(0, 4, 10, 6), PartitionLag(1, 7, 7, 0)]


def test_a_partition_without_committed_offset_counts_from_the_log_start() -> None:
    # -1 is how a broker answers for a partition of a group with no offset; missing is a group it never saw
    rows = partition_lags({0: 3, 1: 5}, {0: 10, 1: 9}, {0: -1})
    assert [(row.committed, row.lag) for row in rows] == [(3, 7), (5, 4)]


def test_a_committed_offset_retention_deleted_counts_from_the_log_start() -> None:
    assert partition_lags({0: 50}, {0: 60}, {0: 20}) == [PartitionLag(0, 50, 60, 10)]


def test_lag_is_never_negative() -> None:
    assert partition_lags({0: 0}, {0: 5}, {0: 6})[0].lag == 0


class Probe:
    def __init__(self, answer: bool | None) -> None:
        self.answer, self.calls = answer, 0

    def __call__(self) -> bool | None:
        self.calls += 1
        return self.answer


def test_a_lag_of_markers_only_becomes_0_once_it_stood_still_for_a_round() -> None:
    gaps, probe, row = EmptyGaps(), Probe(False), PartitionLag(0, 5, 7, 2)
    assert gaps.apply(WATCH, row, probe) == row and probe.calls == 0  # first sight: reported as read
    assert gaps.apply(WATCH, row, probe).lag == 0 and probe.calls == 1
    assert gaps.apply(WATCH, row, probe).lag == 0 and probe.calls == 1  # the answer holds while nothing moves


def test_a_moving_partition_is_never_probed() -> None:
    gaps, probe = EmptyGaps(), Probe(False)
    for committed in range(0, 1000, 100):
        assert gaps.apply(WATCH, PartitionLag(0, committed, committed + 50, 50), probe).lag == 50
    assert probe.calls == 0


def test_records_waiting_keep_their_lag_and_an_unknown_answer_is_asked_again() -> None:
    gaps, row = EmptyGaps(), PartitionLag(0, 0, 40, 40)
    waiting = Probe(True)
    for _ in range(3):
        assert gaps.apply(WATCH, row, waiting).lag == 40
    assert waiting.calls == 1
    gaps, unknown = EmptyGaps(), Probe(None)
    for _ in range(3):
        assert gaps.apply(WATCH, row, unknown).lag == 40
    assert unknown.calls == 2


def test_groups_on_the_same_topic_are_apart() -> None:
    gaps, probe, row = EmptyGaps(), Probe(False), PartitionLag(0, 5, 7, 2)
    other = Watch("prepare", "another-group", "articles.raw")
    gaps.apply(WATCH, row, probe)
    assert gaps.apply(other, row, probe).lag == 2 and probe.calls == 0
