"""`oasis-autoscaler scaler` as a real process, called as KEDA calls it.

Its input is a real HTTP server on loopback serving a metrics text the test controls (standing in
for the API's /metrics), or a real Prometheus scraping that server.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from cli.local.launch import scaler_argv
from protos import externalscaler_pb2 as pb
from protos import externalscaler_pb2_grpc as pb_grpc
from scaler.server import SERVICE_NAME
from scaler.servicer import metric_name
from tests.support.published import Publisher, publisher
from tests.support.servers import binary, free_port, prometheus_server, stop_process, wait_until

pytestmark = pytest.mark.integration

# KEDA's budget for one call is about 3 s.
CALL_TIMEOUT = 3.0
FIXED = "OasisLMF-Fixed-1"
QUEUE = "OasisLMF-Queue-1"
DYNAMIC = "OasisLMF-Dynamic-1"
WARM = "OasisLMF-Warm-1"
BROKEN = "OasisLMF-Broken-1"
IDLE = "OasisLMF-Idle-1"
MODELS: dict[str, dict[str, Any]] = {
    FIXED: {"scaling_strategy": "FIXED_WORKERS", "worker_count_fixed": 5, "analyses": 3},
    QUEUE: {"scaling_strategy": "QUEUE_LOAD", "worker_count_max": 5, "analyses": 30},
    # The brief's case: 3 analyses x 15 chunks, 5 chunks per worker -> 9.
    DYNAMIC: {
        "scaling_strategy": "DYNAMIC_TASKS",
        "chunks_per_worker": 5,
        "analyses": 3,
        "pending": 45,
    },
    WARM: {"scaling_strategy": "FIXED_WORKERS", "worker_count_fixed": 5, "worker_count_min": 3},
    # Not a valid configuration: the model falls back to the defaults (FIXED_WORKERS, 1).
    BROKEN: {"scaling_strategy": "SOMETIMES", "analyses": 2},
    IDLE: {"scaling_strategy": "DYNAMIC_TASKS", "chunks_per_worker": 2},
}
DESIRED = {FIXED: 5, QUEUE: 5, DYNAMIC: 9, WARM: 3, BROKEN: 1, IDLE: 0}


def ref(model: str | None) -> pb.ScaledObjectRef:
    # KEDA passes the whole trigger metadata, scalerAddress included.
    metadata = {"scalerAddress": "oasis-scaler:9090"}
    if model is not None:
        metadata["model"] = model
    return pb.ScaledObjectRef(name="workers", namespace="oasis", scalerMetadata=metadata)


@dataclass
class Scaler:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    channel: grpc.Channel
    log: Path

    @property
    def stub(self) -> pb_grpc.ExternalScalerStub:
        return pb_grpc.ExternalScalerStub(self.channel)

    def desired(self, model: str | None) -> int:
        """GetMetrics as KEDA calls it; exactly one value."""
        request = pb.GetMetricsRequest(
            scaledObjectRef=ref(model), metricName=metric_name(model or "none")
        )
        response = self.stub.GetMetrics(request, timeout=CALL_TIMEOUT)
        assert len(response.metricValues) == 1
        value = response.metricValues[0]
        assert value.metricValueFloat == value.metricValue
        return int(value.metricValue)

    def health(self) -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        status: int = stub.Check(request, timeout=CALL_TIMEOUT).status
        return status

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The scaler's own metrics: (sample name, sorted labels) -> value."""
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=3).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, tuple(sorted(labels.items()))))


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def poll(check: Callable[[], bool], what: str, deadline: float) -> float:
    """Poll `check` until it holds; return the seconds it took (fail after `deadline`)."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > deadline:
            pytest.fail(f"{what}: not within {deadline} s")
        time.sleep(0.02)  # polling a condition with a deadline
    return time.monotonic() - began


def answers(scaler: Scaler, model: str, value: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return scaler.desired(model) == value
        except grpc.RpcError:
            return False

    return check


@pytest.fixture
def start_scaler(tmp_path: Path) -> Iterator[Callable[..., Scaler]]:
    """Start `oasis-autoscaler scaler` with the given flags; every one is stopped at the end."""
    with ExitStack() as stack:

        def start(
            *flags: str, credentials: grpc.ChannelCredentials | None = None, ready: bool = True
        ) -> Scaler:
            port, metrics_port = free_port(), free_port()
            log = tmp_path / f"scaler-{port}.log"
            command = scaler_argv(port, metrics_port, *flags)
            output = stack.enter_context(log.open("wb"))
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
            stack.callback(stop_process, process)
            target = f"127.0.0.1:{port}"
            channel = (
                grpc.secure_channel(target, credentials)
                if credentials
                else grpc.insecure_channel(target)
            )
            stack.callback(channel.close)
            scaler = Scaler(process, port, metrics_port, channel, log)
            wait_until(
                lambda: requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=1).ok,
                "the scaler",
                process,
            )
            if ready:
                # SERVING once the first good read of the source is in.
                wait_until(
                    lambda: scaler.health() == health_pb2.HealthCheckResponse.SERVING,
                    "the scaler's first good read",
                    process,
                    deadline=10,
                )
            return scaler

        yield start


@pytest.fixture
def published() -> Iterator[Publisher]:
    with publisher(MODELS) as served:
        yield served


@pytest.fixture
def scaler(start_scaler: Callable[..., Scaler], published: Publisher) -> Scaler:
    return start_scaler("--scrape-target", published.url, "--max-age-seconds", "2")


def test_every_strategy_answers_its_desired_workers(scaler: Scaler) -> None:
    for model, desired in DESIRED.items():
        spec = scaler.stub.GetMetricSpec(ref(model), timeout=CALL_TIMEOUT)
        assert [(s.metricName, s.targetSizeFloat, s.targetSize) for s in spec.metricSpecs] == [
            (metric_name(model), 1.0, 1)
        ]
        assert scaler.desired(model) == desired, model
        assert scaler.stub.IsActive(ref(model), timeout=CALL_TIMEOUT).result is (desired > 0)


def test_the_scalers_own_metrics(scaler: Scaler) -> None:
    scaler.desired(DYNAMIC)
    scaler.stub.IsActive(ref(DYNAMIC), timeout=CALL_TIMEOUT)
    metrics = scaler.metrics()
    for model, desired in DESIRED.items():
        assert metrics[("oasis_scaler_desired_workers", (("model", model),))] == desired
    assert metrics[("oasis_scaler_refreshes_total", ())] >= 1
    assert metrics[("oasis_scaler_refresh_errors_total", ())] == 0
    assert metrics[("oasis_scaler_invalid_values_total", (("model", BROKEN),))] >= 1
    assert metrics[("oasis_scaler_serving", ())] == 1
    assert metrics[("oasis_scaler_source_age_seconds", ())] < 2
    for method in ("GetMetrics", "IsActive"):
        assert metrics[("oasis_scaler_rpc_duration_seconds_count", (("method", method),))] >= 1
    assert "SOMETIMES" in scaler.log.read_text(), "the bad configuration is logged"


CALLS: dict[str, Callable[[Scaler, str | None], object]] = {
    "IsActive": lambda scaler, model: scaler.stub.IsActive(ref(model), timeout=CALL_TIMEOUT),
    "GetMetricSpec": lambda scaler, model: scaler.stub.GetMetricSpec(
        ref(model), timeout=CALL_TIMEOUT
    ),
    "GetMetrics": lambda scaler, model: scaler.desired(model),
    "StreamIsActive": lambda scaler, model: next(
        scaler.stub.StreamIsActive(ref(model), timeout=CALL_TIMEOUT)
    ),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_a_missing_or_unknown_model(
    scaler: Scaler, call: Callable[[Scaler, str | None], object]
) -> None:
    assert code_of(lambda: call(scaler, None)) is grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: call(scaler, "OasisLMF-Nope-1")) is grpc.StatusCode.NOT_FOUND


def test_a_change_in_the_metrics_shows_within_a_second(
    scaler: Scaler, published: Publisher
) -> None:
    published.publish({**MODELS, DYNAMIC: {**MODELS[DYNAMIC], "pending": 12}})
    poll(answers(scaler, DYNAMIC, 3), "12 pending, 5 per worker -> 3", deadline=1.0)
    published.publish({**MODELS, QUEUE: {**MODELS[QUEUE], "worker_count_max": 8}})
    poll(answers(scaler, QUEUE, 8), "a new worker_count_max", deadline=1.0)
    published.publish({FIXED: MODELS[FIXED]})
    poll(
        lambda: code_of(lambda: scaler.desired(QUEUE)) is grpc.StatusCode.NOT_FOUND,
        "a model no longer published is unknown",
        deadline=1.0,
    )


class StreamReader:
    """Reads a StreamIsActive call on a thread, so the test can wait with a deadline."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.messages: queue.Queue[bool | grpc.RpcError] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.messages.put(message.result)
        except grpc.RpcError as error:
            self.messages.put(error)

    def next(self, timeout: float) -> bool | grpc.RpcError:
        return self.messages.get(timeout=timeout)


@contextmanager
def stream(scaler: Scaler, model: str) -> Iterator[StreamReader]:
    reader = StreamReader(scaler.stub.StreamIsActive(ref(model)))
    try:
        poll(
            lambda: (scaler.metric("oasis_scaler_open_streams") or 0) >= 1,
            "the stream is open",
            deadline=5,
        )
        yield reader
    finally:
        reader.call.cancel()


def test_stream_sends_true_within_a_second_of_idle_to_work(
    scaler: Scaler, published: Publisher
) -> None:
    with stream(scaler, IDLE) as reader:
        assert reader.messages.empty(), "an idle model is not announced"
        began = time.monotonic()
        published.publish({**MODELS, IDLE: {**MODELS[IDLE], "analyses": 1}})
        assert reader.next(timeout=1.0) is True
        assert time.monotonic() - began < 1.0


def test_source_down_last_state_then_unavailable_then_recovery(
    scaler: Scaler, published: Publisher
) -> None:
    max_age = 2.0
    with stream(scaler, IDLE) as reader:
        # The source may answer a last scrape while it shuts down (up to half a second).
        going_down = time.monotonic()
        published.down()
        down = time.monotonic()
        # Every call is answered within KEDA's budget, from the last good state ...
        while True:
            began = time.monotonic()
            try:
                assert scaler.desired(DYNAMIC) == 9
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.UNAVAILABLE
                message = error.details()
                break
            finally:
                assert time.monotonic() - began < CALL_TIMEOUT
            assert time.monotonic() - down < max_age + 2, "still answering past the max age"
            time.sleep(0.05)  # pacing the calls, as KEDA's polling does
        # ... until the state is older than the max age (the last good read came at most one
        # interval, 0.5 s, before the source began to go down).
        assert time.monotonic() - going_down > max_age - 0.6
        assert "the metrics source has failed since" in message
        assert "more than the 2 s allowed" in message
        assert "127.0.0.1" in message, "the message names the failing target"
        for call in (
            lambda: scaler.stub.IsActive(ref(DYNAMIC), timeout=CALL_TIMEOUT),
            lambda: scaler.stub.GetMetricSpec(ref(DYNAMIC), timeout=CALL_TIMEOUT),
            lambda: next(scaler.stub.StreamIsActive(ref(DYNAMIC), timeout=CALL_TIMEOUT)),
        ):
            assert code_of(call) is grpc.StatusCode.UNAVAILABLE
        # Health follows at the refresh loop's next turn (every 0.5 s).
        poll(
            lambda: scaler.health() == health_pb2.HealthCheckResponse.NOT_SERVING,
            "health reports NOT_SERVING",
            deadline=1,
        )
        assert scaler.metric("oasis_scaler_serving") == 0
        assert (scaler.metric("oasis_scaler_refresh_errors_total") or 0) >= 1
        assert reader.messages.empty(), "an open stream waits through the outage"

        # The source comes back (same address): the scaler recovers by itself.
        published.publish({**MODELS, IDLE: {**MODELS[IDLE], "pending": 1}})
        published.up()
        poll(answers(scaler, IDLE, 1), "answers again after recovery", deadline=3)
        poll(
            lambda: scaler.health() == health_pb2.HealthCheckResponse.SERVING,
            "health reports SERVING again",
            deadline=1,
        )
        assert reader.next(timeout=1.0) is True, "the open stream wakes the model"


def test_unavailable_until_the_first_good_read(start_scaler: Callable[..., Scaler]) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/metrics"
    scaler = start_scaler("--scrape-target", nowhere, ready=False)
    poll(
        lambda: "connection" in scaler.log.read_text().lower(),
        "the failing source is logged",
        deadline=5,
    )
    with pytest.raises(grpc.RpcError) as caught:
        scaler.desired(FIXED)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "no good state since it started" in caught.value.details()
    assert scaler.health() == health_pb2.HealthCheckResponse.NOT_SERVING


def test_replicas_of_the_api_count_once_and_one_is_enough(
    start_scaler: Callable[..., Scaler], published: Publisher
) -> None:
    with publisher(MODELS) as replica:
        scaler = start_scaler(
            "--scrape-target",
            published.url,
            "--scrape-target",
            replica.url,
            "--max-age-seconds",
            "1",
        )
        assert scaler.desired(DYNAMIC) == 9, "the same numbers from two replicas are not summed"
        replica.down()
        began = time.monotonic()
        poll(
            lambda: (
                (scaler.metric("oasis_scaler_scrape_target_errors_total", target=replica.url) or 0)
                >= 3
            ),
            "the down replica is counted",
            deadline=5,
        )
        assert time.monotonic() - began > 1, "past the max age"
        assert scaler.desired(DYNAMIC) == 9
        assert scaler.health() == health_pb2.HealthCheckResponse.SERVING


def test_sigterm_stops_promptly_with_a_stream_open(scaler: Scaler) -> None:
    with stream(scaler, IDLE) as reader:
        began = time.monotonic()
        stop_process(scaler.process)
        assert scaler.process.returncode == 0
        assert time.monotonic() - began < 5
        ended = reader.next(timeout=5)
        assert isinstance(ended, grpc.RpcError)
    assert "stopping the scaler" in scaler.log.read_text()


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([binary("openssl"), *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=oasis-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            cwd=folder)  # fmt: skip
    for name, usage, alt in (
        ("server", "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"),
        ("client", "clientAuth", ""),
    ):
        (folder / f"{name}.ext").write_text(f"{alt}extendedKeyUsage={usage}\n")
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN=oasis-{name}", cwd=folder)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.ext", cwd=folder)  # fmt: skip
    return folder


def tls_flags(certificates: Path, *, client_ca: bool) -> list[str]:
    flags = [
        "--tls-cert-file",
        str(certificates / "server.pem"),
        "--tls-key-file",
        str(certificates / "server.key"),
    ]
    if client_ca:
        flags += ["--tls-client-ca-file", str(certificates / "ca.pem")]
    return flags


def keda_credentials(certificates: Path, *, client_certificate: bool) -> grpc.ChannelCredentials:
    """As KEDA with enableTLS and a TriggerAuthentication's caCert (+ tlsClientCert/Key)."""
    ca = (certificates / "ca.pem").read_bytes()
    if not client_certificate:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=(certificates / "client.key").read_bytes(),
        certificate_chain=(certificates / "client.pem").read_bytes(),
    )


def test_tls_with_client_certificates_required(
    start_scaler: Callable[..., Scaler], published: Publisher, certificates: Path
) -> None:
    scaler = start_scaler(
        "--scrape-target",
        published.url,
        *tls_flags(certificates, client_ca=True),
        credentials=keda_credentials(certificates, client_certificate=True),
    )
    assert scaler.desired(DYNAMIC) == 9
    target = f"127.0.0.1:{scaler.port}"
    without = keda_credentials(certificates, client_certificate=False)
    with grpc.secure_channel(target, without) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        assert code_of(lambda: stub.IsActive(ref(DYNAMIC), timeout=CALL_TIMEOUT)) is (
            grpc.StatusCode.UNAVAILABLE
        ), "a client without a certificate is refused at the handshake"
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        assert code_of(lambda: stub.IsActive(ref(DYNAMIC), timeout=CALL_TIMEOUT)) is (
            grpc.StatusCode.UNAVAILABLE
        ), "plaintext is refused"


def test_tls_without_a_client_ca_accepts_any_client(
    start_scaler: Callable[..., Scaler], published: Publisher, certificates: Path
) -> None:
    scaler = start_scaler(
        "--scrape-target",
        published.url,
        *tls_flags(certificates, client_ca=False),
        credentials=keda_credentials(certificates, client_certificate=False),
    )
    assert scaler.desired(QUEUE) == 5


def test_promql_source_against_a_real_prometheus(
    start_scaler: Callable[..., Scaler], published: Publisher, tmp_path: Path
) -> None:
    with (
        publisher(MODELS) as replica,
        prometheus_server(tmp_path / "prometheus", [published.url, replica.url]) as prometheus_url,
    ):
        scaler = start_scaler(
            "--source", "prometheus", "--prometheus-url", prometheus_url, ready=False
        )
        # Prometheus has its first sample ~5 s after it starts.
        poll(answers(scaler, DYNAMIC, 9), "the first answer from PromQL", deadline=30)
        for model, desired in DESIRED.items():
            # Two replicas of the API, one series each: merged by max, not summed.
            assert scaler.desired(model) == desired, model
        assert (scaler.metric("oasis_scaler_invalid_values_total", model=BROKEN) or 0) >= 1
        changed = {**MODELS, DYNAMIC: {**MODELS[DYNAMIC], "pending": 12}}
        published.publish(changed)
        replica.publish(changed)
        # One Prometheus scrape (1 s) and one refresh (0.5 s) later.
        poll(answers(scaler, DYNAMIC, 3), "a change through Prometheus", deadline=10)
