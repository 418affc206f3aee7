"""The committed generated protobuf code matches schemas/, and says what clients expect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from google.protobuf.descriptor import FieldDescriptor

from trio_gitaly.rpc.gen.gitaly import (
    errors_pb2,
    lint_pb2,
    repository_pb2,
    server_pb2,
    shared_pb2,
)
from trio_gitaly.rpc.gen.grpc.health.v1 import health_pb2

if TYPE_CHECKING:
    from google.protobuf.message import Message

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "trio_gitaly" / "rpc" / "gen"
SCRIPT = ROOT / "scripts" / "gen_protos.py"
REGENERATE = ".venv/bin/python scripts/gen_protos.py"


def _tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def _extension(options: Message, extension: FieldDescriptor) -> Any:
    # The generated stubs type extensions as plain FieldDescriptors, which
    # types-protobuf does not accept as an Extensions key.
    return options.Extensions[extension]  # type: ignore[index]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    fresh, committed = _tree(out), _tree(GEN)
    hint = f"regenerate with `{REGENERATE}`"
    missing = sorted(fresh.keys() - committed.keys())
    extra = sorted(committed.keys() - fresh.keys())
    assert not missing, f"generated files missing from {GEN}: {missing}; {hint}"
    assert not extra, f"files in {GEN} that schemas/ no longer produce: {extra}; {hint}"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated files in {GEN}: {stale}; {hint}"


def test_repository_message() -> None:
    fields = shared_pb2.Repository.DESCRIPTOR.fields_by_name
    assert {name: f.number for name, f in fields.items()} == {
        "storage_name": 2,
        "relative_path": 3,
        "git_object_directory": 4,
        "git_alternate_object_directories": 5,
        "gl_repository": 6,
        "gl_project_path": 8,
    }
    assert fields["git_alternate_object_directories"].is_repeated
    assert shared_pb2.Repository.DESCRIPTOR.full_name == "gitaly.Repository"
    assert shared_pb2.OBJECT_FORMAT_SHA256 == 2


def test_create_repository_request() -> None:
    fields = repository_pb2.CreateRepositoryRequest.DESCRIPTOR.fields_by_name
    repository = fields["repository"]
    assert repository.number == 1
    assert repository.message_type is not None
    assert repository.message_type.full_name == "gitaly.Repository"
    assert _extension(repository.GetOptions(), lint_pb2.target_repository) is True
    assert fields["default_branch"].number == 2
    assert fields["default_branch"].type == FieldDescriptor.TYPE_BYTES
    assert fields["object_format"].number == 3
    assert fields["object_format"].enum_type is not None
    assert fields["object_format"].enum_type.full_name == "gitaly.ObjectFormat"


def test_limit_error_retry_after_is_a_duration() -> None:
    field = errors_pb2.LimitError.DESCRIPTOR.fields_by_name["retry_after"]
    assert field.number == 2
    assert field.message_type is not None
    assert field.message_type.full_name == "google.protobuf.Duration"


def test_readiness_check_oneof() -> None:
    oneof = server_pb2.ReadinessCheckResponse.DESCRIPTOR.oneofs_by_name["Result"]
    assert [(f.name, f.number) for f in oneof.fields] == [
        ("ok_response", 1),
        ("failure_response", 2),
    ]


SERVICES = {
    "gitaly.ServerService": (
        server_pb2.DESCRIPTOR,
        {
            "ServerInfo": ("gitaly.ServerInfoRequest", "gitaly.ServerInfoResponse", False),
            "DiskStatistics": (
                "gitaly.DiskStatisticsRequest",
                "gitaly.DiskStatisticsResponse",
                False,
            ),
            "ReadinessCheck": (
                "gitaly.ReadinessCheckRequest",
                "gitaly.ReadinessCheckResponse",
                False,
            ),
            "ServerSignature": (
                "gitaly.ServerSignatureRequest",
                "gitaly.ServerSignatureResponse",
                False,
            ),
        },
    ),
    "gitaly.RepositoryService": (
        repository_pb2.DESCRIPTOR,
        {
            "RepositoryExists": (
                "gitaly.RepositoryExistsRequest",
                "gitaly.RepositoryExistsResponse",
                False,
            ),
            "ObjectFormat": ("gitaly.ObjectFormatRequest", "gitaly.ObjectFormatResponse", False),
            "CreateRepository": (
                "gitaly.CreateRepositoryRequest",
                "gitaly.CreateRepositoryResponse",
                False,
            ),
            "RemoveRepository": (
                "gitaly.RemoveRepositoryRequest",
                "gitaly.RemoveRepositoryResponse",
                False,
            ),
        },
    ),
    "grpc.health.v1.Health": (
        health_pb2.DESCRIPTOR,
        {
            "Check": (
                "grpc.health.v1.HealthCheckRequest",
                "grpc.health.v1.HealthCheckResponse",
                False,
            ),
            "Watch": (
                "grpc.health.v1.HealthCheckRequest",
                "grpc.health.v1.HealthCheckResponse",
                True,
            ),
        },
    ),
}


@pytest.mark.parametrize("full_name", sorted(SERVICES))
def test_service_methods(full_name: str) -> None:
    file_descriptor, expected = SERVICES[full_name]
    service = file_descriptor.services_by_name[full_name.rsplit(".", 1)[1]]
    assert service.full_name == full_name
    actual = {
        m.name: (m.input_type.full_name, m.output_type.full_name, m.server_streaming)
        for m in service.methods
    }
    assert actual == expected
    assert not any(m.client_streaming for m in service.methods)


def test_operation_annotations() -> None:
    server = server_pb2.DESCRIPTOR.services_by_name["ServerService"]
    assert _extension(server.GetOptions(), lint_pb2.intercepted) is True

    op = lint_pb2.OperationMsg
    methods = repository_pb2.DESCRIPTOR.services_by_name["RepositoryService"].methods_by_name
    ops = {name: _extension(m.GetOptions(), lint_pb2.op_type).op for name, m in methods.items()}
    assert ops == {
        "RepositoryExists": op.ACCESSOR,
        "ObjectFormat": op.ACCESSOR,
        "CreateRepository": op.MUTATOR,
        "RemoveRepository": op.MUTATOR,
    }
    assert lint_pb2.op_type.number == 82303
    assert lint_pb2.intercepted.number == 82302
    assert lint_pb2.target_repository.number == 91235
