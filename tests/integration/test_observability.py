"""The ops artifacts against the running system: a real Prometheus (scripts/prometheus.sh) scrapes
`newsdedup prepare`, `newsdedup match` and `newsdedup lag-exporter` while a slice of the dev set, and a
few malformed messages, flow through the real Kafka and PostgreSQL. It evaluates deploy/prometheus/alerts.yml.

Checked:
  (a) every query of every panel of deploy/grafana/dashboards/newsdedup.json returns data, every alert
      expression of alerts.yml runs, and every alert rule is loaded and evaluates without error; the
      dead-letter alert fires for exactly the reasons sent, nothing else fires;
  (b) the counters agree with PostgreSQL and Kafka: articles stored, stories founded, dead letters;
      the owned partitions and the lag series (the roles' and the lag exporter's) agree with the topics;
  (c) /readyz of the matcher follows PostgreSQL going down and coming back, and the process lives on.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from kafka import KafkaProducer
from sqlalchemy import create_engine, text

from consumers.metrics import REASONS
from consumers.settings import Settings, replace
from tests.integration.conftest import DEV_ARTICLES, ROOT, free_port, read_topic, run_cli, settings_env
from tests.integration.observability_support import (
    ALERTS,
    DEPLOY_SCRAPE_CONFIG,
    EXPLORER,
    LAG_EXPORTER,
    Prometheus,
    Role,
    dashboard_queries,
    eventually,
    grafana_to_promql,
    http_get,
    reasons_of,
    running_prometheus,
    scrape_config,
    start_role,
)

pytestmark = pytest.mark.integration

ARTICLES = 1500
MALFORMED = [  # (reason the prepare role gives, raw message)
    ("malformed_json", b'{"id": "bad-1", "url": "https://a.example/1", "body": "trunc'),
    ("malformed_json", None),  # a tombstone
    ("missing_field", json.dumps({"id": "bad-2", "body": "no url, no source"}).encode()),
    ("invalid_utf8", b'{"id": "bad-3", "body": "caf\xe9"}'),
]
READY_DOWN_SECONDS = 15   # the idle matcher pings the database every 2 s
READY_UP_SECONDS = 30


def services_sh(*args: str) -> None:
    result = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), *args], capture_output=True, text=True,
                            timeout=180, check=False)
    assert result.returncode == 0, f"services.sh {' '.join(args)} failed:\n{result.stderr[-3000:]}"


def database_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "articles": conn.execute(text("SELECT count(*) FROM articles")).scalar_one(),
                "founded": conn.execute(text("SELECT count(*) FROM story_events WHERE kind = 'founded'")).scalar_one(),
            }
    finally:
        engine.dispose()


def test_dashboard_alerts_and_counters_against_a_real_prometheus(settings: Settings, tmp_path: Path) -> None:
    settings = replace(settings, lag_interval_seconds=1.0)  # the lag exporter follows within a second or two
    env = settings_env(settings)
    run_cli(["topics"], env)
    ports = {"prepare": free_port(), "match": free_port(), LAG_EXPORTER: free_port(), EXPLORER: free_port()}
    config = tmp_path / "prometheus.yml"
    config.write_text(scrape_config(ports, [ALERTS]))
    for role in ports:  # the scrape config mirrors the deploy one's job names and role labels
        assert f"job_name: newsdedup-{role}" in DEPLOY_SCRAPE_CONFIG.read_text()
        assert (f"target_label: role\n        replacement: {role}\n" in DEPLOY_SCRAPE_CONFIG.read_text()) == \
            (role != LAG_EXPORTER)

    # The explorer starts once the Kafka roles settled: a process starting beside them while they rejoined
    # their groups (kafka-python joins twice at start) was seen leaving both without partitions.
    roles = {name: start_role(name, env, port) for name, port in ports.items() if name != EXPLORER}
    try:
        with running_prometheus(config, tmp_path / "prometheus-data") as prometheus:
            wait_until_scraped_and_settled(prometheus, roles, settings)
            roles[EXPLORER] = start_role(EXPLORER, env, ports[EXPLORER])
            send_articles_and_malformed_messages(settings, env, tmp_path)
            wait_until_drained(prometheus, settings, roles)
            browse_the_explorer(prometheus, roles[EXPLORER])
            check_every_series_carries_role(roles)
            check_dashboard_queries_return_data(prometheus)
            check_alert_rules(prometheus)
            check_counters_agree_with_postgres_and_kafka(prometheus, settings)
            check_readiness_follows_postgres(prometheus, roles["match"])
        for role in roles.values():
            role.check_alive()
    finally:
        codes = {name: role.stop() for name, role in roles.items()}
    for name, code in codes.items():
        assert code == 0, f"{name} exited {code} on SIGTERM:\n{roles[name].tail()}"
        assert "stopping" in "".join(roles[name].log), roles[name].tail()


# -- the run ---------------------------------------------------------------------------------------------


def wait_until_scraped_and_settled(prometheus: Prometheus, roles: dict[str, Role], settings: Settings) -> None:
    """Both roles and the lag exporter scraped, the roles owning their topics' partitions, as Prometheus
    sees them, and the dead-letter counters scraped at 0 (so the first dead letter is an increase).
    Readiness is checked on its own, in check_readiness_follows_postgres."""
    expected = {"prepare": settings.raw_partitions, "match": settings.fingerprinted_partitions}

    def settled() -> bool:
        for role in roles.values():
            role.check_alive()
        up = prometheus.values(f'up{{job=~"newsdedup-({"|".join(roles)})"}}')
        owned = {dict(k)["role"]: v for k, v in prometheus.values(
            "sum by (role) (newsdedup_assigned_partitions)").items()}
        zero_letters = prometheus.value('count(newsdedup_dead_letters_total{role="prepare"} == 0)')
        assert len(up) == len(roles) and set(up.values()) == {1.0}, f"up: {up}"
        assert owned == expected, f"owned partitions: {owned}"
        assert zero_letters == len(REASONS), f"dead-letter counters at 0: {zero_letters}"
        return True

    try:
        eventually(settled, 45, "roles scraped and owning their partitions")
    except AssertionError as exc:
        tails = "\n".join(f"--- {name}:\n{role.tail(15)}" for name, role in roles.items())
        raise AssertionError(f"{exc}\n{tails}") from None


def send_articles_and_malformed_messages(settings: Settings, env: dict[str, str], tmp_path: Path) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    for _, value in MALFORMED:
        producer.send(settings.topic_raw, value=value, key=b"malformed")
    producer.flush()
    producer.close()
    lines = DEV_ARTICLES.read_text().splitlines(keepends=True)[:ARTICLES]
    slice_path = tmp_path / "articles.jsonl"
    slice_path.write_text("".join(lines))
    sent = run_cli(["ingest", str(slice_path), "--no-progress"], env)
    assert f"sent {ARTICLES}, rejected 0" in sent.stdout


def wait_until_drained(prometheus: Prometheus, settings: Settings, roles: dict[str, Role]) -> None:
    """Prepare handled every message, match every prepared article, and Prometheus scraped it all."""
    def drained() -> bool:
        for role in roles.values():
            role.check_alive()
        prepared = prometheus.value('sum(newsdedup_articles_total{role="prepare", outcome="prepared"})')
        rejected = prometheus.value('sum(newsdedup_articles_total{role="prepare", outcome="rejected"})')
        matched = prometheus.value('sum(newsdedup_articles_total{role="match"})')
        lag = prometheus.value("max(newsdedup_consumer_lag_messages)")
        outside = prometheus.value("max(newsdedup_group_lag_messages)")
        state = {"prepared": prepared, "rejected": rejected, "matched": matched, "max lag": lag, "group lag": outside}
        assert state == {"prepared": ARTICLES, "rejected": len(MALFORMED), "matched": ARTICLES, "max lag": 0,
                         "group lag": 0}, state
        return True

    eventually(drained, 60, "every article prepared, matched and scraped, lag 0 inside and outside", interval=1)


def browse_the_explorer(prometheus: Prometheus, explorer: Role) -> None:
    """A few pages and API calls over what the roles stored, so the explorer's request series exist."""
    eventually(lambda: prometheus.value('up{job="newsdedup-explorer"}') == 1, 30, "the explorer scraped")
    for path in ("/", "/api/stories?order=largest", "/api/lookup?url=https://example.com/not-seen"):
        status, _ = http_get(f"{explorer.url}{path}")
        assert status in (200, 404), (path, status)
    eventually(lambda: prometheus.value('sum(newsdedup_http_requests_total{role="explorer"})') >= 3, 15,
               "the explorer's requests scraped")


# -- (a) the dashboard and the alerts ----------------------------------------------------------------------


def check_every_series_carries_role(roles: dict[str, Role]) -> None:
    """The contract the dashboard's $role and the alerts' `on (job, instance, role)` rely on. The lag
    exporter's series carry the role whose consumer group they measure."""
    for role in roles.values():
        status, body = http_get(f"{role.url}/metrics")
        assert status == 200
        names = ("prepare", "match") if role.name == LAG_EXPORTER else (role.name,)
        for line in body.decode().splitlines():
            if line.startswith("newsdedup_"):
                assert any(f'role="{name}"' in line.split("}")[0] for name in names), f"{role.name}: {line}"


def check_dashboard_queries_return_data(prometheus: Prometheus) -> None:
    empty = []
    for panel, expr in dashboard_queries():
        if not prometheus.query(grafana_to_promql(expr)):
            empty.append(f"{panel}: {grafana_to_promql(expr)}")
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)


def check_alert_rules(prometheus: Prometheus) -> None:
    alerts = {"NewsdedupConsumerLagHigh", "NewsdedupConsumerStalled", "NewsdedupDeadLetters",
              "NewsdedupDatabaseErrors", "NewsdedupNoPartitionsAssigned", "NewsdedupMatcherNotReady",
              "NewsdedupTargetDown", "NewsdedupLagExporterDown", "NewsdedupUndecodableBatches",
              "NewsdedupDatabaseDiskFilling"}

    def evaluated() -> list[dict]:
        rules = prometheus.rules()
        return rules if all(rule["health"] != "unknown" for rule in rules) else []

    rules = eventually(evaluated, 10, "every alert rule evaluated once")
    assert {rule["name"] for rule in rules} == alerts
    for rule in rules:
        assert rule["type"] == "alerting", rule["name"]
        assert rule["health"] == "ok" and not rule.get("lastError"), (rule["name"], rule.get("lastError"))
        prometheus.query(rule["query"])  # raises unless the query succeeds

    # The only alert firing is the dead-letter one, once per reason sent, for prepare.
    sent = {reason for reason, _ in MALFORMED}

    def dead_letter_alerts() -> bool:
        firing = [a for a in prometheus.alerts() if a["state"] == "firing"]
        return {a["labels"]["alertname"] for a in firing} == {"NewsdedupDeadLetters"} and \
            {(a["labels"]["role"], a["labels"]["reason"]) for a in firing} == {("prepare", r) for r in sent}

    eventually(dead_letter_alerts, 10, f"NewsdedupDeadLetters firing for prepare and exactly {sorted(sent)}")


# -- (b) the counters against the rows and messages --------------------------------------------------------


def check_counters_agree_with_postgres_and_kafka(prometheus: Prometheus, settings: Settings) -> None:
    counts = database_counts(settings.database_url)
    assert counts["articles"] > 0 and counts["founded"] > 0
    stored = prometheus.value('sum(newsdedup_articles_total{role="match", outcome=~"canonical|near|exact"})')
    assert stored == counts["articles"]
    assert prometheus.value('sum(newsdedup_stories_created_total{role="match"})') == counts["founded"]

    letters = read_topic(settings.kafka_bootstrap_servers, settings.topic_dead_letters)
    by_reason = {dict(k)["reason"]: v for k, v in prometheus.values(
        'sum by (reason) (newsdedup_dead_letters_total{role="prepare"}) > 0').items()}
    assert prometheus.value('sum(newsdedup_dead_letters_total{role="prepare"})') == len(letters) == len(MALFORMED)
    assert by_reason == dict(reasons_of(letters))
    assert prometheus.value('sum(newsdedup_dead_letters_total{role="match"})') == 0

    # Lag series exist exactly for the partitions each role owns, and are 0 once drained.
    lag = prometheus.values("count by (role, topic) (newsdedup_consumer_lag_messages)")
    assert {dict(k)["topic"]: v for k, v in lag.items()} == {
        settings.topic_raw: settings.raw_partitions, settings.topic_fingerprinted: settings.fingerprinted_partitions}
    assert prometheus.value("max(newsdedup_consumer_lag_seconds)") == 0
    outside = prometheus.values("count by (role, topic) (newsdedup_group_lag_messages)")
    assert {dict(k)["topic"]: v for k, v in outside.items()} == {
        settings.topic_raw: settings.raw_partitions, settings.topic_fingerprinted: settings.fingerprinted_partitions}
    assert prometheus.value("max(newsdedup_group_lag_messages)") == 0


# -- (c) readiness follows PostgreSQL ----------------------------------------------------------------------


def check_readiness_follows_postgres(prometheus: Prometheus, match: Role) -> None:
    """/readyz of the matcher: 200 while it runs, 503 (database check false) within seconds of
    PostgreSQL going down, 200 again once it is back; the process lives on throughout."""
    def readyz() -> tuple[int, dict]:
        match.check_alive()
        status, body = http_get(f"{match.url}/readyz")
        return status, json.loads(body)

    running = readyz()
    assert running[1]["alive"] is True and running[1]["checks"].get("database") is True, running
    try:
        services_sh("down", "postgres")
        _, answer = eventually(lambda: (s := readyz())[0] == 503 and not s[1]["checks"]["database"] and s,
                                    READY_DOWN_SECONDS, "/readyz 503, database false, with PostgreSQL down")
        assert answer["alive"] is True, answer
        eventually(lambda: prometheus.value('newsdedup_ready{role="match"}') == 0, 10, "newsdedup_ready 0 scraped")
        eventually(lambda: any(a["labels"]["alertname"] == "NewsdedupMatcherNotReady" and a["state"] == "pending"
                               for a in prometheus.alerts()), 10, "NewsdedupMatcherNotReady pending")
    finally:
        services_sh("up", "postgres")
    back = eventually(lambda: (s := readyz())[1]["checks"]["database"] and s, READY_UP_SECONDS,
                      "/readyz database check true with PostgreSQL back")

    # Last, so that the database part above runs whatever the other checks say.
    for moment, (status, answer) in (("while running", running), ("with PostgreSQL back", back)):
        assert answer["checks"].get("kafka") is True, (
            f"/readyz {moment}: the kafka check is false although the matcher has just consumed every message "
            f"({answer}); see the workers' use of KafkaConsumer.bootstrap_connected()")
        assert status == 200, f"/readyz {moment}: {status} {answer}"
    eventually(lambda: readyz()[0] == 200, READY_UP_SECONDS, "/readyz 200 with PostgreSQL back")
    eventually(lambda: prometheus.value('newsdedup_ready{role="match"}') == 1, 10, "newsdedup_ready 1 scraped")
