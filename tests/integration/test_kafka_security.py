"""The service against a broker that demands encryption and authentication, with least privilege (issue 13).

A second Kafka broker (tests/integration/kafka_secure.py) offers only SASL_SSL (SCRAM-SHA-512) and mutual TLS,
and its StandardAuthorizer refuses what no ACL allows. The admin principal makes the topics (`newsdedup topics`)
and grants each role's principal what kafka_secure.role_grants lists, nothing more. Then:

- the pipeline runs with each role as its own principal, through SASL_SSL and through mTLS: ingest, prepare,
  match (every article stored in PostgreSQL, events published) and the lag exporter (lag 0 for both groups),
  and the idempotent producers needed no cluster IDEMPOTENT_WRITE;
- the broker refuses each principal what is not its role's (kafka-python clients, one case each);
- a command whose identity or rights the broker refuses (a wrong password, an untrusted certificate, a topic
  or group the principal has no ACL for) ends at start: exit 1, and one last line naming the brokers and the
  reason, never a secret. The cases run side by side (REFUSALS) so the suite stays short;
- a client without TLS gets no Kafka answer from either listener;
- the lag exporter, refused one group, keeps measuring the other and reports the refused one as down.

Every secret of the session (SCRAM passwords, key passwords, the wrong passwords tried) is searched for in
everything the commands print.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ACLOperation, NewTopic, OffsetSpec, ResourceType
from kafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from consumers.kafka_io import client_config
from consumers.settings import Settings, load_settings, replace
from tests.integration.conftest import DEV_ARTICLES, ROOT, free_port, run_cli, settings_env
from tests.integration.kafka_secure import (
    ADMIN,
    LISTENERS,
    MTLS,
    SASL_SSL,
    STORE_PASSWORD,
    SecureKafka,
    grant,
    role_grants,
    start_secure_kafka,
)
from tests.integration.observability_support import eventually, http_get
from tests.integration.tls import make_ca

pytestmark = pytest.mark.integration

SLICE = 50  # articles of the dev set sent through the secured pipeline
ATTEMPT_SECONDS = 30  # how long a forbidden action may take to be refused (a busy machine joins groups slowly)


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    kafka = start_secure_kafka(tmp_path_factory.mktemp("secure-kafka"))
    yield kafka
    kafka.stop()


@dataclass(frozen=True)
class Deployment:
    """Topics and groups of one test (or module), made by the admin, with each role's ACLs granted."""

    kafka: SecureKafka
    base: Settings  # the topics, groups and database, no Kafka identity

    def settings(self, principal: str, listener: str = SASL_SSL, **changes: object) -> Settings:
        return replace(self.kafka.settings(self.base, principal, listener), **changes)

    def env(self, principal: str, listener: str = SASL_SSL, **changes: object) -> dict[str, str]:
        return settings_env(self.settings(principal, listener, **changes))

    def log_end(self, topic: str) -> int:
        """Records (and markers) in the topic, read as the admin."""
        with contextlib.closing(self.kafka.admin(self.base)) as admin:
            partitions = [TopicPartition(topic, p["partition_index"])
                          for t in admin.describe_topics([topic]) for p in t["partitions"]]
            return sum(o.offset for o in admin.list_partition_offsets(dict.fromkeys(partitions,
                                                                                     OffsetSpec.LATEST)).values())


def deploy(kafka: SecureKafka, base: Settings) -> Deployment:
    """The admin step: `newsdedup topics` as the admin principal, then the roles' ACLs."""
    deployment = Deployment(kafka, replace(base, metrics_port=0))
    result = run_cli(["topics"], deployment.env(ADMIN))
    wanted = (base.topic_raw, base.topic_fingerprinted, base.topic_dead_letters, base.topic_story_events)
    assert result.stdout.strip() == f"created: {', '.join(wanted)}", result.stdout
    with contextlib.closing(kafka.admin(base)) as admin:
        grant(admin, role_grants(base))
    return deployment


def tagged(tag: str, **values: object) -> Settings:
    return load_settings({}, {
        "topic_raw": f"s{tag}.articles.raw", "topic_fingerprinted": f"s{tag}.articles.fingerprinted",
        "topic_dead_letters": f"s{tag}.articles.dlq", "topic_story_events": f"s{tag}.stories.events",
        "prepare_group": f"s{tag}-prepare", "match_group": f"s{tag}-match",
        "session_timeout_ms": 6000, "poll_timeout_ms": 200, **values})


@pytest.fixture(scope="module")
def shared(secure_kafka: SecureKafka, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """The deployment of the tests that store nothing (refusals, forbidden actions): no PostgreSQL needed, the
    match commands get a migrated SQLite file."""
    folder = tmp_path_factory.mktemp("refusals")
    database = f"sqlite:///{folder / 'match.db'}"
    run_cli(["db", "upgrade", "--db", database], {})
    return deploy(secure_kafka, tagged(uuid.uuid4().hex[:8], database_url=database))


def session_secrets(kafka: SecureKafka) -> list[str]:
    return [STORE_PASSWORD, *(p.password for p in kafka.principals.values()),
            *(p.key_password for p in kafka.principals.values())]


def assert_no_secret(where: str, content: str, secrets: list[str]) -> None:
    leaked = [secret for secret in secrets if secret in content]
    assert not leaked, f"{where} shows {len(leaked)} secret(s):\n{content[-2000:]}"


def dev_slice(path: Path, count: int = SLICE) -> Path:
    lines = [line for line in DEV_ARTICLES.read_text().splitlines() if line.strip()][:count]
    path.write_text("\n".join(lines) + "\n")
    return path


def metric_values(port: int, name: str) -> dict[tuple[str, str], float]:
    """``name``'s samples on the exporter's /metrics, by (role, group), summed over partitions."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    assert status == 200, status
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name:
                key = (sample.labels["role"], sample.labels["group"])
                values[key] = values.get(key, 0.0) + sample.value
    return values


def stored_articles(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM articles")).scalar_one()
    finally:
        engine.dispose()


def start_logged(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A command with its output in files: many run at once, and a full pipe must never stall one."""
    with log.with_suffix(".out").open("wb") as out, log.with_suffix(".err").open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "consumers.cli", *args], env=env, cwd=ROOT, stdout=out,
                                stderr=err)


# -- a refused identity or right ends a command at start, with one line --------------------------------------


@dataclass(frozen=True)
class Refusal:
    args: list[str]
    env: dict[str, str]
    expected: str  # a regular expression the last line of stderr must match in full


@dataclass
class Run:
    code: int
    seconds: float
    stdout: str
    stderr: str


@dataclass
class Refusals:
    """The cases of REFUSALS, all started at once (each command tries for a few seconds, the plaintext ones
    for kafka-python's 30 s); ``result`` waits for one."""

    cases: dict[str, Refusal]
    folder: Path
    secrets: list[str]
    started: dict[str, tuple[subprocess.Popen[bytes], float]] = field(default_factory=dict)

    def start(self) -> None:
        for name, case in self.cases.items():
            self.started[name] = (start_logged(case.args, case.env, self.folder / name), time.time())

    def result(self, name: str, timeout: float = 180) -> Run:
        process, began = self.started[name]
        try:
            code = process.wait(timeout=max(1.0, began + timeout - time.time()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = -9
        log = self.folder / name
        ended = log.with_suffix(".err").stat().st_mtime  # its last line: when it ended, not when this looked
        return Run(code, ended - began, log.with_suffix(".out").read_text(errors="replace"),
                   log.with_suffix(".err").read_text(errors="replace"))

    def stop(self) -> None:
        for process, _ in self.started.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def refusal_cases(deployment: Deployment, folder: Path) -> tuple[dict[str, Refusal], list[str]]:
    """Every case: the command, its environment, and the one line it must end with. Also the wrong secrets
    tried, which must not show either."""
    kafka, base = deployment.kafka, deployment.base
    sasl, mtls = re.escape(kafka.bootstrap(SASL_SSL)), re.escape(kafka.bootstrap(MTLS))
    rogue = make_ca(folder / "rogue-ca", "rogue CA").issue("prepare", client=True)  # the right name, wrong CA
    articles = str(dev_slice(folder / "articles.jsonl", 5))
    wrong_password, wrong_key_password = f"wrong-{uuid.uuid4().hex}", f"wrong-key-{uuid.uuid4().hex}"
    commands = {
        "ingest": ["ingest", articles, "--no-progress"],
        "prepare": ["prepare", "--exit-when-idle", "5"],
        "match": ["match", "--exit-when-idle", "5"],
        "topics": ["topics"],
    }
    principal_of = {"topics": ADMIN}
    cases: dict[str, Refusal] = {}
    # Each command meets one of the two (they share consumers.kafka_io.connect_admin), the lag exporter both.
    for kind, command in WRONG_IDENTITIES:
        principal = principal_of.get(command, command)
        args = commands.get(command) or ["lag-exporter", "--metrics-port", str(free_port())]
        if kind == "wrong-password":
            cases[f"{kind}-{command}"] = Refusal(
                args, deployment.env(principal, SASL_SSL, kafka_sasl_password=wrong_password),
                rf"newsdedup: cannot connect to Kafka at {sasl}: SASL SCRAM-SHA-512 authentication as '{principal}' "
                rf"failed: Authentication failed during authentication due to invalid credentials with SASL "
                rf"mechanism SCRAM-SHA-512")
        else:
            cases[f"{kind}-{command}"] = Refusal(
                args, deployment.env(principal, MTLS, kafka_ssl_certfile=str(rogue.cert),
                                     kafka_ssl_keyfile=str(rogue.key), kafka_ssl_password=""),
                rf"newsdedup: cannot connect to Kafka at {mtls}: the broker refused the client certificate "
                rf"\(kafka_ssl_certfile='{re.escape(str(rogue.cert))}'\): .*ALERT_\w+.*")
    fingerprinted, raw, group = (re.escape(base.topic_fingerprinted), re.escape(base.topic_raw),
                                 re.escape(base.prepare_group))
    match_cert = re.escape(str(kafka.principals["match"].cert))
    missing_raw = f"{base.topic_raw}.missing"
    with contextlib.closing(kafka.admin(base)) as admin:  # ingest may write it, but it does not exist
        grant(admin, [("ingest", ResourceType.TOPIC, missing_raw, ACLOperation.WRITE)])
    cases |= {
        "no-client-certificate": Refusal(
            commands["prepare"], deployment.env("prepare", MTLS, kafka_ssl_certfile="", kafka_ssl_keyfile=""),
            rf"newsdedup: cannot connect to Kafka at {mtls}: the broker wants a client certificate \(mutual TLS\) "
            rf"and kafka_ssl_certfile is empty: .*ALERT_\w+.*"),
        "wrong-key-password": Refusal(
            commands["match"], deployment.env("match", MTLS, kafka_ssl_password=wrong_key_password),
            rf"newsdedup: cannot connect to Kafka at {mtls}: cannot load the client certificate and key "
            rf"\(kafka_ssl_certfile='{match_cert}', kafka_ssl_keyfile='.*'; wrong kafka_ssl_password\?\): .*"),
        "broker-not-trusted": Refusal(
            commands["ingest"], deployment.env("ingest", SASL_SSL, kafka_ssl_cafile=""),  # the system's CAs only
            rf"newsdedup: cannot connect to Kafka at {sasl}: the broker's certificate is not trusted "
            rf"\(kafka_ssl_cafile=''\): .*CERTIFICATE_VERIFY_FAILED.*"),
        "plaintext-to-sasl-ssl": Refusal(
            commands["topics"], deployment.env(ADMIN, SASL_SSL, kafka_security_protocol="PLAINTEXT"),
            rf"newsdedup: cannot connect to Kafka at {sasl}: the broker closed the connection: does its listener "
            rf"expect TLS \(kafka_security_protocol=PLAINTEXT\)\? .*"),
        "plaintext-to-mtls": Refusal(
            commands["prepare"], deployment.env("prepare", MTLS, kafka_security_protocol="PLAINTEXT"),
            rf"newsdedup: cannot connect to Kafka at {mtls}: the broker closed the connection: does its listener "
            rf"expect TLS \(kafka_security_protocol=PLAINTEXT\)\? .*"),
        "match-joins-the-prepare-group": Refusal(
            commands["match"], deployment.env("match", MTLS, match_group=base.prepare_group),
            rf"newsdedup: Kafka at {mtls} refused the certificate {match_cert}: GroupAuthorizationFailedError: "
            rf"{group}"),
        "prepare-reads-fingerprinted": Refusal(
            commands["prepare"], deployment.env("prepare", topic_raw=base.topic_fingerprinted),
            rf"newsdedup: Kafka at {sasl} refused user 'prepare': TopicAuthorizationFailedError: {fingerprinted}"),
        "prepare-writes-raw": Refusal(  # reads the raw topic (allowed), writes its results back to it (not)
            commands["prepare"], deployment.env("prepare", topic_fingerprinted=base.topic_raw),
            rf"newsdedup: Kafka at {sasl} refused user 'prepare': TopicAuthorizationFailedError: .*{raw}.*"),
        "match-reads-raw": Refusal(  # no ACL at all on raw: the brokers will not even describe it to match
            commands["match"], deployment.env("match", topic_fingerprinted=base.topic_raw),
            rf"newsdedup: Kafka at {sasl} refused user 'match': TopicAuthorizationFailedError: {raw}"),
        "ingest-creates-its-topic": Refusal(
            commands["ingest"], deployment.env("ingest", topic_raw=missing_raw),
            rf"newsdedup: topic {re.escape(missing_raw)} does not exist and Kafka at {sasl} refused user 'ingest' "
            rf"creating it \(TopicAuthorizationFailedError\): create the topics with 'newsdedup topics' as an admin "
            rf"principal"),
        "topics-as-ingest": Refusal(
            commands["topics"], deployment.env("ingest"),
            rf"newsdedup: Kafka at {sasl} refused user 'ingest' the topic\(s\) .*{fingerprinted}.* "
            rf"\(TopicAuthorizationFailedError\): this principal has no ACL for them \('newsdedup topics' needs the "
            rf"admin principal\)"),
    }
    return cases, [wrong_password, wrong_key_password]


WRONG_IDENTITIES = [("wrong-password", "prepare"), ("wrong-password", "ingest"), ("wrong-password", "lag-exporter"),
                    ("untrusted-certificate", "match"), ("untrusted-certificate", "topics"),
                    ("untrusted-certificate", "lag-exporter")]
REFUSALS = [
    *(f"{kind}-{command}" for kind, command in WRONG_IDENTITIES),
    "no-client-certificate", "wrong-key-password", "broker-not-trusted", "match-joins-the-prepare-group",
    "prepare-reads-fingerprinted", "prepare-writes-raw", "match-reads-raw", "ingest-creates-its-topic",
    "topics-as-ingest",
]
PLAINTEXT_REFUSALS = ["plaintext-to-sasl-ssl", "plaintext-to-mtls"]  # checked last: they take 30 s


@pytest.fixture(scope="module")
def refusals(shared: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Refusals]:
    folder = tmp_path_factory.mktemp("refused")
    # Raw articles for the prepare cases to read (the refusal comes when they write their results).
    run_cli(["ingest", str(dev_slice(folder / "seed.jsonl", 5)), "--no-progress"], shared.env("ingest"))
    cases, wrong = refusal_cases(shared, folder)
    assert set(cases) == {*REFUSALS, *PLAINTEXT_REFUSALS}
    runs = Refusals(cases, folder, [*session_secrets(shared.kafka), *wrong])
    runs.start()
    yield runs
    runs.stop()


def check_refusal(refusals: Refusals, case: str) -> Run:
    run = refusals.result(case)
    lines = run.stderr.strip().splitlines()
    assert run.code == 1, f"{case}: exit {run.code} after {run.seconds:.1f} s:\n{run.stderr[-3000:]}"
    assert lines and re.fullmatch(refusals.cases[case].expected, lines[-1]), \
        f"{case}: the last line is not the expected one:\n{lines[-1] if lines else '(nothing)'}"
    # Everything before it is the JSON log (kafka-python's account of each attempt): no bare traceback.
    assert all(line.startswith("{") for line in lines[:-1]), f"{case}: not one line:\n{run.stderr[-3000:]}"
    assert_no_secret(f"{case} stdout", run.stdout, refusals.secrets)
    assert_no_secret(f"{case} stderr", run.stderr, refusals.secrets)
    print(f"{case}: exit {run.code} in {run.seconds:.1f} s: {lines[-1]}")
    return run


# -- least privilege: the broker refuses each principal what is not its role's ---------------------------------


def read(deployment: Deployment, principal: str, topic: str, group: str | None = None) -> None:
    """Fetch from ``topic`` (in ``group``, or assigned without one)."""
    config = client_config(deployment.settings(principal))
    # The topic's metadata first, asked by name: a principal without even DESCRIBE is refused there (kafka-python
    # then never fetches the partition, and its poll just returns nothing).
    with contextlib.closing(KafkaAdminClient(**config)) as admin:
        if admin.describe_topics([topic])[0]["error_code"] == TopicAuthorizationFailedError.errno:
            raise TopicAuthorizationFailedError(topic)
    consumer = KafkaConsumer(**config, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
                             session_timeout_ms=6000)
    try:
        if group:
            consumer.subscribe([topic])
        else:
            consumer.assign([TopicPartition(topic, 0)])
        deadline = time.monotonic() + ATTEMPT_SECONDS  # the refusal comes with the group join or the first fetch
        while time.monotonic() < deadline:
            consumer.poll(timeout_ms=250)
    finally:
        consumer.close()


def write(deployment: Deployment, principal: str, topic: str) -> None:
    producer = KafkaProducer(**client_config(deployment.settings(principal)), enable_idempotence=True,
                             max_block_ms=ATTEMPT_SECONDS * 1000)
    try:
        producer.send(topic, b"{}").get(timeout=ATTEMPT_SECONDS)
    finally:
        producer.close(timeout=5)


def create_topic(deployment: Deployment, principal: str) -> None:
    admin = KafkaAdminClient(**client_config(deployment.settings(principal)))
    try:
        admin.create_topics([NewTopic(f"{deployment.base.topic_raw}.extra", 1, -1)])
    finally:
        admin.close()


Attempt = Callable[[Deployment], None]
TOPIC, GROUP = (TopicAuthorizationFailedError, r"\[Error 29\]"), (GroupAuthorizationFailedError, r"\[Error 30\]")
FORBIDDEN: dict[str, tuple[Attempt, tuple[type[KafkaError], str]]] = {  # what it tries, how the broker answers
    "prepare-reads-fingerprinted": (lambda d: read(d, "prepare", d.base.topic_fingerprinted), TOPIC),
    "prepare-writes-raw": (lambda d: write(d, "prepare", d.base.topic_raw), TOPIC),
    "prepare-writes-events": (lambda d: write(d, "prepare", d.base.topic_story_events), TOPIC),
    "prepare-joins-the-match-group": (lambda d: read(d, "prepare", d.base.topic_raw, d.base.match_group), GROUP),
    "match-joins-the-prepare-group": (lambda d: read(d, "match", d.base.topic_fingerprinted, d.base.prepare_group),
                                      GROUP),
    "match-reads-raw": (lambda d: read(d, "match", d.base.topic_raw), TOPIC),
    "match-writes-fingerprinted": (lambda d: write(d, "match", d.base.topic_fingerprinted), TOPIC),
    "ingest-creates-a-topic": (lambda d: create_topic(d, "ingest"), TOPIC),
    "ingest-reads-raw": (lambda d: read(d, "ingest", d.base.topic_raw), TOPIC),
    "ingest-writes-fingerprinted": (lambda d: write(d, "ingest", d.base.topic_fingerprinted), TOPIC),
    "lag-exporter-reads-raw": (lambda d: read(d, "lag-exporter", d.base.topic_raw), TOPIC),
    "lag-exporter-joins-the-prepare-group": (lambda d: read(d, "lag-exporter", d.base.topic_raw,
                                                            d.base.prepare_group), GROUP),
    # No WRITE anywhere: already the idempotent producer's InitProducerId is refused (KIP-679: WRITE on a topic
    # is what allows it, no IDEMPOTENT_WRITE needed).
    "lag-exporter-writes-raw": (lambda d: write(d, "lag-exporter", d.base.topic_raw),
                                (KafkaError, r"InitProducerIdResponse: \[Error 31\] ClusterAuthorizationFailedError")),
}


# The refusal commands (REFUSALS) run beside the tests from here on: most of their time is waiting.
@pytest.mark.usefixtures("refusals")
@pytest.mark.parametrize("case", FORBIDDEN)
def test_the_broker_refuses_a_principal_what_is_not_its_roles(shared: Deployment, case: str) -> None:
    attempt, (error, message) = FORBIDDEN[case]
    with pytest.raises(error, match=message):
        attempt(shared)


# -- the lag exporter, refused one group ---------------------------------------------------------------------


def test_the_lag_exporter_reports_a_group_it_may_not_describe_as_down(shared: Deployment, tmp_path: Path) -> None:
    # As the prepare principal: its READ on its group and topic implies DESCRIBE; it has none on the match group.
    port = free_port()
    exporter = start_logged(["lag-exporter"], shared.env("prepare", metrics_port=port, lag_interval_seconds=1.0),
                            tmp_path / "lag")
    def prepare_measured() -> dict[tuple[str, str], float] | None:
        up = metric_values(port, "newsdedup_lag_exporter_up")
        return up if len(up) == 2 and up[("prepare", shared.base.prepare_group)] == 1 else None

    try:
        up = eventually(prepare_measured, 60, "the exporter measured the prepare group")
        assert up[("match", shared.base.match_group)] == 0, up
        assert exporter.poll() is None, "a group it may not describe does not end the exporter"
    finally:
        exporter.terminate()
        exporter.wait(timeout=30)
    log = (tmp_path / "lag.err").read_text()
    assert "GroupAuthorizationFailedError" in log, log[-2000:]


# -- the pipeline, each role as its own principal ----------------------------------------------------------


@pytest.mark.parametrize("listener", LISTENERS)
def test_the_pipeline_runs_with_each_role_as_its_own_principal(secure_kafka: SecureKafka, settings: Settings,
                                                               tmp_path: Path, listener: str) -> None:
    deployment = deploy(secure_kafka, settings)
    secrets = session_secrets(secure_kafka)
    outputs: dict[str, str] = {}

    sent = run_cli(["ingest", str(dev_slice(tmp_path / "slice.jsonl")), "--no-progress"],
                   deployment.env("ingest", listener))
    outputs["ingest"] = sent.stdout + sent.stderr
    assert sent.stdout.startswith(f"sent {SLICE}, rejected 0"), sent.stdout

    port = free_port()
    exporter = start_logged(["lag-exporter"], deployment.env("lag-exporter", listener, metrics_port=port,
                                                             lag_interval_seconds=1.0), tmp_path / "lag")
    roles = {role: start_logged([role], deployment.env(role, listener), tmp_path / role)
             for role in ("prepare", "match")}

    def no_lag() -> dict[tuple[str, str], float] | None:
        lag = metric_values(port, "newsdedup_group_lag_messages")
        return lag if len(lag) == 2 and not any(lag.values()) else None

    try:
        # Until everything is stored, not until the roles idle: on a busy machine joining a group takes long.
        eventually(lambda: stored_articles(settings.database_url) == SLICE, 120, "every article stored")
        lag = eventually(no_lag, 60, "the lag exporter shows lag 0 for both groups")
        assert set(lag) == {("prepare", settings.prepare_group), ("match", settings.match_group)}
        assert set(metric_values(port, "newsdedup_lag_exporter_up").values()) == {1.0}
    finally:
        processes = {**roles, "lag": exporter}
        for process in processes.values():
            process.terminate()
        codes = {name: process.wait(timeout=30) for name, process in processes.items()}
    for name in processes:
        outputs[name] = (tmp_path / f"{name}.out").read_text() + (tmp_path / f"{name}.err").read_text()
    assert codes == {"prepare": 0, "match": 0, "lag": 0}, codes
    for role in roles:
        assert f"{role} handled {SLICE} messages" in outputs[role], outputs[role][-2000:]
    assert deployment.log_end(settings.topic_story_events) > 0, "the matcher published story events"
    assert deployment.log_end(settings.topic_dead_letters) == 0, "nothing was dead-lettered"

    # Every producer of the service is idempotent: the broker holds producer ids for the ingest principal's
    # writes, granted with WRITE on the topic alone (no IDEMPOTENT_WRITE on the cluster: KIP-679).
    with contextlib.closing(secure_kafka.admin(settings)) as admin:
        partitions = [TopicPartition(settings.topic_raw, p) for p in range(settings.raw_partitions)]
        states = admin.describe_producers(partitions)
    producer_ids = {producer.producer_id for state in states.values() for producer in state.active_producers}
    assert producer_ids and min(producer_ids) >= 0, states

    for command, output in outputs.items():
        assert_no_secret(command, output, secrets)


# -- the refusal commands' results ----------------------------------------------------------------------


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_identity_or_right_ends_the_command_at_start(refusals: Refusals, case: str) -> None:
    check_refusal(refusals, case)


# -- plaintext -------------------------------------------------------------------------------------------------


def api_versions_request() -> bytes:
    """Kafka's ApiVersions request (key 18, version 0, correlation id 7), as a plaintext client sends it first."""
    body = struct.pack(">hhih", 18, 0, 7, 4) + b"test"
    return struct.pack(">i", len(body)) + body


@pytest.mark.parametrize("listener", LISTENERS)
def test_a_plaintext_client_gets_no_kafka_answer(secure_kafka: SecureKafka, listener: str) -> None:
    with socket.create_connection((secure_kafka.host, secure_kafka.port(listener)), timeout=10) as sock:
        sock.sendall(api_versions_request())
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(4096):
                answer += chunk
    # The broker closes the connection; at most a TLS alert record (content type 21) comes first, never a
    # Kafka response (its length, then correlation id 7).
    assert answer == b"" or answer[0] == 21, answer[:16]
    assert answer[4:8] != struct.pack(">i", 7)


@pytest.mark.parametrize("case", PLAINTEXT_REFUSALS)
def test_a_plaintext_role_ends_with_one_line(refusals: Refusals, case: str) -> None:
    check_refusal(refusals, case)  # after kafka-python's 30 s: a broker that closes connections may be restarting
