"""Consumer lag measured outside the roles (issue 11), against the real Kafka and a real Prometheus.

`newsdedup lag-exporter` runs (a round a second), scraped every second by a Prometheus
(scripts/prometheus.sh) that evaluates deploy/prometheus/alerts.yml, with NewsdedupConsumerLagHigh's
5 minutes and 10 minutes cut to seconds. In one run:
  (a) prepare never started, a backlog in the raw topic: Prometheus has the backlog as the group's lag
      within an exporter round and a scrape, while the role reports nothing; the lag alert fires;
  (b) prepare started: the lag falls to 0 and its alert clears; the matcher, never started, has the
      fingerprinted records as its group's lag, and its alert fires;
  (c) prepare stopped (SIGTERM), then a transaction of articles arrives: the lag is the transaction's
      records and its commit marker; prepare started again consumes them and the lag is 0, although
      the committed offset stays before the marker.
And on its own: a corrupt batch waiting in a partition is lag, and the exporter's look at it (it
cannot decode it) neither fails the measurement nor wedges the exporter.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer

from consumers.settings import Settings, replace
from tests.integration.conftest import DEV_ARTICLES, free_port, run_cli, settings_env
from tests.integration.observability_support import (
    ALERTS,
    LAG_EXPORTER,
    Prometheus,
    Role,
    eventually,
    http_get,
    running_prometheus,
    scrape_config,
    start_role,
)
from tests.integration.test_undecodable import corrupt_segment

pytestmark = pytest.mark.integration

BACKLOG = 300
TRANSACTION = 40
INTERVAL_SECONDS = 1.0  # lag_interval_seconds here; scrape_config scrapes every second
SCRAPE_SECONDS = 1.0
FAST_LAG_ALERT = {"offset 5m": "offset 3s", "for: 10m": "for: 2s"}  # NewsdedupConsumerLagHigh only


def fast_lag_alert(path: Path) -> Path:
    """alerts.yml with the lag alert's windows cut to seconds; the other alerts as deployed."""
    text = ALERTS.read_text()
    start = text.index("- alert: NewsdedupConsumerLagHigh")
    end = text.index("- alert:", start + 1)
    block = text[start:end]
    for old, new in FAST_LAG_ALERT.items():
        assert block.count(old) == 1, f"NewsdedupConsumerLagHigh no longer has {old!r}: update FAST_LAG_ALERT"
        block = block.replace(old, new)
    path.write_text(text[:start] + block + text[end:])
    return path


def test_lag_is_measured_outside_the_roles(settings: Settings, tmp_path: Path) -> None:
    settings = replace(settings, lag_interval_seconds=INTERVAL_SECONDS)
    env = settings_env(settings)
    run_cli(["topics"], env)
    articles = DEV_ARTICLES.read_text().splitlines()[:BACKLOG + TRANSACTION]
    ports = {LAG_EXPORTER: free_port(), "prepare": free_port()}
    config = tmp_path / "prometheus.yml"
    config.write_text(scrape_config(ports, [fast_lag_alert(tmp_path / "alerts.yml")]))

    exporter = start_role(LAG_EXPORTER, env, ports[LAG_EXPORTER])
    roles: list[Role] = [exporter]
    try:
        with running_prometheus(config, tmp_path / "prometheus-data") as prometheus:
            lag = Lag(prometheus, exporter)
            eventually(lambda: lag.measured(settings), 30, "both groups measured, at lag 0")

            # (a) a backlog, and no prepare
            send(settings, articles[:BACKLOG])
            sent = time.monotonic()
            eventually(lambda: lag.of("prepare") == BACKLOG, INTERVAL_SECONDS + SCRAPE_SECONDS + 3,
                       f"the prepare group's lag at {BACKLOG}", interval=0.1)
            print(f"lag in Prometheus {time.monotonic() - sent:.1f} s after the backlog was sent")
            assert prometheus.query("newsdedup_consumer_lag_messages") == []  # the role's own view: nothing
            behind = {p for p, value in lag.partitions("prepare").items() if value > 0}
            eventually(lambda: lag.alerting("prepare") == behind, 20, f"NewsdedupConsumerLagHigh for {behind}")

            # (b) prepare runs: its lag falls to 0; the matcher's group, never started, now has one
            prepare = start_role("prepare", env, ports["prepare"])
            roles.append(prepare)
            eventually(lambda: prepare.check_alive() or lag.of("prepare") == 0, 45, "the prepare group at lag 0")
            eventually(lambda: not lag.alerting("prepare"), 10, "NewsdedupConsumerLagHigh for prepare cleared")
            prepared = eventually(
                lambda: prometheus.value('sum(newsdedup_articles_total{role="prepare", outcome="prepared"})'), 10,
                "prepare's counters scraped")
            assert prepared > 0
            eventually(lambda: lag.of("match") == prepared, 10, f"the match group's lag at {prepared}")
            eventually(lambda: lag.alerting("match") == {"0"}, 20, "NewsdedupConsumerLagHigh for match")

            # (c) prepare stopped; a transaction arrives; prepare again
            assert prepare.stop() == 0, prepare.tail()
            send(settings, articles[BACKLOG:], transactional=True)
            eventually(lambda: lag.partitions("prepare") == {**dict.fromkeys(lag.partitions("prepare"), 0),
                                                             "0": TRANSACTION + 1},
                       INTERVAL_SECONDS + SCRAPE_SECONDS + 3, "lag of the transaction's records and marker")
            prepare = start_role("prepare", env, ports["prepare"])
            roles.append(prepare)
            eventually(lambda: prepare.check_alive() or lag.of("prepare") == 0, 45,
                       "the prepare group at lag 0 after the transaction")
            committed = prometheus.value('newsdedup_group_committed_offset{role="prepare", partition="0"}')
            end = prometheus.value('newsdedup_log_end_offset{role="prepare", partition="0"}')
            assert committed == end - 1, f"the commit marker should sit after the committed offset: {committed}, {end}"
            assert prometheus.value('min(newsdedup_lag_exporter_up)') == 1
    finally:
        codes = [(role, role.stop()) for role in roles]
    for role, code in codes:
        assert code == 0, f"{role.name} exited {code}:\n{role.tail()}"
    assert "lag exporter stopping" in "".join(exporter.log), exporter.tail()


class Lag:
    """The lag exporter's series as Prometheus has them."""

    def __init__(self, prometheus: Prometheus, exporter: Role) -> None:
        self.prometheus, self.exporter = prometheus, exporter

    def measured(self, settings: Settings) -> bool:
        self.exporter.check_alive()
        counts = {dict(k)["role"]: v for k, v in self.prometheus.values(
            "count by (role) (newsdedup_group_lag_messages)").items()}
        assert counts == {"prepare": settings.raw_partitions, "match": settings.fingerprinted_partitions}, counts
        assert self.prometheus.value("max(newsdedup_group_lag_messages)") == 0
        assert self.prometheus.values("newsdedup_lag_exporter_up") and \
            set(self.prometheus.values("newsdedup_lag_exporter_up").values()) == {1.0}
        return True

    def of(self, role: str) -> float | None:
        self.exporter.check_alive()
        return self.prometheus.value(f'sum(newsdedup_group_lag_messages{{role="{role}"}})')

    def partitions(self, role: str) -> dict[str, float]:
        return {dict(k)["partition"]: v for k, v in self.prometheus.values(
            f'newsdedup_group_lag_messages{{role="{role}"}}').items()}

    def alerting(self, role: str) -> set[str]:
        """Partitions NewsdedupConsumerLagHigh fires for, for the role."""
        return {alert["labels"]["partition"] for alert in self.prometheus.alerts()
                if alert["labels"]["alertname"] == "NewsdedupConsumerLagHigh" and alert["state"] == "firing"
                and alert["labels"]["role"] == role}


def send(settings: Settings, lines: list[str], transactional: bool = False) -> None:
    """Articles to the raw topic: spread by the client, or as one transaction into partition 0."""
    if not transactional:
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
        for line in lines:
            producer.send(settings.topic_raw, value=line.encode())
        producer.flush()
        producer.close()
        return
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                             transactional_id=f"test-lag-{uuid.uuid4().hex[:8]}")
    producer.init_transactions()
    producer.begin_transaction()
    for line in lines:
        producer.send(settings.topic_raw, value=line.encode(), partition=0)
    producer.commit_transaction()
    producer.close()


def test_a_corrupt_batch_waiting_is_lag_and_does_not_stop_the_measurement(settings: Settings) -> None:
    settings = replace(settings, lag_interval_seconds=INTERVAL_SECONDS)
    env = settings_env(settings)
    run_cli(["topics"], env)
    send_to_partition_0(settings, DEV_ARTICLES.read_text().splitlines()[:10])
    corrupt_segment(settings.topic_raw, 0)
    exporter = start_role(LAG_EXPORTER, env, free_port())
    lag, success = ("newsdedup_group_lag_messages", "0"), ("newsdedup_lag_exporter_last_success_timestamp_seconds", "")
    try:
        first = eventually(lambda: (m := prepare_series(exporter)).get(lag) == 10 and m, 15,
                           "the prepare group's lag on partition 0 at 10")
        # The offsets stood still, so the exporter looks between them: it cannot decode the batch.
        eventually(lambda: "lag check read nothing" in "".join(exporter.log), 10, "the look at the corrupt batch")
        later = eventually(lambda: (m := prepare_series(exporter))[success] > first[success] + 2 * INTERVAL_SECONDS
                           and m, 15, "measurements going on after the look")
        assert later[lag] == 10
        assert later[("newsdedup_lag_exporter_up", "")] == 1
    finally:
        code = exporter.stop()
    assert code == 0, exporter.tail()
    assert "CorruptRecordError" in "".join(exporter.log), exporter.tail()


def prepare_series(exporter: Role) -> dict[tuple[str, str], float]:
    """The exporter's series about the prepare group, from its /metrics: (name, partition or "") -> value."""
    exporter.check_alive()
    series = {}
    for line in http_get(f"{exporter.url}/metrics")[1].decode().splitlines():
        if 'role="prepare"' in line and not line.startswith("#"):
            partition = line.split('partition="')[1].split('"')[0] if 'partition="' in line else ""
            series[(line.split("{")[0], partition)] = float(line.rsplit(" ", 1)[1])
    return series


def send_to_partition_0(settings: Settings, lines: list[str]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    for line in lines:
        producer.send(settings.topic_raw, value=line.encode(), partition=0)
    producer.flush()
    producer.close()
