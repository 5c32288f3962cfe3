"""Oversized messages: the 20 MB message of the issue, and the largest messages the topics accept.

newsdedup creates its topics with ``max.message.bytes`` sized for the contract (kafka_io.topic_max_bytes:
the raw topic takes max_message_bytes plus framing, the fingerprinted topic 4x that, the DLQ 2x), so
every article the contract accepts gets through. A record refused for its size is dead-lettered (cut
to fit if even the DLQ refuses it) instead of failing its batch.
"""

from __future__ import annotations

import gzip
import json
import random

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import MessageSizeTooLargeError

from consumers.kafka_io import REASON_HEADER, TRUNCATED_HEADER, topic_max_bytes
from consumers.prepare import Lineage, encode_prepared, prepare_article
from ingest.contract import TOO_LARGE, parse_article
from tests.faults.support import Harness, dev_lines, ids_of, poll_until

pytestmark = pytest.mark.faults

KEY = b"oversized"
TWENTY_MB = 20 * 1024 * 1024


def raw_producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, retries=0,
                         max_request_size=64 * 1024 * 1024)


def accepted(bootstrap: str, topic: str, size: int) -> bool:
    producer = raw_producer(bootstrap)
    try:
        producer.send(topic, key=KEY, value=b"x" * size).get(timeout=60)
        return True
    except MessageSizeTooLargeError:
        return False
    finally:
        producer.close()


def broker_limit(harness: Harness) -> int:
    """The largest value (with our key, uncompressed) the broker takes on a topic configured as the raw one."""
    topic = harness.settings.topic_raw + ".probe"
    configured = topic_max_bytes(harness.settings)[harness.settings.topic_raw]
    admin = KafkaAdminClient(bootstrap_servers=harness.settings.kafka_bootstrap_servers)
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": str(configured)})])
    admin.close()
    low, high = configured - 1_000, configured + 1
    assert accepted(harness.settings.kafka_bootstrap_servers, topic, low)
    assert not accepted(harness.settings.kafka_bootstrap_servers, topic, high)
    while high - low > 1:
        middle = (low + high) // 2
        if accepted(harness.settings.kafka_bootstrap_servers, topic, middle):
            low = middle
        else:
            high = middle
    return low


def word_salad(size: int, seed: int) -> str:
    """Real news words from the dev set in random order, ``size`` characters: a long digest page."""
    words = " ".join(json.loads(line)["body"] for line in dev_lines()[:400]).split()
    rng = random.Random(seed)
    out, length = [], 0
    while length < size:
        word = rng.choice(words)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def send_around(harness: Harness, middle: bytes, goods: list[bytes]) -> int:
    """Good articles, the big message, more good articles, all on one partition; the big one's offset."""
    producer = raw_producer(harness.settings.kafka_bootstrap_servers)
    half = len(goods) // 2
    for line in goods[:half]:
        producer.send(harness.settings.topic_raw, key=KEY, value=line)
    big = producer.send(harness.settings.topic_raw, key=KEY, value=middle)
    for line in goods[half:]:
        producer.send(harness.settings.topic_raw, key=KEY, value=line)
    producer.flush()
    offset = big.get(timeout=60).offset
    producer.close()
    return offset


def run_big_message(harness: Harness, fault: str, value: bytes, article_id: str | None, notes: str) -> None:
    """Send ``value`` between good articles; it must be stored (``article_id``) or dead-lettered, and the
    partition must go on."""
    goods = dev_lines(3010)[3000:3010]
    expected = ids_of(goods) + ([article_id] if article_id else [])
    harness.liveness_probe()
    matcher = harness.start("match")
    preparer = harness.start("prepare")
    assert poll_until(matcher.owns_match_partition, 60), matcher.tail()
    send_around(harness, value, goods)
    reached = harness.wait_stored(len(expected), timeout=90, stall=12, stop_on_crash=True)
    crashed = harness.crashed()
    letters = sum(harness.end_offsets(harness.settings.topic_dead_letters).values())
    audit = harness.audit(expected)
    harness.report(fault, 1, len(goods) + 1, audit, "-", equal=None,
                   notes=notes + f"; dead letters {letters}; "
                         + ("prepare DIED: " + preparer.tail(3).splitlines()[-1][:160] if preparer.crashed()
                            else "roles alive"))
    assert not crashed, "a role died on an oversized message:\n" + "\n".join(crashed)
    assert reached == len(expected) or (article_id is None and reached == len(goods)), audit
    assert audit.exact or (article_id is None and audit.lost == 0), audit


def dead_letters(harness: Harness) -> list:
    """The DLQ's records, once there is one (a cut letter may land after the articles behind it)."""
    poll_until(lambda: sum(harness.end_offsets(harness.settings.topic_dead_letters).values()) > 0, 30)
    return harness.read_topic(harness.settings.topic_dead_letters)


def test_topics_take_every_article_the_contract_accepts(harness: Harness) -> None:
    harness.ensure_topics()
    limit = broker_limit(harness)
    refused = not accepted(harness.settings.kafka_bootstrap_servers, harness.settings.topic_raw, TWENTY_MB)
    harness.report("20 MB message (raw topic limit)", 1, 1, None, "-", equal=None, stored=0, lost=0,
                   notes=f"broker refuses it at the producer; the raw topic takes values up to {limit:,} bytes "
                         f"(contract: {harness.settings.max_message_bytes:,})")
    assert refused
    assert harness.settings.max_message_bytes < limit < TWENTY_MB


def test_largest_accepted_garbage_is_dead_lettered(harness: Harness) -> None:
    harness.ensure_topics()
    limit = broker_limit(harness)
    garbage = random.Random(5).randbytes(limit)
    run_big_message(harness, "binary garbage at the raw topic's limit", garbage, None,
                    notes=f"{limit:,} random bytes (the largest value the raw topic accepts)")
    letters = dead_letters(harness)
    assert [len(letter.value) for letter in letters] == [limit]  # the original bytes, whole
    assert dict(letters[0].headers)[REASON_HEADER] == TOO_LARGE.encode()


def test_largest_valid_article_is_processed(harness: Harness) -> None:
    harness.ensure_topics()
    limit = harness.settings.max_message_bytes
    article = json.loads(dev_lines(1)[0])
    article.update(id="digest-2mb", url="https://digest.example/today", title="Today's digest")
    article["body"] = word_salad(limit, seed=9)
    value = json.dumps(article).encode()
    while len(value) > limit:  # escapes make bytes outnumber characters: trim to fit
        article["body"] = article["body"][: len(article["body"]) - (len(value) - limit)].rstrip()
        value = json.dumps(article).encode()
    prepared = prepare_article(parse_article(value), harness.settings.fingerprint_config())
    record = encode_prepared(prepared, Lineage(harness.settings.topic_raw, 0, 0, 0))
    run_big_message(harness, "valid article at the contract's limit", value, article["id"],
                    notes=f"raw {len(value):,} bytes -> fingerprinted record {len(record):,} bytes "
                          f"({len(gzip.compress(record)):,} gzipped)")


def test_20mb_message_on_a_raw_topic_that_accepts_it(harness: Harness) -> None:
    """An operator raised the raw topic's limit: the message reaches prepare, whose producer cannot send
    it whole, so its dead letter keeps the first 64 KB and says how large it was."""
    big = str(25 * 1024 * 1024)
    harness.ensure_topics(**{harness.settings.topic_raw: {"max.message.bytes": big},
                             harness.settings.topic_dead_letters: {"max.message.bytes": big}})
    article = json.loads(dev_lines(1)[0])
    article.update(id="twenty-mb", url="https://big.example/20mb", body=word_salad(TWENTY_MB, seed=20))
    value = json.dumps(article).encode()
    run_big_message(harness, "20 MB message (topic allows 25 MB)", value, None,
                    notes=f"{len(value):,} bytes, raw and DLQ topics max.message.bytes={big}")
    letters = dead_letters(harness)
    assert len(letters) == 1
    headers = dict(letters[0].headers)
    assert headers[REASON_HEADER] == TOO_LARGE.encode()
    assert headers[TRUNCATED_HEADER] == str(len(value)).encode()
    assert letters[0].value == value[: len(letters[0].value)]
