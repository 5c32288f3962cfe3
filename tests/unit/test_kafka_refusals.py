"""consumers.kafka_io: what a refused or failed Kafka connection is called, without a broker.

The real broker's refusals are tested in tests/integration/test_kafka_security.py; here, each kind of
exception kafka-python raises or logs maps to the one line that names the setting to look at, and a secret's
value never appears in it.
"""

from __future__ import annotations

import ssl

import pytest
from kafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAuthorizationFailedError,
)

from consumers.kafka_io import _ConnectionFailures, _is_refusal, client_config, connection_failure, refusal
from consumers.settings import Settings, load_settings

PASSWORD, KEY_PASSWORD = "Sasl-Secret-4711", "Key-Secret-0815"
SASL = load_settings({}, {"kafka_bootstrap_servers": "b1:9094", "kafka_security_protocol": "SASL_SSL",
                          "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": "prepare",
                          "kafka_sasl_password": PASSWORD, "kafka_ssl_cafile": "/ca.pem"})
MTLS = load_settings({}, {"kafka_bootstrap_servers": "b1:9093", "kafka_security_protocol": "SSL",
                          "kafka_ssl_cafile": "/ca.pem", "kafka_ssl_certfile": "/match.pem",
                          "kafka_ssl_keyfile": "/match.key", "kafka_ssl_password": KEY_PASSWORD})
PLAIN = load_settings({}, {"kafka_bootstrap_servers": "b1:9094"})
SASL_FAILED = SaslAuthenticationFailedError(
    "SaslAuthenticationFailedError: Authentication failed during authentication due to invalid credentials with SASL "
    "mechanism SCRAM-SHA-512")


@pytest.mark.parametrize(("settings", "exc", "expected"), [
    (SASL, SASL_FAILED, "SASL SCRAM-SHA-512 authentication as 'prepare' failed: Authentication failed during "
                        "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"),
    (MTLS, KafkaConnectionError("[SSL: SSLV3_ALERT_CERTIFICATE_UNKNOWN] sslv3 alert certificate unknown (_ssl.c:2580)"),
     "the broker refused the client certificate (kafka_ssl_certfile='/match.pem'): KafkaConnectionError: "
     "[SSL: SSLV3_ALERT_CERTIFICATE_UNKNOWN] sslv3 alert certificate unknown"),
    (PLAIN, KafkaConnectionError("socket disconnected"),
     "the broker closed the connection: does its listener expect TLS (kafka_security_protocol=PLAINTEXT)? "
     "KafkaConnectionError: socket disconnected"),
    (MTLS, ssl.SSLError(9, "[SSL] PEM lib (_ssl.c:3926)"),
     "cannot load the client certificate and key (kafka_ssl_certfile='/match.pem', kafka_ssl_keyfile='/match.key'; "
     "wrong kafka_ssl_password?): [SSL] PEM lib"),
], ids=["wrong-password", "untrusted-certificate", "plaintext-at-tls", "wrong-key-password"])
def test_a_connection_failure_names_the_setting_to_look_at(settings: Settings, exc: BaseException,
                                                          expected: str) -> None:
    line = connection_failure(settings, exc)
    assert line == expected
    assert PASSWORD not in line and KEY_PASSWORD not in line


def test_a_refused_right_names_the_brokers_the_principal_and_the_resource() -> None:
    assert refusal(SASL, GroupAuthorizationFailedError("newsdedup-prepare")) == \
        "Kafka at b1:9094 refused user 'prepare': GroupAuthorizationFailedError: newsdedup-prepare"
    # the consumer's own error carries the refused topics as a set
    assert refusal(MTLS, TopicAuthorizationFailedError({"t.b", "t.a"})) == \
        "Kafka at b1:9093 refused the certificate /match.pem: TopicAuthorizationFailedError: t.a, t.b"
    assert refusal(SASL, SASL_FAILED).startswith("cannot connect to Kafka at b1:9094: SASL SCRAM-SHA-512 ")


@pytest.mark.parametrize(("exc", "refused"), [
    (SASL_FAILED, True),
    (TopicAuthorizationFailedError("t"), True),
    (KafkaConnectionError("Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), True),
    (FileNotFoundError(2, "No such file or directory"), True),  # kafka_ssl_cafile
    (KafkaConnectionError("socket disconnected"), False),  # also a broker that restarts
    (ConnectionRefusedError(111, "Connection refused"), False),  # a broker that is down: waited for
])
def test_only_a_refusal_ends_the_wait_for_a_broker(exc: BaseException, refused: bool) -> None:
    assert _is_refusal(exc) is refused


def test_the_watcher_keeps_the_refusal_over_later_disconnects_and_ignores_the_bootstrap_timeout() -> None:
    import logging

    watcher = _ConnectionFailures()
    for exc in (SASL_FAILED, KafkaConnectionError("socket disconnected"), KafkaTimeoutError("Unable to bootstrap")):
        watcher.handle(logging.LogRecord("kafka.net.manager", logging.WARNING, __file__, 1,
                                         "Bootstrap connection to %s failed: %s", ("bootstrap-0", exc), None))
    assert watcher.refusal is SASL_FAILED
    assert isinstance(watcher.last, KafkaConnectionError)


def test_the_key_password_passes_to_kafka_python_and_a_sasl_protocol_needs_a_mechanism() -> None:
    assert client_config(MTLS)["ssl_password"] == KEY_PASSWORD
    assert KEY_PASSWORD not in repr(MTLS)
    with pytest.raises(ValueError, match=r"kafka_security_protocol=SASL_SSL needs kafka_sasl_mechanism: one of "
                                         r"PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 \(got ''\)"):
        load_settings({}, {"kafka_security_protocol": "SASL_SSL"})
