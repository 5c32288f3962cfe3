"""Kafka plumbing shared by the roles: client settings, topics, producers, consumers, dead letters."""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import (
    AuthorizationError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    SaslAuthenticationFailedError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from kafka.net.compat import KafkaNetClient
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import MemberState, TopicPartition

from consumers.fetch_guard import FetchGuard
from consumers.lifecycle import StopFlag
from consumers.settings import Settings
from ingest.contract import TOO_LARGE
from ingest.producer import NO_LOSS

log = logging.getLogger(__name__)

# Dead-letter headers; the value is always the original bytes.
REASON_HEADER = "newsdedup.reason"
DETAIL_HEADER = "newsdedup.detail"
SOURCE_HEADERS = ("newsdedup.source.topic", "newsdedup.source.partition", "newsdedup.source.offset")
TRUNCATED_HEADER = "newsdedup.truncated"  # set when the value had to be cut to fit: its original size
PROCESSING_ERROR = "processing_error"  # an unexpected failure on a message that passed validation

# Room for a record's key, headers and batch framing on top of its value.
RECORD_OVERHEAD_BYTES = 65_536
# A dead letter too large even for the dead-letter topic keeps this much of its value.
DEAD_LETTER_CUT_BYTES = 65_536
# Errors that refuse one record for its size: that record's problem, not the batch's.
SIZE_ERRORS = (MessageSizeTooLargeError, RecordListTooLargeError)
DEFAULT_REQUEST_TIMEOUT_MS = 30_000  # kafka-python's


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection and security settings, passed through to every kafka-python client."""
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_sasl_mechanism:
        config.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                      sasl_plain_username=settings.kafka_sasl_username,
                      sasl_plain_password=settings.kafka_sasl_password)
    for name in ("cafile", "certfile", "keyfile", "password"):
        value = getattr(settings, f"kafka_ssl_{name}")
        if value:
            config[f"ssl_{name}"] = value
    return config


def topic_max_bytes(settings: Settings) -> dict[str, int]:
    """Each topic's ``max.message.bytes``, sized so that anything the contract accepts gets through.

    Kafka's default (about 1 MB) is below the contract's limit (max_message_bytes, 2 MB by
    default). A fingerprinted record carries the text and its shingle hashes (up to about 3.7x the
    text), a dead letter the original bytes plus headers, compressed (random bytes grow).
    """
    raw = settings.max_message_bytes + RECORD_OVERHEAD_BYTES
    return {
        settings.topic_raw: raw,
        settings.topic_fingerprinted: 4 * raw,
        settings.topic_dead_letters: 2 * raw,
        settings.topic_story_events: 1_048_588,  # Kafka's default: events are small
    }


# Errors no retry mends: the brokers refused this client's identity or its rights. A role ends on them
# (with one line naming the brokers, consumers.cli) instead of retrying for ever.
REFUSALS = (SaslAuthenticationFailedError, AuthorizationError)
BOOTSTRAP_PATIENCE_SECONDS = 30.0  # how long a command waits at start for a broker to answer (kafka-python's default)
BOOTSTRAP_ATTEMPT_MS = 5_000  # one bootstrap attempt: a refusal seen in it ends the wait at once


class KafkaUnavailable(Exception):
    """The brokers cannot be used as configured; the message is the one line the command prints.

    ``refused``: the brokers answered and refused (credentials, certificate, rights); else none answered.
    """

    def __init__(self, message: str, refused: bool = True) -> None:
        super().__init__(message)
        self.refused = refused


def connect_admin(settings: Settings) -> KafkaAdminClient:
    """An admin client that bootstrapped, or KafkaUnavailable saying why not.

    kafka-python retries every failed connection until its bootstrap timeout, then raises only "Unable to
    bootstrap"; why it failed (a wrong password, a certificate one side refused, a plaintext client on a TLS
    listener) it only logs. So the attempts here are short and watched through kafka-python's logger: a refusal
    (authentication, TLS) ends the wait after the attempt that saw it, with its reason; a broker that does not
    answer is waited for up to BOOTSTRAP_PATIENCE_SECONDS, as before.
    """
    deadline = time.monotonic() + BOOTSTRAP_PATIENCE_SECONDS
    watcher = _ConnectionFailures()
    kafka_log = logging.getLogger("kafka")
    kafka_log.addHandler(watcher)
    try:
        while True:
            attempt_ms = max(1_000, min(BOOTSTRAP_ATTEMPT_MS, int((deadline - time.monotonic()) * 1000)))
            try:
                return _admin_client({**client_config(settings), "bootstrap_timeout_ms": attempt_ms})
            except KafkaError as exc:
                if watcher.refusal is not None or time.monotonic() >= deadline:
                    raise KafkaUnavailable(f"cannot connect to Kafka at {settings.kafka_bootstrap_servers}: "
                                           f"{connection_failure(settings, watcher.refusal or watcher.last or exc)}",
                                           refused=watcher.refusal is not None) from None
                log.warning("no Kafka broker answered yet; trying again", extra={
                    "bootstrap_servers": settings.kafka_bootstrap_servers, "error": _one_line(watcher.last or exc)})
    finally:
        kafka_log.removeHandler(watcher)


def _admin_client(config: dict[str, Any]) -> KafkaAdminClient:
    """``KafkaAdminClient(**config)``, closed again if its bootstrap fails (the constructor raises then, and
    leaves its IO thread running)."""
    clients: list[KafkaNetClient] = []

    def kept(**kwargs: Any) -> KafkaNetClient:
        clients.append(KafkaNetClient(**kwargs))
        return clients[-1]

    try:
        return KafkaAdminClient(**config, kafka_client=kept)
    except KafkaError:
        for client in clients:
            client.close()
        raise


class _ConnectionFailures(logging.Handler):
    """Keeps the exceptions kafka-python logs about its connections: the last one, and the last refusal."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: BaseException | None = None
        self.refusal: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:  # runs on kafka-python's IO thread: whatever goes wrong here must not reach its event loop
            for arg in record.args if isinstance(record.args, tuple) else ():
                # KafkaTimeoutError: the bootstrap's own "Unable to bootstrap", which says nothing of why.
                if isinstance(arg, BaseException) and not isinstance(arg, KafkaTimeoutError):
                    self.last = arg
                    if _is_refusal(arg):
                        self.refusal = arg
        except Exception:
            self.handleError(record)


def _is_refusal(exc: BaseException) -> bool:
    if isinstance(exc, (*REFUSALS, ssl.SSLError, FileNotFoundError, PermissionError, IsADirectoryError)):
        return True  # the files: kafka_ssl_cafile and the like cannot be read
    return "[SSL" in str(exc)  # kafka-python wraps TLS failures in KafkaConnectionError, keeping only the message


def connection_failure(settings: Settings, exc: BaseException) -> str:
    """Why a connection failed, in one line that names the setting to look at (never a secret's value)."""
    text = _one_line(exc)
    if isinstance(exc, SaslAuthenticationFailedError):
        return f"SASL {settings.kafka_sasl_mechanism} authentication as {settings.kafka_sasl_username!r} failed: " \
               f"{_broker_message(exc)}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"the broker's certificate is not trusted (kafka_ssl_cafile={settings.kafka_ssl_cafile!r}): {text}"
    if re.search(r"ALERT_(CERTIFICATE_UNKNOWN|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_REQUIRED)", text):
        if not settings.kafka_ssl_certfile:
            return f"the broker wants a client certificate (mutual TLS) and kafka_ssl_certfile is empty: {text}"
        return f"the broker refused the client certificate (kafka_ssl_certfile={settings.kafka_ssl_certfile!r}): {text}"
    if "PEM lib" in text:
        return f"cannot load the client certificate and key (kafka_ssl_certfile={settings.kafka_ssl_certfile!r}, " \
               f"kafka_ssl_keyfile={settings.kafka_ssl_keyfile!r}; wrong kafka_ssl_password?): {text}"
    if "SSL" not in settings.kafka_security_protocol and re.search(r"socket disconnected|Invalid frame", text):
        return f"the broker closed the connection: does its listener expect TLS " \
               f"(kafka_security_protocol={settings.kafka_security_protocol})? {text}"
    return text


def refusal(settings: Settings, exc: KafkaError) -> str:
    """The one line for a request the brokers refused (REFUSALS) after the connection was made."""
    if isinstance(exc, SaslAuthenticationFailedError):
        return f"cannot connect to Kafka at {settings.kafka_bootstrap_servers}: {connection_failure(settings, exc)}"
    return f"Kafka at {settings.kafka_bootstrap_servers} refused {_identity(settings)}: {type(exc).__name__}: " \
           f"{_broker_message(exc) or 'not authorized'}"


def _identity(settings: Settings) -> str:
    if settings.kafka_security_protocol.startswith("SASL_"):
        return f"user {settings.kafka_sasl_username!r}"
    if settings.kafka_ssl_certfile:
        return f"the certificate {settings.kafka_ssl_certfile}"
    return "this client"


def _broker_message(exc: KafkaError) -> str:
    """A broker error's own text, without kafka-python's repeated class names and error number."""
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, set | frozenset | list | tuple):  # the consumer passes the refused topics as a set
        return ", ".join(sorted(map(str, detail)))
    return re.sub(r"^(\w+Error: )+", "", str(detail))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return re.sub(r" \(_ssl\.c:\d+\)", "", text)


def ensure_topics(settings: Settings, required: Iterable[str] = ()) -> list[str]:
    """Create the service's topics that do not exist; returns the names created.

    Asks about the four topics by name: one the brokers call unknown is created (that needs CREATE, which
    only the admin principal of a secured cluster holds: ``newsdedup topics``); one they will not describe
    to this principal (TOPIC_AUTHORIZATION_FAILED) is another role's and is left alone, unless it is
    ``required`` (KafkaUnavailable). So a role whose topics exist needs DESCRIBE on them at most, which its
    READ or WRITE implies.
    """
    wanted = {
        settings.topic_raw: settings.raw_partitions,
        settings.topic_fingerprinted: settings.fingerprinted_partitions,
        settings.topic_dead_letters: 1,
        settings.topic_story_events: 1,
    }
    max_bytes = topic_max_bytes(settings)
    admin = connect_admin(settings)
    try:
        errors = {topic["name"]: topic["error_code"] for topic in admin.describe_topics(list(wanted))}
        hidden = [name for name in required if errors.get(name) == TopicAuthorizationFailedError.errno]
        if hidden:
            raise KafkaUnavailable(f"Kafka at {settings.kafka_bootstrap_servers} refused {_identity(settings)} the "
                                   f"topic(s) {', '.join(hidden)} (TopicAuthorizationFailedError): this principal has "
                                   f"no ACL for them ('newsdedup topics' needs the admin principal)")
        created = []
        for name in wanted:
            if errors.get(name) != UnknownTopicOrPartitionError.errno:
                continue
            try:
                config = {"max.message.bytes": str(max_bytes[name])}
                admin.create_topics([NewTopic(name, wanted[name], replication_factor=-1, topic_configs=config)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass  # another process created it meanwhile
            except AuthorizationError as exc:
                raise KafkaUnavailable(f"topic {name} does not exist and Kafka at {settings.kafka_bootstrap_servers} "
                                       f"refused {_identity(settings)} creating it ({type(exc).__name__}): create the "
                                       f"topics with 'newsdedup topics' as an admin principal") from None
        if created:
            log.info("created topics", extra={"topics": created})
        return created
    finally:
        admin.close()


def make_producer(settings: Settings) -> KafkaProducer:
    compression = None if settings.kafka_compression_type == "none" else settings.kafka_compression_type
    delivery_ms = settings.kafka_delivery_timeout_ms
    return KafkaProducer(
        **client_config(settings),
        **{**NO_LOSS, "delivery_timeout_ms": delivery_ms},
        # kafka-python wants delivery >= linger + request timeout; a short delivery timeout shortens the request's.
        request_timeout_ms=min(DEFAULT_REQUEST_TIMEOUT_MS, delivery_ms - NO_LOSS["linger_ms"]),
        compression_type=compression,
        # The largest topic limit; each topic's own limit is checked by the broker.
        max_request_size=max(topic_max_bytes(settings).values()),
    )


def make_consumer(settings: Settings, group_id: str) -> KafkaConsumer:
    return KafkaConsumer(
        **client_config(settings),
        group_id=group_id,
        enable_auto_commit=False,  # offsets are committed after the results are safe
        auto_offset_reset="earliest",
        # Records of an aborted transaction are never stored, and those of an open one wait for its commit:
        # producers in the wild (Java, librdkafka) write transactionally.
        isolation_level="read_committed",
        max_poll_records=settings.batch_max_messages,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.session_timeout_ms // 4),
        max_partition_fetch_bytes=max(1_048_576, settings.max_message_bytes + 65_536),
        fetch_max_bytes=max(52_428_800, settings.max_message_bytes + 65_536),
    )


def subscribe_when_known(consumer: KafkaConsumer, topic: str, listener: ConsumerRebalanceListener,
                         stop: StopFlag, timeout: float = 60.0) -> None:
    """Subscribe once the consumer's metadata holds the topic's partitions.

    A fresh consumer that leads its group before its metadata has the topic assigns nothing
    ("No partition metadata for topic"), and the group rebalances again: the moment where
    kafka-python 3.0.12 can wedge for good (dpkp/kafka-python#3121).
    """
    deadline = time.monotonic() + timeout
    if not _partitions_known(consumer, topic):
        _refuse_if_hidden(consumer, topic)
    while not _partitions_known(consumer, topic) and time.monotonic() < deadline:
        if stop.wait(0.5):
            break
    consumer.subscribe([topic], listener=listener)


def _refuse_if_hidden(consumer: KafkaConsumer, topic: str) -> None:
    """Raise TopicAuthorizationFailedError if the brokers will not describe ``topic`` to this principal.

    The consumer asks for every topic's metadata, and the answer leaves out a topic the principal has no ACL
    for, as if it did not exist: the role would wait, subscribe and then consume nothing, for ever, without an
    error. Asked by name (once, by an admin client with the consumer's connection settings), the brokers tell.
    """
    config = {key: value for key, value in consumer.config.items()
              if key in KafkaAdminClient.DEFAULT_CONFIG and key != "kafka_client"}
    try:
        admin = _admin_client({**config, "bootstrap_timeout_ms": BOOTSTRAP_ATTEMPT_MS})
    except KafkaError:
        return  # no broker answers: the wait that follows is for that
    try:
        described = admin.describe_topics([topic])
    except KafkaError:
        return
    finally:
        admin.close()
    if any(t["error_code"] == TopicAuthorizationFailedError.errno for t in described):
        raise TopicAuthorizationFailedError(topic)


def _partitions_known(consumer: KafkaConsumer, topic: str) -> bool:
    try:
        return bool(consumer.partitions_for_topic(topic))
    except REFUSALS:
        raise
    except KafkaError:  # no broker answers yet: the wait goes on
        return False


def poll(consumer: KafkaConsumer, settings: Settings, stop: StopFlag,
         guard: FetchGuard) -> dict[TopicPartition, list[ConsumerRecord]]:
    """One poll; an error from the client (it raises when no broker answers a metadata refresh) is an
    empty poll after a pause, not the end of the role: the consumer resumes when a broker is back. A refusal
    (REFUSALS: the group or topic is not this principal's, its password changed) is the end: no retry mends it.
    A batch the client cannot decode pauses its partition through ``guard`` (see consumers.fetch_guard)."""
    try:
        return consumer.poll(timeout_ms=settings.poll_timeout_ms, max_records=settings.batch_max_messages)
    except Exception as exc:
        if guard.caught(exc):
            return {}
        if not isinstance(exc, KafkaError) or isinstance(exc, REFUSALS):
            raise
        log.warning("poll failed; trying again", extra={"error": type(exc).__name__})
        stop.wait(1.0)
        return {}


def joining_group(consumer: KafkaConsumer) -> bool:
    """True while the consumer is outside a settled group membership although a broker answers.

    A join takes seconds. kafka-python 3.0.12 can instead stay outside its group for good after a
    rebalance (partitions revoked, never assigned again, polls going on): the watchdog saw progress
    and the role held nothing. Roles do not count such polls as progress, so the watchdog restarts
    them. While no broker answers, waiting is right: those polls still count. Reads the client's
    internals (no public API tells); False if they are not there.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    try:
        unsettled = coordinator.state != MemberState.STABLE or coordinator.need_rejoin()  # type: ignore[union-attr]
        return bool(unsettled) and kafka_connected(consumer)
    except AttributeError:
        return False


def kafka_connected(consumer: KafkaConsumer) -> bool:
    """True while the consumer holds a live connection to a broker of the cluster.

    Not KafkaConsumer.bootstrap_connected(): in kafka-python 3 that is True only while the first
    bootstrap is in flight, so it is False for the whole life of a working consumer.
    """
    client = consumer._client  # the consumer has no public "connected" API
    return any(client.connected(broker.node_id) for broker in client.cluster.brokers())


Sent = FutureRecordMetadata | KafkaError  # a send in flight, or the error that refused it at once


def try_send(producer: KafkaProducer, topic: str, **record: Any) -> Sent:
    """``producer.send``, with a record too large for the producer returned as its error, not raised."""
    try:
        return producer.send(topic, **record)
    except SIZE_ERRORS as exc:
        return exc


def refused_for_size(sent: Sent) -> bool:
    """After a flush: True if the record was refused for its size; other failures raise."""
    if isinstance(sent, KafkaError):
        if isinstance(sent, SIZE_ERRORS):
            return True
        raise sent
    try:
        sent.get(timeout=0)
    except SIZE_ERRORS:
        return True
    return False


def send_dead_letter(producer: KafkaProducer, topic: str, record: ConsumerRecord, reason: str, detail: str,
                     cut: bool = False) -> Sent:
    """Original bytes and key, with the reason and the source position in headers.

    ``cut`` keeps only the first DEAD_LETTER_CUT_BYTES of the value (and says so in a header): the
    last resort for a message larger than even the dead-letter topic accepts.
    """
    value = record.value
    headers = [
        (REASON_HEADER, reason.encode()),
        (DETAIL_HEADER, detail[:1000].encode("utf-8", "replace")),
        *zip(SOURCE_HEADERS, (record.topic.encode(), str(record.partition).encode(), str(record.offset).encode()),
             strict=True),
    ]
    key = record.key
    if cut:
        if value is not None and len(value) > DEAD_LETTER_CUT_BYTES:
            headers.append((TRUNCATED_HEADER, str(len(value)).encode()))
            value = value[:DEAD_LETTER_CUT_BYTES]
        key = key[:1024] if key is not None else None
    return try_send(producer, topic, value=value, key=key, headers=headers)


@dataclass(frozen=True)
class Outgoing:
    """A send in flight for one consumed record: its result (``reason`` None) or its dead letter."""

    record: ConsumerRecord
    sent: Sent
    reason: str | None = None
    detail: str = ""
    cut: bool = False


def dead_letter(producer: KafkaProducer, topic: str, record: ConsumerRecord, reason: str, detail: str,
                cut: bool = False) -> Outgoing:
    return Outgoing(record, send_dead_letter(producer, topic, record, reason, detail, cut), reason, detail, cut)


def deliver(producer: KafkaProducer, dead_letter_topic: str, outgoing: list[Outgoing]) -> int:
    """Flush and check every send; returns how many results were dead-lettered for their size.

    A record refused for its size must not fail its batch (read, refused and read again forever):
    a result goes to the DLQ as its consumed record (reason too_large), a dead letter is sent again
    cut to fit. Any other failure raises, so the caller does not commit the batch.
    """
    turned = 0
    while outgoing:
        producer.flush()
        again = []
        for out in outgoing:
            if not refused_for_size(out.sent):
                continue
            log.warning("refused by Kafka for its size; dead-lettering it", extra={
                "partition": out.record.partition, "offset": out.record.offset, "reason": out.reason, "cut": out.cut})
            if out.cut:
                raise RuntimeError(f"a dead letter cut to fit was refused (offset {out.record.offset})")
            if out.reason is None:
                turned += 1
                again.append(dead_letter(producer, dead_letter_topic, out.record, TOO_LARGE,
                                         "the result was refused by Kafka for its size"))
            else:
                again.append(dead_letter(producer, dead_letter_topic, out.record, out.reason, out.detail, cut=True))
        outgoing = again
    return turned
