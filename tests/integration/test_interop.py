"""Issue 11: the pipeline reads what producers we did not write send.

Distinct dev-set articles go to the raw topic in slices, each from a producer of its own: Kafka's Java client
(tests/integration/interop/JavaProducer.java: every codec × plain keyed with headers, plain unkeyed, idempotent,
transactional committed, transactional aborted) and librdkafka (confluent-kafka with its defaults: its own
partitioner, linger and batching; also with each codec, idempotent and transactional). The broker's log segments
show what each client really wrote (codec, producer id, transactional). Then `newsdedup prepare` and
`newsdedup match` run until idle, and every article of a committed slice must be stored exactly once, none of an
aborted one, nothing dead-lettered, and the stories must be those of embedded mode on the committed articles.
"""

from __future__ import annotations

import bisect
import json
import random
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from sqlalchemy import create_engine, text

from consumers.settings import Settings
from tests.integration.conftest import DEV_ARTICLES, ROOT, read_export, read_topic, run_cli, settings_env, stories_of

pytestmark = pytest.mark.integration

JAVA_PRODUCER = Path(__file__).parent / "interop" / "JavaProducer.java"
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PER_SLICE = 20
# (keyed, headers, mode) of the Java slices, each with every codec.
JAVA_KINDS = ((True, True, "plain"), (False, False, "plain"), (True, False, "idempotent"),
              (False, True, "transactional-commit"), (True, True, "transactional-abort"))
# (codec, keyed, headers, mode) of the librdkafka slices; "default" is librdkafka's own (acks=all, not idempotent).
LIBRDKAFKA_KINDS = (("none", True, True, "default"), ("none", False, False, "default"),
                    ("gzip", True, True, "default"), ("snappy", True, False, "default"), ("lz4", True, True, "default"),
                    ("zstd", False, True, "default"), ("zstd", True, True, "idempotent"),
                    ("lz4", True, True, "transactional-commit"), ("snappy", False, True, "transactional-abort"))
ROLE_IDLE_SECONDS = "6"


@dataclass(frozen=True)
class Slice:
    client: str  # java or librdkafka
    codec: str
    keyed: bool
    headers: bool
    mode: str  # plain, default, idempotent, transactional-commit, transactional-abort
    first: int  # its articles: lines first .. first + PER_SLICE of the test's input

    @property
    def committed(self) -> bool:
        return self.mode != "transactional-abort"

    @property
    def label(self) -> str:
        return (f"{self.client} {self.codec} {'keyed' if self.keyed else 'unkeyed'} "
                f"{'headers' if self.headers else 'noheaders'} {self.mode}")


def the_slices() -> list[Slice]:
    kinds = [("java", codec, keyed, headers, mode) for keyed, headers, mode in JAVA_KINDS for codec in CODECS]
    kinds += [("librdkafka", *kind) for kind in LIBRDKAFKA_KINDS]
    return [Slice(*kind, first=index * PER_SLICE) for index, kind in enumerate(kinds)]


def test_foreign_producers_every_codec_and_mode(settings: Settings, tmp_path: Path) -> None:
    started = time.monotonic()
    env = settings_env(settings)
    slices = the_slices()
    # Distinct articles, shuffled so that the copies of a story come through different clients, codecs and modes.
    lines = [line for line in DEV_ARTICLES.read_text().splitlines() if line.strip()][:len(slices) * PER_SLICE]
    random.Random(11).shuffle(lines)
    articles = tmp_path / "articles.jsonl"
    articles.write_text("\n".join(lines) + "\n")
    ids = [json.loads(line)["id"] for line in lines]
    assert len(set(ids)) == len(ids)
    slice_of = {article_id: s for s in slices for article_id in ids[s.first:s.first + PER_SLICE]}
    run_cli(["topics"], env)

    # Both clients at once: the JVM compiles and runs while librdkafka sends.
    java_slices = [s for s in slices if s.client == "java"]
    java = start_java(settings, articles, java_slices, tmp_path / "plan.txt")
    sent = {s: produce_librdkafka(settings, lines, s) for s in slices if s.client == "librdkafka"}
    stdout, stderr = java.communicate(timeout=180)
    assert java.returncode == 0, f"JavaProducer exited {java.returncode}:\n{stderr[-3000:]}"
    summaries = [json.loads(line) for line in stdout.splitlines()]
    assert [(row["codec"], row["mode"], row["first"]) for row in summaries] == [
        (s.codec, s.mode, s.first) for s in java_slices]
    sent.update({s: {int(p): n for p, n in row["partitions"].items()} for s, row in zip(java_slices, summaries,
                                                                                          strict=True)})
    produced = time.monotonic()

    # What is in the log (aborted records too), and in what batches.
    raw = read_raw(settings)
    assert len(raw) == len(lines)
    wire = on_the_wire(settings, raw, slice_of)
    for record in raw:
        s = slice_of[json.loads(record.value)["id"]]
        assert record.key == (json.loads(record.value)["url"].encode() if s.keyed else None), s.label
        names = [name for name, _ in record.headers]
        assert names == (["scraper", "trace-id"] if s.headers else []), s.label

    run_cli(["prepare", "--exit-when-idle", ROLE_IDLE_SECONDS, "--metrics-port", "0"], env)
    run_cli(["match", "--exit-when-idle", ROLE_IDLE_SECONDS, "--metrics-port", "0"], env)
    processed = time.monotonic()

    stored = stored_rows(settings)
    dead = Counter(dead_letter_slice(message, slice_of) for message in
                   read_topic(settings.kafka_bootstrap_servers, settings.topic_dead_letters))
    matrix = [row_of(s, ids[s.first:s.first + PER_SLICE], sent[s], stored, dead, wire[s]) for s in slices]
    report(matrix, tmp_path / "interop_matrix.json")

    committed = [line for s in slices if s.committed for line in lines[s.first:s.first + PER_SLICE]]
    kafka_export, embedded_export = tmp_path / "kafka.jsonl", tmp_path / "embedded.jsonl"
    run_cli(["export", "--output", str(kafka_export)], env)
    (tmp_path / "committed.jsonl").write_text("\n".join(committed) + "\n")
    run_cli(["run", "--input", str(tmp_path / "committed.jsonl"), "--db", f"sqlite:///{tmp_path / 'embedded.db'}",
             "--export", str(embedded_export), "--no-progress"], env)
    print(f"interop: produced in {produced - started:.1f} s, prepare + match {processed - produced:.1f} s, "
          f"all {time.monotonic() - started:.1f} s")

    for row in matrix:
        assert row["sent"] == PER_SLICE, row
        assert row["dead_lettered"] == 0 and row["lost"] == 0 and row["duplicated"] == 0, row
        assert row["stored"] == (PER_SLICE if row["committed"] else 0), row
        assert row["wire_codecs"] == [row["codec"]], row  # the client really used the codec
        assert row["wire_producer"] == {"plain": "plain", "default": "plain", "idempotent": "idempotent"}.get(
            row["mode"], "transactional"), row
        if row["committed"]:  # each record was stored from where the client's acknowledgement put it
            assert row["stored_partitions"] == row["sent_partitions"], row
    assert dead.total() == 0, dead

    kafka, embedded = read_export(kafka_export), read_export(embedded_export)
    assert len(kafka) == len(embedded) == len(committed)
    assert stories_of(kafka) == stories_of(embedded)
    for article_id, row in embedded.items():
        assert kafka[article_id]["canonical_id"] == row["canonical_id"], article_id
        assert kafka[article_id]["is_canonical"] == row["is_canonical"], article_id
        assert kafka[article_id]["similarity"] == pytest.approx(row["similarity"], abs=1e-9), article_id


# -- producing --------------------------------------------------------------------------------------------


def start_java(settings: Settings, articles: Path, slices: list[Slice], plan: Path) -> subprocess.Popen[str]:
    plan.write_text("".join(f"{s.codec} {'keyed' if s.keyed else 'unkeyed'} {'headers' if s.headers else 'noheaders'} "
                            f"{s.mode} {s.first} {PER_SLICE}\n" for s in slices))
    lib = subprocess.run(["bash", str(ROOT / "scripts" / "services.sh"), "kafka-lib"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert list(Path(lib).glob("kafka-clients-*.jar")), f"no kafka-clients jar in {lib} (scripts/services.sh up)"
    return subprocess.Popen(["java", "-cp", f"{lib}/*", str(JAVA_PRODUCER), settings.kafka_bootstrap_servers,
                             settings.topic_raw, str(articles), str(plan)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def produce_librdkafka(settings: Settings, lines: list[str], s: Slice) -> dict[int, int]:
    """One librdkafka producer, its defaults but for the slice's settings; the partitions it acknowledged."""
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap_servers}
    if s.codec != "none":
        config["compression.type"] = s.codec
    if s.mode == "idempotent":
        config["enable.idempotence"] = True
    transactional = s.mode.startswith("transactional-")
    if transactional:
        config["transactional.id"] = f"interop-{settings.topic_raw}-librdkafka-{s.first}"
    producer = Producer(config)
    partitions: Counter[int] = Counter()
    errors = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(error)
        else:
            partitions[message.partition()] += 1

    if transactional:
        producer.init_transactions(30)
        producer.begin_transaction()
    for index, line in enumerate(lines[s.first:s.first + PER_SLICE]):
        headers = [("scraper", b"librdkafka-interop"), ("trace-id", f"{s.first}-{index}".encode())]
        producer.produce(settings.topic_raw, value=line.encode(), key=json.loads(line)["url"].encode() if s.keyed
                         else None, headers=headers if s.headers else None, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0 and not errors, (s.label, errors)
    if s.mode == "transactional-commit":
        producer.commit_transaction(30)
    elif s.mode == "transactional-abort":
        producer.abort_transaction(30)
    return dict(partitions)


# -- what is where ----------------------------------------------------------------------------------------


def read_raw(settings: Settings, timeout: float = 30) -> list[Any]:
    """Every record of the raw topic, aborted ones too (read_uncommitted), up to its end offsets.

    The end offsets count transaction markers, which are no records: read until the positions reach them.
    """
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(settings.topic_raw, p) for p in range(settings.raw_partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"read {len(records)} records of {settings.topic_raw}"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


@dataclass(frozen=True)
class Batch:
    partition: int
    first: int
    last: int
    codec: str
    producer: str  # plain (no producer id), idempotent or transactional


def log_batches(settings: Settings) -> Iterator[Batch]:
    """The record batches of the raw topic as the broker wrote them to its log segments (record batch format v2).

    The broker keeps a producer's batches as they came (the topic's compression.type is "producer"), so this is
    what each client put on the wire. The broker runs on this machine (scripts/services.sh).
    """
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        log_dirs = [d["log_dir"] for broker in admin.describe_log_dirs() for d in broker["log_dirs"]]
    finally:
        admin.close()
    for partition in range(settings.raw_partitions):
        folders = [Path(d) / f"{settings.topic_raw}-{partition}" for d in log_dirs]
        segments = sorted(segment for folder in folders if folder.is_dir() for segment in folder.glob("*.log"))
        assert segments, f"no log segments of {settings.topic_raw}-{partition} in {log_dirs}"
        for segment in segments:
            data, at = segment.read_bytes(), 0
            while at + 61 <= len(data):
                base, length = struct.unpack_from(">qi", data, at)
                attributes, last_delta = struct.unpack_from(">hi", data, at + 21)
                (producer_id,) = struct.unpack_from(">q", data, at + 43)
                if not attributes & 0x20:  # control batches (transaction markers) hold no records
                    kind = "transactional" if attributes & 0x10 else "idempotent" if producer_id >= 0 else "plain"
                    yield Batch(partition, base, base + last_delta, CODECS[attributes & 0x07], kind)
                at += 12 + length


def on_the_wire(settings: Settings, raw: list[Any], slice_of: dict[str, Slice]) -> dict[Slice, dict[str, Any]]:
    """Per slice: the codecs and producer kinds of its batches, and how many batches."""
    batches: dict[int, list[Batch]] = {}
    for batch in log_batches(settings):
        batches.setdefault(batch.partition, []).append(batch)
    firsts = {p: [b.first for b in found] for p, found in batches.items()}
    seen: dict[Slice, dict[str, set[Any]]] = {}
    for record in raw:
        found = batches[record.partition][bisect.bisect_right(firsts[record.partition], record.offset) - 1]
        assert found.first <= record.offset <= found.last
        entry = seen.setdefault(slice_of[json.loads(record.value)["id"]], {"codecs": set(), "producers": set(),
                                                                           "batches": set()})
        entry["codecs"].add(found.codec)
        entry["producers"].add(found.producer)
        entry["batches"].add((found.partition, found.first))
    return {s: {"codecs": sorted(e["codecs"]), "producers": sorted(e["producers"]), "batches": len(e["batches"])}
            for s, e in seen.items()}


def stored_rows(settings: Settings) -> list[tuple[str, int]]:
    """(input id, source partition) of every stored article."""
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return [(row[0], row[1]) for row in conn.execute(text(
                "SELECT input_id, source_partition FROM articles WHERE source_topic = :t"), {"t": settings.topic_raw})]
    finally:
        engine.dispose()


def dead_letter_slice(message: Any, slice_of: dict[str, Slice]) -> str:
    try:
        return slice_of[json.loads(message.value)["id"]].label
    except (ValueError, KeyError, TypeError):
        return "unknown"


def row_of(s: Slice, ids: list[str], sent: dict[int, int], stored: list[tuple[str, int]], dead: Counter[str],
           wire: dict[str, Any]) -> dict[str, Any]:
    mine = set(ids)
    rows = [(article_id, partition) for article_id, partition in stored if article_id in mine]
    times = Counter(article_id for article_id, _ in rows)
    return {
        **asdict(s), "committed": s.committed,
        "sent": sum(sent.values()), "sent_partitions": dict(sorted(sent.items())),
        "wire_codecs": wire["codecs"], "wire_producer": "/".join(wire["producers"]), "wire_batches": wire["batches"],
        "stored": len(times), "stored_partitions": dict(sorted(Counter(p for _, p in rows).items())),
        "dead_lettered": dead[s.label],
        "lost": len(mine - set(times)) if s.committed else 0,
        "duplicated": sum(n - 1 for n in times.values()),
    }


def report(matrix: list[dict[str, Any]], path: Path) -> None:
    path.write_text(json.dumps(matrix, indent=1) + "\n")
    lines = ["| client | codec | key | headers | mode | on the wire (codec, producer, batches) | partitions | sent "
             "| stored | dead-lettered | lost | duplicated |", "|" + "---|" * 12]
    for row in matrix:
        lines.append(
            f"| {row['client']} | {row['codec']} | {'url' if row['keyed'] else 'null'} | "
            f"{'yes' if row['headers'] else 'no'} | {row['mode']} | {','.join(row['wire_codecs'])}, "
            f"{row['wire_producer']}, {row['wire_batches']} | {len(row['sent_partitions'])} | {row['sent']} | "
            f"{row['stored']} | {row['dead_lettered']} | {row['lost']} | {row['duplicated']} |")
    total = {k: sum(row[k] for row in matrix) for k in ("sent", "stored", "dead_lettered", "lost", "duplicated")}
    lines.append(f"| all | | | | | | | {total['sent']} | {total['stored']} | {total['dead_lettered']} | "
                 f"{total['lost']} | {total['duplicated']} |")
    print(f"\ninterop matrix ({path}):\n" + "\n".join(lines))
