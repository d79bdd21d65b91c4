"""Certificates for tests of real TLS, made with the openssl command (EC P-256, valid 2 days).

A `CertificateAuthority` signs server certificates (for 127.0.0.1 and localhost) and client
certificates; each issued certificate is a PEM file with its key beside it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import binary

NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([binary("openssl"), *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Issued:
    certificate: Path
    key: Path


@dataclass(frozen=True)
class CertificateAuthority:
    folder: Path
    name: str

    @property
    def certificate(self) -> Path:
        return self.folder / f"{self.name}.pem"

    @property
    def key(self) -> Path:
        return self.folder / f"{self.name}.key"

    def server(self, name: str) -> Issued:
        return self._issue(name, "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def client(self, name: str) -> Issued:
        return self._issue(name, "clientAuth", "")

    def _issue(self, name: str, usage: str, extensions: str) -> Issued:
        (self.folder / f"{name}.ext").write_text(f"{extensions}extendedKeyUsage={usage}\n")
        openssl("req", *NEW_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=self.folder)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", self.certificate.name,
                "-CAkey", self.key.name, "-CAcreateserial", "-out", f"{name}.pem",
                "-days", "2", "-extfile", f"{name}.ext", cwd=self.folder)  # fmt: skip
        return Issued(self.folder / f"{name}.pem", self.folder / f"{name}.key")


def certificate_authority(folder: Path, name: str) -> CertificateAuthority:
    """A new self-signed CA in `folder` (which must exist); its files are named after it."""
    openssl("req", "-x509", *NEW_KEY, "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", cwd=folder)  # fmt: skip
    return CertificateAuthority(folder, name)
