"""The committed generated protobuf code matches schemas/, and says what clients expect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from google.protobuf.descriptor import FieldDescriptor

from trio_gitaly.rpc.gen.gitaly import (
    blob_pb2,
    commit_pb2,
    diff_pb2,
    errors_pb2,
    lint_pb2,
    ref_pb2,
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


def test_optimize_repository_request() -> None:
    message = repository_pb2.OptimizeRepositoryRequest
    fields = message.DESCRIPTOR.fields_by_name
    assert {name: f.number for name, f in fields.items()} == {"repository": 1, "strategy": 2}
    assert _extension(fields["repository"].GetOptions(), lint_pb2.target_repository) is True
    assert fields["strategy"].enum_type is not None
    assert fields["strategy"].enum_type.full_name == "gitaly.OptimizeRepositoryRequest.Strategy"
    assert (message.STRATEGY_UNSPECIFIED, message.STRATEGY_HEURISTICAL, message.STRATEGY_EAGER) == (
        0,
        1,
        2,
    )
    prune = repository_pb2.PruneUnreachableObjectsRequest.DESCRIPTOR.fields_by_name
    assert prune["repository"].number == 1


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
            "HasLocalBranches": (
                "gitaly.HasLocalBranchesRequest",
                "gitaly.HasLocalBranchesResponse",
                False,
            ),
            "RepositorySize": (
                "gitaly.RepositorySizeRequest",
                "gitaly.RepositorySizeResponse",
                False,
            ),
            "RepositoryInfo": (
                "gitaly.RepositoryInfoRequest",
                "gitaly.RepositoryInfoResponse",
                False,
            ),
            "FindMergeBase": (
                "gitaly.FindMergeBaseRequest",
                "gitaly.FindMergeBaseResponse",
                False,
            ),
            "CalculateChecksum": (
                "gitaly.CalculateChecksumRequest",
                "gitaly.CalculateChecksumResponse",
                False,
            ),
            "SearchFilesByName": (
                "gitaly.SearchFilesByNameRequest",
                "gitaly.SearchFilesByNameResponse",
                True,
            ),
            "OptimizeRepository": (
                "gitaly.OptimizeRepositoryRequest",
                "gitaly.OptimizeRepositoryResponse",
                False,
            ),
            "PruneUnreachableObjects": (
                "gitaly.PruneUnreachableObjectsRequest",
                "gitaly.PruneUnreachableObjectsResponse",
                False,
            ),
        },
    ),
    "gitaly.BlobService": (
        blob_pb2.DESCRIPTOR,
        {
            "GetBlob": (
                "gitaly.GetBlobRequest",
                "gitaly.GetBlobResponse",
                True,
            ),
            "GetBlobs": (
                "gitaly.GetBlobsRequest",
                "gitaly.GetBlobsResponse",
                True,
            ),
            "GetLFSPointers": (
                "gitaly.GetLFSPointersRequest",
                "gitaly.GetLFSPointersResponse",
                True,
            ),
            "ListAllBlobs": (
                "gitaly.ListAllBlobsRequest",
                "gitaly.ListAllBlobsResponse",
                True,
            ),
            "ListAllLFSPointers": (
                "gitaly.ListAllLFSPointersRequest",
                "gitaly.ListAllLFSPointersResponse",
                True,
            ),
            "ListBlobs": (
                "gitaly.ListBlobsRequest",
                "gitaly.ListBlobsResponse",
                True,
            ),
            "ListLFSPointers": (
                "gitaly.ListLFSPointersRequest",
                "gitaly.ListLFSPointersResponse",
                True,
            ),
        },
    ),
    "gitaly.CommitService": (
        commit_pb2.DESCRIPTOR,
        {
            "CheckObjectsExist": (
                "gitaly.CheckObjectsExistRequest",
                "gitaly.CheckObjectsExistResponse",
                True,
            ),
            "CommitIsAncestor": (
                "gitaly.CommitIsAncestorRequest",
                "gitaly.CommitIsAncestorResponse",
                False,
            ),
            "CommitStats": (
                "gitaly.CommitStatsRequest",
                "gitaly.CommitStatsResponse",
                False,
            ),
            "CountCommits": (
                "gitaly.CountCommitsRequest",
                "gitaly.CountCommitsResponse",
                False,
            ),
            "CountDivergingCommits": (
                "gitaly.CountDivergingCommitsRequest",
                "gitaly.CountDivergingCommitsResponse",
                False,
            ),
            "FindCommit": (
                "gitaly.FindCommitRequest",
                "gitaly.FindCommitResponse",
                False,
            ),
            "FindCommits": (
                "gitaly.FindCommitsRequest",
                "gitaly.FindCommitsResponse",
                True,
            ),
            "GetCommitMessages": (
                "gitaly.GetCommitMessagesRequest",
                "gitaly.GetCommitMessagesResponse",
                True,
            ),
            "GetTreeEntries": (
                "gitaly.GetTreeEntriesRequest",
                "gitaly.GetTreeEntriesResponse",
                True,
            ),
            "LastCommitForPath": (
                "gitaly.LastCommitForPathRequest",
                "gitaly.LastCommitForPathResponse",
                False,
            ),
            "ListAllCommits": (
                "gitaly.ListAllCommitsRequest",
                "gitaly.ListAllCommitsResponse",
                True,
            ),
            "ListCommits": (
                "gitaly.ListCommitsRequest",
                "gitaly.ListCommitsResponse",
                True,
            ),
            "ListCommitsByOid": (
                "gitaly.ListCommitsByOidRequest",
                "gitaly.ListCommitsByOidResponse",
                True,
            ),
            "ListCommitsByRefName": (
                "gitaly.ListCommitsByRefNameRequest",
                "gitaly.ListCommitsByRefNameResponse",
                True,
            ),
            "ListFiles": (
                "gitaly.ListFilesRequest",
                "gitaly.ListFilesResponse",
                True,
            ),
            "ListLastCommitsForTree": (
                "gitaly.ListLastCommitsForTreeRequest",
                "gitaly.ListLastCommitsForTreeResponse",
                True,
            ),
            "RawBlame": (
                "gitaly.RawBlameRequest",
                "gitaly.RawBlameResponse",
                True,
            ),
            "TreeEntry": (
                "gitaly.TreeEntryRequest",
                "gitaly.TreeEntryResponse",
                True,
            ),
        },
    ),
    "gitaly.DiffService": (
        diff_pb2.DESCRIPTOR,
        {
            "CommitDelta": (
                "gitaly.CommitDeltaRequest",
                "gitaly.CommitDeltaResponse",
                True,
            ),
            "CommitDiff": (
                "gitaly.CommitDiffRequest",
                "gitaly.CommitDiffResponse",
                True,
            ),
            "DiffStats": (
                "gitaly.DiffStatsRequest",
                "gitaly.DiffStatsResponse",
                True,
            ),
            "FindChangedPaths": (
                "gitaly.FindChangedPathsRequest",
                "gitaly.FindChangedPathsResponse",
                True,
            ),
            "RawDiff": (
                "gitaly.RawDiffRequest",
                "gitaly.RawDiffResponse",
                True,
            ),
            "RawPatch": (
                "gitaly.RawPatchRequest",
                "gitaly.RawPatchResponse",
                True,
            ),
        },
    ),
    "gitaly.RefService": (
        ref_pb2.DESCRIPTOR,
        {
            "FindAllBranches": (
                "gitaly.FindAllBranchesRequest",
                "gitaly.FindAllBranchesResponse",
                True,
            ),
            "FindAllTags": (
                "gitaly.FindAllTagsRequest",
                "gitaly.FindAllTagsResponse",
                True,
            ),
            "FindBranch": (
                "gitaly.FindBranchRequest",
                "gitaly.FindBranchResponse",
                False,
            ),
            "FindDefaultBranchName": (
                "gitaly.FindDefaultBranchNameRequest",
                "gitaly.FindDefaultBranchNameResponse",
                False,
            ),
            "FindLocalBranches": (
                "gitaly.FindLocalBranchesRequest",
                "gitaly.FindLocalBranchesResponse",
                True,
            ),
            "FindRefsByOID": (
                "gitaly.FindRefsByOIDRequest",
                "gitaly.FindRefsByOIDResponse",
                False,
            ),
            "FindTag": (
                "gitaly.FindTagRequest",
                "gitaly.FindTagResponse",
                False,
            ),
            "GetTagMessages": (
                "gitaly.GetTagMessagesRequest",
                "gitaly.GetTagMessagesResponse",
                True,
            ),
            "ListBranchNamesContainingCommit": (
                "gitaly.ListBranchNamesContainingCommitRequest",
                "gitaly.ListBranchNamesContainingCommitResponse",
                True,
            ),
            "ListRefs": (
                "gitaly.ListRefsRequest",
                "gitaly.ListRefsResponse",
                True,
            ),
            "ListTagNamesContainingCommit": (
                "gitaly.ListTagNamesContainingCommitRequest",
                "gitaly.ListTagNamesContainingCommitResponse",
                True,
            ),
            "RefExists": (
                "gitaly.RefExistsRequest",
                "gitaly.RefExistsResponse",
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

# Methods whose requests are a stream; every other method takes one request.
CLIENT_STREAMING = {"gitaly.CommitService": {"CheckObjectsExist"}}


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
    client_streaming = {m.name for m in service.methods if m.client_streaming}
    assert client_streaming == CLIENT_STREAMING.get(full_name, set())


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
        "HasLocalBranches": op.ACCESSOR,
        "RepositorySize": op.ACCESSOR,
        "RepositoryInfo": op.ACCESSOR,
        "FindMergeBase": op.ACCESSOR,
        "CalculateChecksum": op.ACCESSOR,
        "SearchFilesByName": op.ACCESSOR,
        "OptimizeRepository": op.MAINTENANCE,
        "PruneUnreachableObjects": op.MAINTENANCE,
    }
    assert lint_pb2.op_type.number == 82303
    assert lint_pb2.intercepted.number == 82302
    assert lint_pb2.target_repository.number == 91235


@pytest.mark.parametrize(
    ("file_descriptor", "service_name"),
    [
        (ref_pb2.DESCRIPTOR, "RefService"),
        (commit_pb2.DESCRIPTOR, "CommitService"),
        (blob_pb2.DESCRIPTOR, "BlobService"),
        (diff_pb2.DESCRIPTOR, "DiffService"),
    ],
)
def test_read_services_are_accessors(file_descriptor: Any, service_name: str) -> None:
    service = file_descriptor.services_by_name[service_name]
    for method in service.methods:
        op = _extension(method.GetOptions(), lint_pb2.op_type).op
        assert op == lint_pb2.OperationMsg.ACCESSOR, method.name
        repository = method.input_type.fields_by_name["repository"]
        assert repository.number == 1
        assert _extension(repository.GetOptions(), lint_pb2.target_repository) is True


def _numbers(message: Any) -> dict[str, int]:
    return {name: f.number for name, f in message.DESCRIPTOR.fields_by_name.items()}


def test_git_commit_message() -> None:
    assert _numbers(shared_pb2.GitCommit) == {
        "id": 1,
        "subject": 2,
        "body": 3,
        "author": 4,
        "committer": 5,
        "parent_ids": 6,
        "body_size": 7,
        "signature_type": 8,
        "tree_id": 9,
        "trailers": 10,
        "short_stats": 11,
        "referenced_by": 12,
        "encoding": 13,
    }
    body_size = shared_pb2.GitCommit.DESCRIPTOR.fields_by_name["body_size"]
    assert body_size.type == FieldDescriptor.TYPE_INT64
    date = shared_pb2.CommitAuthor.DESCRIPTOR.fields_by_name["date"]
    assert date.message_type is not None
    assert date.message_type.full_name == "google.protobuf.Timestamp"
    assert shared_pb2.SSH == 3
    assert shared_pb2.DESCENDING == 1
    assert _numbers(shared_pb2.Tag)["signature_type"] == 7


def test_tree_entry_messages() -> None:
    assert _numbers(commit_pb2.TreeEntry) == {
        "oid": 1,
        "path": 3,
        "type": 4,
        "mode": 5,
        "commit_oid": 6,
        "flat_path": 7,
    }
    assert commit_pb2.TreeEntry.COMMIT == 3
    # TreeEntryResponse numbers its object types differently from gitaly.ObjectType.
    assert commit_pb2.TreeEntryResponse.BLOB == 1
    assert shared_pb2.BLOB == 2
    oneof = commit_pb2.GetTreeEntriesError.DESCRIPTOR.oneofs_by_name["error"]
    assert [(f.name, f.number) for f in oneof.fields] == [("resolve_tree", 1), ("path", 2)]
    types = [f.message_type.full_name for f in oneof.fields if f.message_type is not None]
    assert types == ["gitaly.ResolveRevisionError", "gitaly.PathError"]


def test_paginated_requests() -> None:
    paginated: list[tuple[Any, int]] = [
        (ref_pb2.FindLocalBranchesRequest, 3),
        (ref_pb2.FindAllTagsRequest, 3),
        (commit_pb2.ListCommitsRequest, 3),
        (commit_pb2.ListAllCommitsRequest, 2),
        (commit_pb2.GetTreeEntriesRequest, 6),
    ]
    for message, number in paginated:
        field = message.DESCRIPTOR.fields_by_name["pagination_params"]
        assert field.number == number, message.DESCRIPTOR.full_name
        assert field.message_type is not None
        assert field.message_type.full_name == "gitaly.PaginationParameter"
    assert _numbers(ref_pb2.ListRefsRequest) == {
        "repository": 1,
        "patterns": 2,
        "head": 3,
        "sort_by": 4,
        "pointing_at_oids": 5,
        "peel_tags": 6,
    }
    assert ref_pb2.ListRefsRequest.SortBy.COMMITTERDATE == 3
    assert ref_pb2.FindAllTagsRequest.SortBy.VERSION_REFNAME == 2


def test_commit_diff_request() -> None:
    fields = diff_pb2.CommitDiffRequest.DESCRIPTOR.fields_by_name
    per_extension = fields["max_patch_bytes_for_file_extension"]
    assert per_extension.number == 16
    assert per_extension.message_type is not None
    assert per_extension.message_type.GetOptions().map_entry
    assert fields["max_patch_bytes"].number == 14
    assert fields["whitespace_changes"].number == 17
    assert diff_pb2.CommitDiffRequest.WHITESPACE_CHANGES_IGNORE_ALL == 2
    assert diff_pb2.ChangedPaths.RENAMED == 5
    oneof = diff_pb2.FindChangedPathsRequest.Request.DESCRIPTOR.oneofs_by_name["type"]
    assert [(f.name, f.number) for f in oneof.fields] == [
        ("tree_request", 1),
        ("commit_request", 2),
    ]


def test_repository_info_response() -> None:
    response = repository_pb2.RepositoryInfoResponse
    assert _numbers(response) == {"size": 1, "references": 2, "objects": 3}
    assert _numbers(response.ReferencesInfo) == {
        "loose_count": 1,
        "packed_size": 2,
        "reference_backend": 3,
    }
    assert response.ReferencesInfo.REFERENCE_BACKEND_REFTABLE == 2
    assert _numbers(response.ObjectsInfo) == {
        "size": 1,
        "recent_size": 2,
        "stale_size": 3,
        "keep_size": 4,
    }


def test_lfs_pointer_and_tag_errors() -> None:
    assert _numbers(blob_pb2.LFSPointer) == {
        "size": 1,
        "data": 2,
        "oid": 3,
        "file_size": 4,
        "file_oid": 5,
    }
    tag_not_found = ref_pb2.FindTagError.DESCRIPTOR.fields_by_name["tag_not_found"]
    assert tag_not_found.message_type is not None
    assert tag_not_found.message_type.full_name == "gitaly.ReferenceNotFoundError"
    out_of_range = commit_pb2.RawBlameError.DESCRIPTOR.fields_by_name["out_of_range"]
    assert out_of_range.message_type is not None
    assert out_of_range.message_type.full_name == "gitaly.RawBlameError.OutOfRangeError"
