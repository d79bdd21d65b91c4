"""The scaler's gRPC server over real TLS with client certificates, as KEDA calls it with a
TriggerAuthentication (caCert, tlsClientCert, tlsClientKey).

Two CAs: the scaler's, which signs its server certificate and the clients it accepts, and
another one, whose clients it must refuse at the handshake.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import externalscaler_pb2 as pb
from protos import externalscaler_pb2_grpc as pb_grpc
from scaler.server import SERVICE_NAME
from scaler.service import running_scaler
from scaler.servicer import metric_name
from scaler.settings import ScalerSettings
from tests.support.published import publisher
from tests.support.servers import wait_until
from tests.support.tls import CertificateAuthority, Issued, certificate_authority, openssl

pytestmark = pytest.mark.integration

MODEL = "OasisLMF-Tls-1"
CALL_TIMEOUT = 3.0


@dataclass(frozen=True)
class Pki:
    authority: CertificateAuthority
    server: Issued
    client: Issued
    other_authority: CertificateAuthority
    other_client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("scaler-tls")
    authority = certificate_authority(folder, "scaler-ca")
    other = certificate_authority(folder, "other-ca")
    return Pki(
        authority,
        authority.server("oasis-scaler"),
        authority.client("keda-operator"),
        other,
        other.client("intruder"),
    )


@pytest.fixture(scope="module")
def address(pki: Pki) -> Iterator[str]:
    """A scaler requiring client certificates, serving one model with 4 workers desired."""
    models = {MODEL: {"scaling_strategy": "FIXED_WORKERS", "worker_count_fixed": 4, "analyses": 1}}
    with publisher(models) as published:
        settings = ScalerSettings(
            host="127.0.0.1",
            port=0,
            metrics_port=0,
            scrape_targets=[published.url],
            tls_cert_file=pki.server.certificate,
            tls_key_file=pki.server.key,
            tls_client_ca_file=pki.authority.certificate,
        )
        with running_scaler(settings) as scaler:
            target = f"127.0.0.1:{scaler.port}"
            with grpc.secure_channel(target, credentials(pki.authority, pki.client)) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
                wait_until(
                    lambda: (
                        stub.Check(request, timeout=CALL_TIMEOUT).status
                        == health_pb2.HealthCheckResponse.SERVING
                    ),
                    "the scaler's first good read",
                    deadline=10,
                )
            yield target


def credentials(trusted: CertificateAuthority, client: Issued | None) -> grpc.ChannelCredentials:
    ca = trusted.certificate.read_bytes()
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=client.key.read_bytes(),
        certificate_chain=client.certificate.read_bytes(),
    )


def desired(channel: grpc.Channel) -> int:
    ref = pb.ScaledObjectRef(name="workers", namespace="oasis", scalerMetadata={"model": MODEL})
    request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName=metric_name(MODEL))
    response = pb_grpc.ExternalScalerStub(channel).GetMetrics(request, timeout=CALL_TIMEOUT)
    return int(response.metricValues[0].metricValue)


def refused(channel: grpc.Channel) -> bool:
    try:
        desired(channel)
    except grpc.RpcError as error:
        # A failed handshake is a connection that never comes up.
        return bool(error.code() is grpc.StatusCode.UNAVAILABLE)
    return False


def test_a_client_with_a_certificate_from_the_scalers_ca_gets_answers(
    address: str, pki: Pki
) -> None:
    with grpc.secure_channel(address, credentials(pki.authority, pki.client)) as channel:
        assert desired(channel) == 4


def test_a_client_without_a_certificate_is_refused(address: str, pki: Pki) -> None:
    with grpc.secure_channel(address, credentials(pki.authority, None)) as channel:
        assert refused(channel)


def test_a_client_with_a_certificate_from_another_ca_is_refused(address: str, pki: Pki) -> None:
    with grpc.secure_channel(address, credentials(pki.authority, pki.other_client)) as channel:
        assert refused(channel)


def test_a_client_that_does_not_trust_the_server_refuses_it(address: str, pki: Pki) -> None:
    with grpc.secure_channel(address, credentials(pki.other_authority, pki.client)) as channel:
        assert refused(channel)


def test_plaintext_is_refused(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        assert refused(channel)


def test_refused_clients_leave_the_server_answering(address: str, pki: Pki) -> None:
    for client in (None, pki.other_client):
        with grpc.secure_channel(address, credentials(pki.authority, client)) as channel:
            assert refused(channel)
    with grpc.secure_channel(address, credentials(pki.authority, pki.client)) as channel:
        assert desired(channel) == 4


def test_the_certificates_are_what_the_tests_say(pki: Pki, tmp_path: Path) -> None:
    """Guards the refusals above: each is refused for its reason, not a broken certificate."""
    for authority, issued in (
        (pki.authority, pki.server),
        (pki.authority, pki.client),
        (pki.other_authority, pki.other_client),
    ):
        openssl(
            "verify", "-CAfile", str(authority.certificate), str(issued.certificate), cwd=tmp_path
        )
    with pytest.raises(subprocess.CalledProcessError):
        openssl(
            "verify", "-CAfile", str(pki.authority.certificate), str(pki.other_client.certificate),
            cwd=tmp_path,
        )  # fmt: skip
