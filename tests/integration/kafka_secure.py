"""A second, secured Kafka broker for tests/integration/test_kafka_security.py.

It is started and stopped by scripts/services.sh, like the plain one, with a run folder and ports of its
own and two additions: NEWSDEDUP_KAFKA_EXTRA_CONFIG (the properties below) and NEWSDEDUP_KAFKA_SCRAM_USERS
(the SCRAM users, made when the storage is formatted, KIP-900). On 127.0.0.1, free ports:

  SASL_SSL    SCRAM-SHA-512 over TLS; the user name is the principal (User:prepare)
  SSL         mutual TLS (ssl.client.auth=required); the certificate's CN is the principal (CN=prepare -> User:prepare)
  CONTROLLER  PLAINTEXT, KRaft's own listener, loopback only

No listener takes plaintext client connections. StandardAuthorizer with super.users=User:admin (and
User:ANONYMOUS, the broker itself on its controller listener: see start_secure_kafka) and
allow.everyone.if.no.acl.found=false: what no ACL allows is refused. Every principal of PRINCIPALS has a
SCRAM password and a client certificate (its key encrypted with a password of its own) from a throw-away CA
(tests/integration/tls.py); the same principal name through either listener gets the same ACLs.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from kafka import KafkaAdminClient

from consumers.kafka_io import client_config
from consumers.settings import Settings, replace
from tests.integration.conftest import ROOT, free_port
from tests.integration.tls import Issued, Pki, make_ca

SERVICES_SH = ROOT / "scripts" / "services.sh"
ADMIN = "admin"  # the super user: creates topics (`newsdedup topics`) and ACLs
PRINCIPALS = (ADMIN, "ingest", "prepare", "match", "lag-exporter")
STORE_PASSWORD = "broker-store-pw"  # the broker's own PKCS12 stores, in a folder of this test session only
SASL_SSL, MTLS = "sasl_ssl", "mtls"
LISTENERS = (SASL_SSL, MTLS)


@dataclass(frozen=True)
class Principal:
    name: str
    password: str  # its SCRAM-SHA-512 password
    cert: Path  # its client certificate (PEM, CN=name)
    key: Path  # its private key, PEM, encrypted with key_password
    key_password: str


@dataclass(frozen=True)
class SecureKafka:
    folder: Path
    sasl_port: int
    ssl_port: int
    controller_port: int
    pki: Pki
    principals: dict[str, Principal]

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def port(self, listener: str) -> int:
        return self.sasl_port if listener == SASL_SSL else self.ssl_port

    def bootstrap(self, listener: str) -> str:
        return f"{self.host}:{self.port(listener)}"

    def settings(self, base: Settings, principal: str, listener: str) -> Settings:
        """``base`` connected as ``principal`` through ``listener`` (SASL_SSL or MTLS)."""
        who = self.principals[principal]
        common = {"kafka_bootstrap_servers": self.bootstrap(listener), "kafka_ssl_cafile": str(self.pki.cert)}
        if listener == SASL_SSL:
            return replace(base, **common, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                           kafka_sasl_username=who.name, kafka_sasl_password=who.password)
        return replace(base, **common, kafka_security_protocol="SSL", kafka_ssl_certfile=str(who.cert),
                       kafka_ssl_keyfile=str(who.key), kafka_ssl_password=who.key_password)

    def admin(self, base: Settings) -> KafkaAdminClient:
        return KafkaAdminClient(**client_config(self.settings(base, ADMIN, SASL_SSL)), client_id="test-admin")

    def script(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSDEDUP_")}
        env.update({
            "NEWSDEDUP_RUN_DIR": str(self.folder / "run"),
            "NEWSDEDUP_KAFKA_PORT": str(self.sasl_port),  # what services.sh waits for (a TCP accept)
            "NEWSDEDUP_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "NEWSDEDUP_KAFKA_EXTRA_CONFIG": str(self.folder / "secure.properties"),
            "NEWSDEDUP_KAFKA_SCRAM_USERS": str(self.folder / "scram-users"),
        })
        return subprocess.run(["bash", str(SERVICES_SH), *args], env=env, capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT, check=False)

    def stop(self) -> None:
        self.script("down", "kafka", "--purge", timeout=120)

    def server_log(self) -> str:
        path = self.folder / "run" / "kafka" / "logs" / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_secure_kafka(folder: Path) -> SecureKafka:
    """Make the CA, certificates, stores and users, then start the broker (services.sh up kafka)."""
    pki = make_ca(folder / "pki")
    broker = pki.issue("kafka-broker", server=True)
    principals = {name: _principal(pki, name) for name in PRINCIPALS}
    kafka = SecureKafka(folder, free_port(), free_port(), free_port(), pki, principals)
    admin = principals[ADMIN]
    host = kafka.host
    properties = {
        "listeners": f"SASL_SSL://{host}:{kafka.sasl_port},SSL://{host}:{kafka.ssl_port},"
                     f"CONTROLLER://{host}:{kafka.controller_port}",
        "advertised.listeners": f"SASL_SSL://{host}:{kafka.sasl_port},SSL://{host}:{kafka.ssl_port}",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL",
        # Brokers would talk to each other as the super user, over SASL_SSL (one node: no replication traffic).
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{admin.name}" password="{admin.password}";',
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(pki.keystore(broker, STORE_PASSWORD)),
        "ssl.keystore.password": STORE_PASSWORD,
        "ssl.truststore.type": "PKCS12",
        "ssl.truststore.location": str(pki.truststore(STORE_PASSWORD)),
        "ssl.truststore.password": STORE_PASSWORD,
        "listener.name.ssl.ssl.client.auth": "required",  # the SSL listener is mTLS; SASL_SSL asks for no certificate
        # CN=prepare is User:prepare, the name the same role has through SCRAM: one set of ACLs per role.
        "ssl.principal.mapping.rules": "RULE:^CN=([a-zA-Z0-9._-]+)$/$1/,DEFAULT",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # KRaft needs the controller listener's principal to be a super user (the broker registers with
        # CLUSTER_ACTION): on a PLAINTEXT controller listener that is User:ANONYMOUS, which no client listener
        # gives (SASL_SSL always authenticates, SSL requires a certificate). But whoever reaches the controller
        # port is then a super user (Kafka's Admin with bootstrap.controllers creates ACLs there): 127.0.0.1
        # only, for a test; a deployment gives that listener mutual TLS (README, "Kafka security").
        "super.users": f"User:{ADMIN};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }
    config, users = folder / "secure.properties", folder / "scram-users"  # both hold passwords
    for path in (config, users):
        path.touch(mode=0o600)
    config.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
    users.write_text("".join(f"SCRAM-SHA-512=[name={p.name},password={p.password}]\n" for p in principals.values()))
    result = kafka.script("up", "kafka", timeout=300)
    if result.returncode != 0:
        errors = [line for line in kafka.server_log().splitlines() if " ERROR " in line][-10:]
        kafka.stop()
        raise RuntimeError("the secured broker did not start:\n" + "\n".join(errors) + result.stderr[-2000:])
    return kafka


def _principal(pki: Pki, name: str) -> Principal:
    issued = pki.issue(name, client=True)
    key_password = f"key-{name}-{secrets.token_hex(6)}"
    return Principal(name, f"scram-{name}-{secrets.token_hex(8)}", issued.cert, encrypt_key(issued, key_password),
                     key_password)


def encrypt_key(issued: Issued, password: str) -> Path:
    """The issued key as an encrypted PKCS#8 PEM (what a client's kafka_ssl_password opens)."""
    path = issued.key.with_name(f"{issued.key.stem}.encrypted.key")
    subprocess.run(["openssl", "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", str(issued.key), "-out", str(path),
                    "-passout", "env:KEY_PASSWORD"], env={**os.environ, "KEY_PASSWORD": password}, check=True,
                   capture_output=True, timeout=60)
    return path


# -- least privilege -------------------------------------------------------------------------------------------

def _deploy_acls() -> ModuleType:
    """deploy/kafka/acls.py, the admin step of the secured compose stack: the tests grant what it grants."""
    spec = importlib.util.spec_from_file_location("newsdedup_deploy_acls", ROOT / "deploy" / "kafka" / "acls.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DEPLOY_ACLS = _deploy_acls()
Grant = DEPLOY_ACLS.Grant  # principal, resource type, resource name, operation
role_grants = DEPLOY_ACLS.role_grants  # what each role's principal may do, and nothing more


def grant(admin: KafkaAdminClient, grants: Iterable[Grant]) -> None:
    result = admin.create_acls(DEPLOY_ACLS.to_acls(grants))
    if result["failed"]:
        raise RuntimeError(f"creating ACLs failed: {result['failed']}")
