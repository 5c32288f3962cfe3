"""A throw-away certificate authority for the security tests, made with openssl and the JDK's keytool.

    pki = make_ca(tmp_path / "pki")
    broker = pki.issue("kafka", server=True)             # PEM certificate and key, SAN localhost + 127.0.0.1
    keystore = pki.keystore(broker, "store-pw")          # PKCS12 with the chain, for Java servers
    truststore = pki.truststore("store-pw")              # PKCS12 holding the CA
    client = pki.issue("User:match", client=True)        # CN=match... for mutual TLS

A second ``make_ca`` gives an authority nobody trusts: certificates it issues must be refused.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "2"
HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class Issued:
    name: str
    cert: Path  # PEM certificate
    key: Path   # PEM private key (PKCS#8, unencrypted)


@dataclass(frozen=True)
class Pki:
    folder: Path
    cert: Path  # the CA's PEM certificate (what clients and servers trust)
    key: Path

    def issue(self, name: str, *, server: bool = False, client: bool = False) -> Issued:
        """A leaf certificate with CN=``name``; a server one names localhost and 127.0.0.1."""
        base = self.folder / name.replace(":", "_").replace("/", "_")
        usages = ",".join(u for u, wanted in (("serverAuth", server), ("clientAuth", client)) if wanted)
        extensions = [f"extendedKeyUsage={usages}", "basicConstraints=critical,CA:FALSE"]
        if server:
            extensions.append("subjectAltName=" + ",".join(
                f"IP:{host}" if host[0].isdigit() else f"DNS:{host}" for host in HOSTS))
        config = base.with_suffix(".ext")
        config.write_text("\n".join(extensions) + "\n")
        _run("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{base}.key", "-out",
             f"{base}.csr", "-subj", f"/CN={name}")
        _run("openssl", "x509", "-req", "-in", f"{base}.csr", "-CA", str(self.cert), "-CAkey", str(self.key),
             "-CAcreateserial", "-out", f"{base}.pem", "-days", DAYS, "-extfile", str(config))
        return Issued(name, Path(f"{base}.pem"), Path(f"{base}.key"))

    def keystore(self, issued: Issued, password: str) -> Path:
        """PKCS12 with the key, its certificate and the CA (a Java server's ssl.keystore)."""
        path = self.folder / f"{issued.cert.stem}.keystore.p12"
        _run("openssl", "pkcs12", "-export", "-in", str(issued.cert), "-inkey", str(issued.key), "-certfile",
             str(self.cert), "-name", issued.cert.stem, "-out", str(path), "-passout", f"pass:{password}")
        return path

    def truststore(self, password: str) -> Path:
        """PKCS12 holding the CA's certificate (a Java server's or client's ssl.truststore)."""
        path = self.folder / "truststore.p12"
        if not path.exists():
            _run("keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", str(self.cert), "-keystore",
                 str(path), "-storetype", "PKCS12", "-storepass", password)
        return path


def make_ca(folder: Path, name: str = "newsdedup test CA") -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "ca.pem", folder / "ca.key"
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", DAYS, "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return Pki(folder, cert, key)


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} {command[1]} failed: {result.stderr[-2000:]}")
