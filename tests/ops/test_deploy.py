"""The operator's files: Prometheus config and alerts (with their promtool unit tests), the Grafana
dashboard and provisioning, docker-compose.yml, the Dockerfile and the PostgreSQL init script.

What these tests need is installed through the project's scripts, as CI has nothing else:
``scripts/prometheus.sh install`` (Debian's prometheus: promtool 2.42 and the server) and
``scripts/compose.sh install`` (the Compose plugin, built from the Go module proxy; about two
minutes the first time on a machine). No Docker engine is needed.

The project has no YAML parser among its dependencies, so YAML is read through the tools that
own it: the alert rules as a real Prometheus loads them (its /api/v1/rules), and the compose
file as ``docker compose config --format json`` resolves it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from consumers.metrics import OUTCOMES, REASONS, ExplorerMetrics, LagMetrics, Metrics
from tests.integration.conftest import alive, free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "newsdedup.json"
DATASOURCE = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = DEPLOY / "grafana" / "provisioning" / "dashboards" / "newsdedup.yml"
RUNBOOK = DEPLOY / "RUNBOOK.md"
INIT_SQL = DEPLOY / "postgres" / "init.sql"

ALERT_NAMES = {
    "NewsdedupConsumerLagHigh",
    "NewsdedupConsumerStalled",
    "NewsdedupDeadLetters",
    "NewsdedupDatabaseErrors",
    "NewsdedupNoPartitionsAssigned",
    "NewsdedupMatcherNotReady",
    "NewsdedupTargetDown",
    "NewsdedupLagExporterDown",
    "NewsdedupUndecodableBatches",
    "NewsdedupDatabaseDiskFilling",
}
# The metric each alert is about (the issue names them).
ALERT_METRICS = {
    # measured outside the roles (newsdedup lag-exporter), not by their poll loops
    "NewsdedupConsumerLagHigh": {"newsdedup_group_lag_messages", "newsdedup_group_committed_offset",
                                 "newsdedup_log_end_offset"},
    "NewsdedupConsumerStalled": {"newsdedup_consumer_lag_messages", "newsdedup_articles_total",
                                 "newsdedup_assigned_partitions"},
    "NewsdedupNoPartitionsAssigned": {"newsdedup_assigned_partitions"},
    "NewsdedupDeadLetters": {"newsdedup_dead_letters_total"},
    "NewsdedupDatabaseErrors": {"newsdedup_database_errors_total"},
    "NewsdedupMatcherNotReady": {"newsdedup_ready"},
    "NewsdedupTargetDown": {"up"},
    "NewsdedupLagExporterDown": {"newsdedup_lag_exporter_up", "newsdedup_lag_exporter_last_success_timestamp_seconds",
                                 "up"},
    "NewsdedupUndecodableBatches": {"newsdedup_undecodable_batches_total", "newsdedup_blocked_partitions"},
    "NewsdedupDatabaseDiskFilling": {"newsdedup_database_size_bytes", "newsdedup_database_disk_bytes"},
}
# Labels Prometheus adds to every scraped series: job and instance, and role from the scrape config.
TARGET_LABELS = {"job", "instance", "role"}
# Made by Prometheus itself, without a role label (the scrape config's target label gives it one).
WITHOUT_ROLE = {"up"}
# Panel title -> metrics its queries must use: the dashboard an operator reads at a glance.
REQUIRED_PANELS = {
    "Throughput by outcome": {"newsdedup_articles_total"},
    "Duplicate ratio": {"newsdedup_articles_total"},
    "Stage latency p95 by stage": {"newsdedup_stage_duration_seconds_bucket"},
    "Stage latency p50 by stage": {"newsdedup_stage_duration_seconds_bucket"},
    "End-to-end latency": {"newsdedup_end_to_end_seconds_bucket"},
    "Consumer lag (messages) per partition": {"newsdedup_group_lag_messages"},
    "Consumed vs produced (messages/s)": {"newsdedup_group_committed_offset", "newsdedup_log_end_offset"},
    "Lag measurement age": {"newsdedup_lag_exporter_last_success_timestamp_seconds"},
    "Assigned partitions": {"newsdedup_assigned_partitions"},
    "Index size": {"newsdedup_index_articles", "newsdedup_index_stories"},
    "Index memory": {"newsdedup_index_memory_bytes"},
    "Dead letters by reason": {"newsdedup_dead_letters_total"},
    "Database write latency (per batch)": {"newsdedup_database_write_duration_seconds_bucket"},
    "Database errors and retries": {"newsdedup_database_errors_total"},
    "Commits and commit failures": {"newsdedup_commits_total", "newsdedup_commit_failures_total"},
    "Rebalances": {"newsdedup_rebalances_total"},
    "Story size distribution": {"newsdedup_story_size_articles_bucket"},
    "Build / version": {"newsdedup_build_info"},
    "Targets up": {"up"},
    "Database size": {"newsdedup_database_size_bytes"},
    "Rows per table": {"newsdedup_database_rows"},
    "Oldest stored article age": {"newsdedup_oldest_article_timestamp_seconds"},
}


def run(command: list[str], timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


# -- tools ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def promtool() -> str:
    run(["bash", "scripts/prometheus.sh", "install"])
    path = shutil.which("promtool")
    assert path, "scripts/prometheus.sh install left no promtool on PATH"
    return path


@pytest.fixture(scope="session")
def compose() -> list[str]:
    run(["bash", "scripts/compose.sh", "install"])
    if shutil.which("docker") and run(["docker", "compose", "version"], check=False).returncode == 0:
        return ["docker", "compose"]
    plugin = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "cli-plugins" / "docker-compose"
    assert plugin.is_file(), f"scripts/compose.sh install left no {plugin}"
    return [str(plugin)]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="session")
def loaded_rules(promtool: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """deploy/prometheus/prometheus.yml and its rules as a real Prometheus loads them
    (through scripts/prometheus.sh run): alert name -> the rule from /api/v1/rules, with its group."""
    port = free_port()
    data = tmp_path_factory.mktemp("prometheus")
    started = run(["bash", "scripts/prometheus.sh", "run", str(PROMETHEUS_CONFIG), str(port), str(data)], timeout=120)
    pid = int(started.stdout.strip())
    try:
        groups = get_json(f"http://127.0.0.1:{port}/api/v1/rules")["data"]["groups"]
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.1)
    rules = {}
    for group in groups:
        for rule in group["rules"]:
            assert rule["type"] == "alerting", f"unexpected {rule['type']} rule {rule['name']}"
            assert rule["name"] not in rules, f"alert {rule['name']} is defined twice"
            rules[rule["name"]] = {**rule, "group": group["name"]}
    return rules


# -- metric names -----------------------------------------------------------------------------------


def metric_labels() -> dict[str, set[str]]:
    """Every series name consumers/metrics.py exports (the roles' Metrics and the lag exporter's
    LagMetrics), as prometheus_client writes them, plus `up`, with the label names of each (without
    the target labels Prometheus adds)."""
    labels: dict[str, set[str]] = {"up": set()}
    for metrics in (Metrics("x"), LagMetrics(), ExplorerMetrics()):
        declared = {m._name: set(m._labelnames) for m in vars(metrics).values()  # no public API for label names
                    if hasattr(m, "_labelnames")}
        for family in metrics.registry.collect():
            names = declared[family.name]
            if family.type == "counter":
                labels[family.name + "_total"] = names
            elif family.type == "histogram":
                labels[family.name + "_bucket"] = names | {"le"}
                labels[family.name + "_sum"] = labels[family.name + "_count"] = names
            elif family.type == "gauge":
                labels[family.name] = names
            else:
                raise AssertionError(f"{family.name}: type {family.type} not handled here")
    return labels


def known_metric_names() -> set[str]:
    return set(metric_labels())


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names, durations or parts of strings and Grafana variables."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)       # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)     # ranges and subqueries
    text = _LABEL_LIST.sub(" ", text)             # by (...), on (...), group_left (...)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}


@pytest.mark.parametrize(("expr", "expected"), [
    ('sum by (role, le) (rate(a_bucket{x="y", i=~"$instance"}[$__rate_interval]))', {"a_bucket"}),
    ("histogram_quantile(0.95, sum by (le) (rate(b_bucket[5m]))) * 60", {"b_bucket"}),
    ('time() - c{role=~"$role"}', {"c"}),
    ("max by (job) (d) > 0 and on (job) sum by (job) (increase(e[5m])) == 0", {"d", "e"}),
    ('f or absent(g{role="match"}) unless h offset 15m', {"f", "g", "h"}),
    ('label_replace(i, "dst", "$1", "src", "(.*)") > bool 1e3', {"i"}),
    ("up == 0", {"up"}),
])
def test_metric_names_finds_exactly_the_selected_metrics(expr, expected):
    assert metric_names(expr) == expected


_SELECTOR = re.compile(r"(?<![\w:])([A-Za-z_:][\w:]*)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*(?:,|$)')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
# Label values the workers use, where metrics.py names them.
KNOWN_VALUES = {
    "role": set(OUTCOMES) | {ExplorerMetrics().role},
    "outcome": {outcome for outcomes in OUTCOMES.values() for outcome in outcomes},
    "reason": set(REASONS),
}


def label_problems(expr: str) -> list[str]:
    """Labels a query uses that its metrics do not have, and literal values no worker reports."""
    labels = metric_labels()
    problems = []
    selected = set(TARGET_LABELS).union(*(labels.get(name, set()) for name in metric_names(expr)))
    for name, body in _SELECTOR.findall(expr):
        available = labels.get(name, set()) | TARGET_LABELS
        for label, op, value in _MATCHER.findall(body):
            if label not in available:
                problems.append(f"{name} has no label {label}")
            value = json.loads(value)
            if label in KNOWN_VALUES and op in {"=", "=~"} and "$" not in value:
                words = set(value.split("|")) if op == "=~" else {value}
                if all(re.fullmatch(r"\w+", word) for word in words) and not words <= KNOWN_VALUES[label]:
                    problems.append(f"{name}: no worker reports {label} {sorted(words - KNOWN_VALUES[label])}")
    for group in _GROUPING.findall(expr):
        for label in filter(None, (part.strip() for part in group.split(","))):
            if label not in selected:
                problems.append(f"grouping by {label}, which none of the selected metrics has")
    return problems


@pytest.mark.parametrize(("expr", "problem"), [
    ('sum by (role, le) (rate(newsdedup_database_write_duration_seconds_bucket{role=~"$role"}[5m]))', None),
    ('rate(newsdedup_database_write_duration_seconds_bucket{stage="db_write"}[5m])', "has no label stage"),
    ('newsdedup_articles_total{role="match", outcome=~"near|exact"}', None),
    ('newsdedup_articles_total{outcome="copied"}', "no worker reports outcome ['copied']"),
    ('sum by (since) (newsdedup_lsh_candidates_bucket)', "grouping by since"),
    ('up{job=~"newsdedup-.*", instance=~"$instance"} == 0', None),
])
def test_label_problems_finds_labels_the_metrics_do_not_have(expr, problem):
    found = label_problems(expr)
    assert (problem is None and not found) or (problem is not None and any(problem in p for p in found)), found


def test_every_metric_carries_role():
    """The dashboard's $role and the alerts' `on (job, instance, role)` rely on it."""
    without = {name for name, names in metric_labels().items() if "role" not in names}
    assert without == WITHOUT_ROLE


def test_known_metric_names_are_what_prometheus_client_exposes():
    from prometheus_client import generate_latest

    metrics = Metrics("x")
    metrics.articles.labels(role="x", outcome="near").inc()
    metrics.stage_seconds.labels(role="x", stage="verify").observe(0.1)
    exposed = {line.split("{")[0].split(" ")[0]
               for line in generate_latest(metrics.registry).decode().splitlines() if line and line[0] != "#"}
    known = known_metric_names()
    assert exposed <= known, exposed - known
    assert {"newsdedup_articles_total", "newsdedup_stage_duration_seconds_bucket"} <= exposed
    assert "newsdedup_articles" not in known  # counters exist only with _total


# -- Prometheus ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", [
    ["check", "config", str(PROMETHEUS_CONFIG)],
    ["check", "rules", str(ALERTS)],
    ["test", "rules", str(ALERTS_TEST)],
], ids=["check-config", "check-rules", "test-rules"])
def test_promtool_passes(promtool, check):
    result = run([promtool, *check], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_sh_check_passes(promtool):
    run(["bash", "scripts/prometheus.sh", "check"])


def test_scrape_config_discovers_every_replica_by_service_name():
    text = PROMETHEUS_CONFIG.read_text()
    jobs = re.split(r"\n  - job_name: ", text)[1:]
    by_name = {job.split("\n", 1)[0].strip(): job for job in jobs}
    assert set(by_name) == {"prometheus", "newsdedup-prepare", "newsdedup-match", "newsdedup-lag-exporter",
                            "newsdedup-explorer"}
    assert "localhost:9090" in by_name["prometheus"]
    for job, service in (("newsdedup-prepare", "prepare"), ("newsdedup-match", "match"),
                         ("newsdedup-lag-exporter", "lag-exporter"), ("newsdedup-explorer", "explorer")):
        body = by_name[job]
        assert "dns_sd_configs:" in body and "static_configs" not in body, job
        assert re.search(rf'names: \["{service}"\]', body), job
        # The explorer serves /metrics beside its pages, on its own port (docker-compose.yml's explorer).
        assert re.search(rf"\bport: {8080 if service == 'explorer' else 9400}\b", body), job
        assert "honor_labels: true" in body, job
        if service == "lag-exporter":  # its series carry the role whose group they measure
            assert "target_label: role" not in body
        else:
            assert re.search(rf"target_label: role\n\s+replacement: {service}\n", body), job
    assert re.search(r"rule_files:\n  - alerts.yml\n", text)


def test_every_alert_is_loaded_and_documented(loaded_rules):
    assert set(loaded_rules) == ALERT_NAMES
    headings = {re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                for line in RUNBOOK.read_text().splitlines() if line.startswith("#")}
    for name, rule in loaded_rules.items():
        assert rule["health"] in {"ok", "unknown"}, (name, rule.get("lastError"))
        assert rule["labels"].get("severity") in {"critical", "warning"}, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "deploy/RUNBOOK.md", name
        assert anchor == name.lower() and anchor in headings, f"{name}: no RUNBOOK.md section #{anchor}"


def test_alerts_use_only_exported_metrics(loaded_rules):
    known = known_metric_names()
    for name, rule in loaded_rules.items():
        used = metric_names(rule["query"])
        assert used, f"{name}: no metric found in {rule['query']}"
        assert used <= known, f"{name} uses metrics consumers/metrics.py does not export: {used - known}"
        assert ALERT_METRICS[name] <= used, f"{name} should be about {ALERT_METRICS[name]}, uses {used}"


def test_alerts_use_only_labels_the_metrics_have(loaded_rules):
    for name, rule in loaded_rules.items():
        assert not label_problems(rule["query"]), (name, label_problems(rule["query"]))


def test_stall_alert_leaves_standbys_out(loaded_rules):
    query = " ".join(loaded_rules["NewsdedupConsumerStalled"]["query"].split())
    assert "and on (job, instance, role) newsdedup_assigned_partitions > 0" in query


def test_lag_alert_uses_the_outside_measurement_only(loaded_rules):
    """Issue 11: the roles' own lag gauges read 0, or vanish, while a role is wedged, dead or not started."""
    used = metric_names(loaded_rules["NewsdedupConsumerLagHigh"]["query"])
    assert not {name for name in used if name.startswith("newsdedup_consumer_lag")}, used


def test_lag_alert_waits_ten_minutes(loaded_rules):
    assert loaded_rules["NewsdedupConsumerLagHigh"]["duration"] == 600


def write_rules(path: Path, rules: dict[str, dict[str, Any]], exprs: dict[str, str]) -> None:
    """A rules file (JSON is YAML) equal to the loaded one, with the given expressions."""
    groups: dict[str, dict[str, Any]] = {}
    for name, rule in rules.items():
        group = groups.setdefault(rule["group"], {"name": rule["group"], "rules": []})
        group["rules"].append({"alert": name, "expr": exprs.get(name, rule["query"]),
                               "for": f"{int(rule['duration'])}s", "labels": rule["labels"],
                               "annotations": rule["annotations"]})
    path.write_text(json.dumps({"groups": list(groups.values())}, indent=1))


def test_alert_unit_tests_cover_every_alert_firing_and_silent(promtool, loaded_rules, tmp_path):
    """Mutate each alert in turn; alerts_test.yml must catch both mutations:
    never firing (so a test expects it to fire) and firing whenever its expression is empty
    (so a test expects silence where the expression stayed empty for longer than `for`)."""
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yml")
    rules_file = tmp_path / ALERTS.name
    assert f"- {ALERTS.name}" in ALERTS_TEST.read_text()

    def unit_tests_pass(exprs: dict[str, str]) -> bool:
        write_rules(rules_file, loaded_rules, exprs)
        return run([promtool, "test", "rules", str(tmp_path / "alerts_test.yml")], check=False).returncode == 0

    assert unit_tests_pass({}), "the rules rebuilt from Prometheus' API should pass the unit tests unchanged"
    uncovered = []
    for name, rule in loaded_rules.items():
        if unit_tests_pass({name: "absent(vector(1))"}):
            uncovered.append(f"{name}: no test expects it to fire")
        if unit_tests_pass({name: f"({rule['query']}) or on () vector(1)"}):
            uncovered.append(f"{name}: no test expects it to stay silent")
    assert not uncovered, uncovered


# -- Grafana ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels_of(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows excluded, nested row panels included)."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def datasource_uid() -> str:
    match = re.search(r"^\s+uid:\s*(\S+)\s*$", DATASOURCE.read_text(), re.MULTILINE)
    assert match, f"{DATASOURCE} sets no datasource uid"
    return match.group(1)


def test_dashboard_has_the_required_panels(dashboard):
    titles = {panel["title"]: panel for panel in panels_of(dashboard)}
    missing = set(REQUIRED_PANELS) - set(titles)
    assert not missing, f"missing panels: {missing}"
    for title, metrics in REQUIRED_PANELS.items():
        used = set().union(*(metric_names(t["expr"]) for t in titles[title]["targets"]))
        assert metrics <= used, f"panel {title!r} should show {metrics}, uses {used}"
    assert not any("db_write" in t["expr"] for panel in panels_of(dashboard) for t in panel["targets"]), \
        "database writes have their own histogram, newsdedup_database_write_duration_seconds"
    assert all(t["expr"].startswith("histogram_quantile(")
               for title in ("Stage latency p95 by stage", "End-to-end latency") for t in titles[title]["targets"])


def test_dashboard_queries_use_only_exported_metrics(dashboard):
    known = known_metric_names()
    for panel in panels_of(dashboard):
        assert panel.get("targets"), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            used = metric_names(target["expr"])
            assert used, f"panel {panel['title']!r}: no metric in {target['expr']}"
            assert used <= known, f"panel {panel['title']!r} uses unknown metrics {used - known}"


def test_dashboard_queries_use_only_labels_the_metrics_have(dashboard):
    for panel in panels_of(dashboard):
        for target in panel["targets"]:
            assert not label_problems(target["expr"]), (panel["title"], label_problems(target["expr"]))


def test_dashboard_filters_every_role_labelled_metric_by_role(dashboard):
    """$role applies to every panel: each selector of a metric with a role label filters on it."""
    labels = metric_labels()
    for panel in panels_of(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            bodies = dict(_SELECTOR.findall(expr))
            for name in metric_names(expr) - WITHOUT_ROLE:
                assert "role" in labels[name]
                assert re.search(r"\brole\s*(=~|=)", bodies.get(name, "")), \
                    f"panel {panel['title']!r}: {name} is not filtered by role in {expr}"


def grafana_to_promql(expr: str) -> str:
    for variable, value in (("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h")):
        expr = expr.replace(variable, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)  # template variables sit in regex matchers


def test_dashboard_queries_are_valid_promql(dashboard, promtool, tmp_path):
    rules = [{"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": grafana_to_promql(target["expr"])}
             for panel in panels_of(dashboard) for target in panel["targets"]]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(path)], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_uses_the_provisioned_datasource(dashboard):
    uid = datasource_uid()
    for panel in panels_of(dashboard):
        assert panel["datasource"]["uid"] == uid, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] == uid, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == uid, variable["name"]


def test_dashboard_has_instance_and_role_variables(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"instance", "role"} <= set(variables)
    known = known_metric_names()
    for name in ("instance", "role"):
        variable = variables[name]
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(rf"label_values\((.+), {name}\)", query)
        assert match and variable["type"] == "query", f"${name} should be label_values(..., {name}): {query}"
        assert metric_names(match.group(1)) <= known
        assert variable["includeAll"] and variable["multi"]
    used = " ".join(t["expr"] for p in panels_of(dashboard) for t in p["targets"])
    assert '=~"$instance"' in used and '=~"$role"' in used


def test_dashboard_layout_has_no_overlaps(dashboard):
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_grafana_provisioning_matches_the_compose_mounts(compose_config):
    provider = DASHBOARD_PROVIDER.read_text()
    path = re.search(r"^\s+path:\s*(\S+)\s*$", provider, re.MULTILINE)
    assert path and re.search(r"^\s+type:\s*file\s*$", provider, re.MULTILINE)
    mounts = {volume["target"]: volume.get("source") for volume in compose_config["services"]["grafana"]["volumes"]}
    assert Path(mounts[path.group(1)]) == DASHBOARD.parent
    assert Path(mounts["/etc/grafana/provisioning"]) == DEPLOY / "grafana" / "provisioning"
    datasource = DATASOURCE.read_text()
    assert re.search(r"^\s+type:\s*prometheus\s*$", datasource, re.MULTILINE)
    assert re.search(r"^\s+url:\s*http://prometheus:9090\s*$", datasource, re.MULTILINE)


# -- docker compose, Dockerfile, PostgreSQL ---------------------------------------------------------------


@pytest.fixture(scope="session")
def compose_config(compose) -> dict[str, Any]:
    result = run([*compose, "-f", "docker-compose.yml", "config", "--format", "json"], timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_docker_compose_config_passes(compose):
    result = run([*compose, "-f", "docker-compose.yml", "config", "--quiet"], timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def test_compose_stack_uses_the_official_images(compose_config):
    services = compose_config["services"]
    image = {name: service.get("image", "") for name, service in services.items()}
    assert re.fullmatch(r"apache/kafka:4\.\d+\.\d+", image["kafka"])
    assert image["postgres"] == "postgres:16"
    assert image["prometheus"].startswith("prom/prometheus:")
    assert image["grafana"].startswith("grafana/grafana:")
    for name in ("migrate", "prepare", "match", "lag-exporter", "explorer", "demo-producer"):
        assert Path(services[name]["build"]["context"]) == REPO, name
        assert image[name] == image["prepare"], name
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_compose_roles_run_the_right_commands(compose_config):
    services = compose_config["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["prepare"]["command"] == ["prepare"]
    assert services["match"]["command"] == ["match"]
    assert services["explorer"]["command"] == ["serve"]
    assert services["lag-exporter"]["command"] == ["lag-exporter"]
    assert services["demo-producer"]["command"][0] == "ingest"
    assert services["demo-producer"]["command"][-1] == "samples/articles.jsonl"
    for one_shot in ("migrate", "demo-producer"):
        assert services[one_shot].get("restart", "no") == "no", one_shot
    assert services["match"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_prepare_scales_and_workers_have_healthchecks(compose_config):
    services = compose_config["services"]
    prepare = services["prepare"]
    assert not prepare.get("ports"), "a fixed host port would stop `--scale prepare=N`"
    assert "container_name" not in prepare
    assert prepare.get("deploy", {}).get("replicas", 1) >= 1
    for name in ("prepare", "match", "lag-exporter"):
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "/healthz" in test and ":9400" in test, name
    explorer = services["explorer"]
    probe = " ".join(explorer["healthcheck"]["test"])
    assert "/healthz" in probe and ":8080" in probe
    assert explorer["environment"]["NEWSDEDUP_EXPLORER_PORT"] == "8080"


def test_database_roles_are_least_privilege(compose_config):
    services = compose_config["services"]
    migrate_env = services["migrate"]["environment"]
    assert "://newsdedup_owner:" in migrate_env["NEWSDEDUP_MIGRATION_DATABASE_URL"]
    assert "://newsdedup_app:" in services["match"]["environment"]["NEWSDEDUP_DATABASE_URL"]
    explorer_env = services["explorer"]["environment"]
    assert "://newsdedup_reader:" in explorer_env["NEWSDEDUP_EXPLORER_DATABASE_URL"]
    assert not {"NEWSDEDUP_DATABASE_URL", "NEWSDEDUP_MIGRATION_DATABASE_URL"} & set(explorer_env)
    for name in ("prepare", "lag-exporter", "demo-producer"):
        assert not any("DATABASE_URL" in key for key in services[name].get("environment", {})), name
    mounts = {volume["target"]: volume.get("source") for volume in services["postgres"]["volumes"]}
    init = [source for target, source in mounts.items() if target.startswith("/docker-entrypoint-initdb.d/")]
    assert [Path(source) for source in init] == [INIT_SQL]
    assert {"NEWSDEDUP_PG_OWNER_PASSWORD", "NEWSDEDUP_PG_APP_PASSWORD"} <= set(services["postgres"]["environment"])


def test_prometheus_service_loads_this_config(compose_config):
    prometheus = compose_config["services"]["prometheus"]
    config_flag = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    config_path = Path(config_flag.split("=", 1)[1])
    mounts = {volume["target"]: volume.get("source") for volume in prometheus["volumes"]}
    assert Path(mounts[str(config_path.parent)]) / config_path.name == PROMETHEUS_CONFIG


def sql_statements(text: str) -> set[str]:
    """GRANT / REVOKE / ALTER statements, whitespace-normalised, comments dropped."""
    text = re.sub(r"--[^\n]*", "", text)
    return {" ".join(statement.split()) for statement in re.findall(r"(?:GRANT|REVOKE|ALTER)\b[^;]*;", text)}


def test_init_sql_grants_what_services_sh_grants():
    services_sh = (REPO / "scripts" / "services.sh").read_text()
    expected = sql_statements("\n".join(re.findall(r"<<'SQL'\n(.*?)\nSQL\n", services_sh, re.DOTALL)))
    assert len(expected) >= 8, "could not find the provisioning SQL in scripts/services.sh"
    missing = expected - sql_statements(INIT_SQL.read_text())
    assert not missing, f"deploy/postgres/init.sql lacks: {missing}"


def test_dockerfile_builds_a_non_root_image_of_the_project():
    text = (REPO / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert bases and all(base == "python:3.11-slim" for base in bases), bases
    assert re.search(r"pip (?:wheel|install)\b.*\s\.\s*$", text, re.MULTILINE), "the project is not pip-installed"
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r'^ENTRYPOINT \["newsdedup"\]$', text, re.MULTILINE)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".git" in ignored and ".venv" in ignored and "samples" not in ignored


# -- the secured variant: docker-compose.secure.yml over docker-compose.yml ---------------------------------

SECURE_OVERRIDE = REPO / "docker-compose.secure.yml"
SECURE_BROKER = DEPLOY / "kafka" / "secure-broker.sh"
SECURE_HBA = DEPLOY / "postgres" / "pg_hba.secure.conf"
# The services that run the newsdedup image in the secured stack, and their Kafka principal.
SECURE_PRINCIPALS = {"kafka-setup": "admin", "prepare": "prepare", "match": "match", "lag-exporter": "lag-exporter",
                     "demo-producer": "ingest"}


@pytest.fixture(scope="session")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What scripts/compose-secrets.sh makes, in a folder of this session."""
    folder = tmp_path_factory.mktemp("compose") / "secrets"
    env = {**os.environ, "NEWSDEDUP_SECRETS_DIR": str(folder)}
    for attempt in ("first", "again"):  # the second run must change nothing
        result = subprocess.run(["bash", "scripts/compose-secrets.sh"], cwd=REPO, env=env, capture_output=True,
                                text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert ("nothing to make" in result.stderr) == (attempt == "again"), result.stderr
    return folder


def secure_compose(compose: list[str], secrets_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEWSDEDUP_SECRETS_DIR": str(secrets_dir)}
    return subprocess.run([*compose, "-f", "docker-compose.yml", "-f", SECURE_OVERRIDE.name, *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def secure_config(compose, secrets_dir: Path) -> dict[str, Any]:
    result = secure_compose(compose, secrets_dir, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def mounted(service: dict[str, Any]) -> dict[str, str]:
    """Secret name -> where the service sees it."""
    return {secret["source"]: secret.get("target") or f"/run/secrets/{secret['source']}"
            for secret in service.get("secrets", [])}


def test_secure_compose_config_passes(compose, secrets_dir: Path):
    result = secure_compose(compose, secrets_dir, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_secure_config_holds_no_secret_value(compose, secrets_dir: Path):
    """Passwords live in the secret files only: not in the resolved config, so not in any environment."""
    rendered = secure_compose(compose, secrets_dir, "config").stdout
    values = [path.read_text().strip() for path in secrets_dir.iterdir() if path.name.endswith("-password")]
    assert len(values) >= 10 and all(len(value) >= 32 for value in values)
    assert not [value for value in values if value in rendered]
    assert "dev-pw" not in rendered and "postgres-dev-pw" not in rendered


def test_each_secured_role_has_its_own_kafka_principal_over_sasl_ssl(secure_config):
    services = secure_config["services"]
    for name, principal in SECURE_PRINCIPALS.items():
        env, secrets = services[name]["environment"], mounted(services[name])
        assert env["NEWSDEDUP_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
        assert env["NEWSDEDUP_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
        assert env["NEWSDEDUP_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9094", name
        assert env["NEWSDEDUP_KAFKA_SASL_USERNAME"] == principal, name
        assert env["NEWSDEDUP_KAFKA_SSL_CAFILE"] == secrets["newsdedup_ca"], name
        own = f"kafka_{principal.replace('-', '_')}_password"
        assert env["NEWSDEDUP_KAFKA_SASL_PASSWORD_FILE"] == secrets[own], name
        assert "NEWSDEDUP_KAFKA_SASL_PASSWORD" not in env, name
        assert not [s for s in secrets if s.startswith("kafka_") and s.endswith("_password") and s != own], \
            f"{name} sees another principal's password"
    for name in ("prepare", "match", "lag-exporter", "demo-producer"):
        assert services[name]["depends_on"]["kafka-setup"]["condition"] == "service_completed_successfully", name


def test_each_secured_service_loads_its_settings_from_its_mounted_secrets(secure_config, secrets_dir: Path):
    """The roles' environment, with /run/secrets/X pointing at the generated files, is valid for
    load_settings: every variable is a real setting, every _FILE form exists, the URLs verify the server."""
    from sqlalchemy.engine import make_url

    from consumers.settings import load_settings

    services = secure_config["services"]
    files = {name: Path(secret["file"]) for name, secret in secure_config["secrets"].items()}
    assert all(path.parent == secrets_dir and path.is_file() for path in files.values()), files
    loaded = {}
    for name in (*SECURE_PRINCIPALS, "migrate"):
        where = {target: str(files[source]) for source, target in mounted(services[name]).items()}
        loaded[name] = load_settings({key: where.get(value, value)
                                      for key, value in services[name]["environment"].items()})
        for field in ("database_url", "migration_database_url"):
            parsed = make_url(getattr(loaded[name], field) or "sqlite://")
            if parsed.get_backend_name() == "sqlite":  # the default: this service uses no database
                continue
            assert parsed.query["sslmode"] == "verify-full", (name, field)
            assert parsed.query["sslrootcert"] in mounted(services[name]).values(), (name, field)
            assert parsed.host == "postgres", (name, field)
    assert make_url(loaded["migrate"].migration_database_url).username == "newsdedup_owner"
    assert make_url(loaded["match"].database_url).username == "newsdedup_app"
    assert loaded["match"].kafka_sasl_password == (secrets_dir / "kafka-match-password").read_text().strip()
    for name in ("prepare", "lag-exporter", "demo-producer", "kafka-setup"):  # no database credentials
        assert not [s for s in mounted(services[name]) if s.startswith(("database_url", "pg_"))], name


def test_secured_kafka_takes_sasl_ssl_only_and_enforces_acls(secure_config):
    kafka = secure_config["services"]["kafka"]
    assert not kafka.get("ports"), "the secured broker publishes no port"
    assert kafka["entrypoint"][-1] == "/opt/newsdedup/secure-broker.sh"
    volumes = {volume["target"]: volume.get("source") for volume in kafka["volumes"]}
    assert Path(volumes["/opt/newsdedup/secure-broker.sh"]) == SECURE_BROKER
    script = SECURE_BROKER.read_text()
    protocols = re.search(r"^listener\.security\.protocol\.map=(.*)$", script, re.MULTILINE).group(1)
    assert "PLAINTEXT" not in protocols and "SASL_SSL:SASL_SSL" in protocols, protocols
    assert re.search(r"^listeners=SASL_SSL://:9094,CONTROLLER://127\.0\.0\.1:9093$", script, re.MULTILINE)
    for line in ("sasl.enabled.mechanisms=SCRAM-SHA-512", "allow.everyone.if.no.acl.found=false",
                 "listener.name.controller.ssl.client.auth=required", "super.users=User:admin;User:CN=kafka",
                 "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"):
        assert re.search(rf"^{re.escape(line)}$", script, re.MULTILINE), line
    principals = set(re.search(r"^PRINCIPALS=\((.*)\)$", script, re.MULTILINE).group(1).split())
    assert principals == set(SECURE_PRINCIPALS.values())
    assert {f"kafka_{p.replace('-', '_')}_password" for p in principals} <= set(mounted(kafka))
    assert "kafka_broker_keystore" in mounted(kafka)
    assert "secure-admin.properties" in " ".join(kafka["healthcheck"]["test"])


def test_secured_acls_give_each_role_only_its_topics_and_group():
    import importlib.util

    from consumers.settings import Settings

    spec = importlib.util.spec_from_file_location("newsdedup_acls", DEPLOY / "kafka" / "acls.py")
    acls = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(acls)
    settings = Settings()
    grants = {(principal, kind.name, name, operation.name) for principal, kind, name, operation in
              acls.role_grants(settings)}
    assert set(acls.PRINCIPALS) == set(SECURE_PRINCIPALS.values()) - {"admin"}
    assert {principal for principal, *_ in grants} == set(acls.PRINCIPALS)
    writes = {(p, name) for p, kind, name, op in grants if op == "WRITE"}
    assert writes == {("ingest", settings.topic_raw), ("prepare", settings.topic_fingerprinted),
                      ("prepare", settings.topic_dead_letters), ("match", settings.topic_story_events),
                      ("match", settings.topic_dead_letters)}
    assert {op for *_, op in grants} == {"READ", "WRITE", "DESCRIBE"}  # no CREATE, ALTER, DELETE, ALL
    assert {(p, name) for p, kind, name, op in grants if kind == "GROUP" and op == "READ"} == \
        {("prepare", settings.prepare_group), ("match", settings.match_group)}


def test_secured_postgres_takes_tls_only_with_passwords_from_files(secure_config):
    postgres = secure_config["services"]["postgres"]
    command = postgres["command"]
    options = {command[i + 1].split("=", 1)[0]: command[i + 1].split("=", 1)[1]
               for i, arg in enumerate(command) if arg == "-c"}
    assert options["ssl"] == "on" and options["ssl_min_protocol_version"] == "TLSv1.2"
    assert options["ssl_cert_file"] == mounted(postgres)["postgres_server_cert"]
    volumes = {volume["target"]: volume.get("source") for volume in postgres["volumes"]}
    assert Path(volumes[options["hba_file"]]) == SECURE_HBA
    rules = [line.split() for line in SECURE_HBA.read_text().splitlines() if line.strip() and line[0] != "#"]
    assert ["hostnossl", "all", "all", "all", "reject"] in rules
    assert ["hostssl", "all", "all", "all", "scram-sha-256"] in rules
    assert not [rule for rule in rules if rule[0] == "host" or rule[-1] in {"trust", "password", "md5"}], rules
    env = postgres["environment"]
    assert not [key for key in env if key.endswith("PASSWORD")], env  # only the _FILE forms
    init_sql = INIT_SQL.read_text()
    for role in ("OWNER", "APP", "READER"):
        variable = f"NEWSDEDUP_PG_{role}_PASSWORD_FILE"
        assert env[variable] in mounted(postgres).values() and variable in init_sql, role
    assert env["POSTGRES_PASSWORD_FILE"] == mounted(postgres)["pg_superuser_password"]


def test_compose_secrets_are_private_and_the_certificates_name_their_services(secrets_dir: Path):
    assert secrets_dir.stat().st_mode & 0o777 == 0o700
    assert (secrets_dir / "ca.key").stat().st_mode & 0o777 == 0o600
    ca = str(secrets_dir / "ca.pem")
    for name, host in (("kafka-broker", "kafka"), ("postgres-server", "postgres")):
        cert = str(secrets_dir / f"{name}.pem")
        assert run(["openssl", "verify", "-CAfile", ca, cert]).stdout.strip().endswith("OK")
        names = run(["openssl", "x509", "-in", cert, "-noout", "-ext", "subjectAltName"]).stdout
        assert f"DNS:{host}" in names, names
    keystore = (secrets_dir / "kafka-broker-keystore.pem").read_text()
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----") and keystore.count("BEGIN CERTIFICATE") == 2
