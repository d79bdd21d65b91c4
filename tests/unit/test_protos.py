"""The KEDA protocol: wire-identical to KEDA v2.20.2, and generated code that matches the .proto."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from protos import externalscaler_pb2 as pb
from protos.generate import PROTOS_DIR, generate

F = FieldDescriptor
# KEDA v2.20.2 externalscaler.proto: message -> [(field, number, type, label, message type)].
MESSAGES = {
    "ScaledObjectRef": [
        ("name", 1, F.TYPE_STRING, None),
        ("namespace", 2, F.TYPE_STRING, None),
        ("scalerMetadata", 3, F.TYPE_MESSAGE, "ScaledObjectRef.ScalerMetadataEntry"),
    ],
    "IsActiveResponse": [("result", 1, F.TYPE_BOOL, None)],
    "GetMetricSpecResponse": [("metricSpecs", 1, F.TYPE_MESSAGE, "MetricSpec")],
    "MetricSpec": [
        ("metricName", 1, F.TYPE_STRING, None),
        ("targetSize", 2, F.TYPE_INT64, None),
        ("targetSizeFloat", 3, F.TYPE_DOUBLE, None),
    ],
    "GetMetricsRequest": [
        ("scaledObjectRef", 1, F.TYPE_MESSAGE, "ScaledObjectRef"),
        ("metricName", 2, F.TYPE_STRING, None),
    ],
    "GetMetricsResponse": [("metricValues", 1, F.TYPE_MESSAGE, "MetricValue")],
    "MetricValue": [
        ("metricName", 1, F.TYPE_STRING, None),
        ("metricValue", 2, F.TYPE_INT64, None),
        ("metricValueFloat", 3, F.TYPE_DOUBLE, None),
    ],
}
REPEATED = {"metricSpecs", "metricValues", "scalerMetadata"}
# rpc -> (input, output, server streaming)
METHODS = {
    "IsActive": ("ScaledObjectRef", "IsActiveResponse", False),
    "StreamIsActive": ("ScaledObjectRef", "IsActiveResponse", True),
    "GetMetricSpec": ("ScaledObjectRef", "GetMetricSpecResponse", False),
    "GetMetrics": ("GetMetricsRequest", "GetMetricsResponse", False),
}


def test_package_and_messages_match_keda() -> None:
    assert pb.DESCRIPTOR.package == "externalscaler"
    assert set(pb.DESCRIPTOR.message_types_by_name) == set(MESSAGES)
    for message, fields in MESSAGES.items():
        descriptor = pb.DESCRIPTOR.message_types_by_name[message]
        actual = [
            (
                f.name,
                f.number,
                f.type,
                f.message_type.full_name.removeprefix("externalscaler.")
                if f.message_type
                else None,
            )
            for f in descriptor.fields
        ]
        assert actual == fields, message
        for field in descriptor.fields:
            assert field.is_repeated == (field.name in REPEATED), field.full_name


def test_metadata_is_a_string_map() -> None:
    entry = pb.ScaledObjectRef.DESCRIPTOR.fields_by_name["scalerMetadata"].message_type
    assert entry.GetOptions().map_entry
    assert [(f.name, f.type) for f in entry.fields] == [
        ("key", F.TYPE_STRING),
        ("value", F.TYPE_STRING),
    ]


def test_service_matches_keda() -> None:
    service = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
    assert service.full_name == "externalscaler.ExternalScaler"
    actual = {
        m.name: (m.input_type.name, m.output_type.name, m.server_streaming) for m in service.methods
    }
    assert actual == METHODS
    assert not any(m.client_streaming for m in service.methods)


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    generated = generate(tmp_path)
    assert generated, "no .proto found"
    for fresh in generated:
        committed = PROTOS_DIR / fresh.name
        assert committed.exists(), f"{committed.name} is missing: run python -m protos.generate"
        if committed.read_bytes() != fresh.read_bytes():
            pytest.fail(
                f"{committed.name} has drifted from the .proto: "
                "run python -m protos.generate and commit the result"
            )
