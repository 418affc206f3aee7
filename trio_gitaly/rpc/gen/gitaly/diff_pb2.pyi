from trio_gitaly.rpc.gen.gitaly import lint_pb2 as _lint_pb2
from trio_gitaly.rpc.gen.gitaly import shared_pb2 as _shared_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommitDiffRequest(_message.Message):
    __slots__ = ("repository", "left_commit_id", "right_commit_id", "paths", "collapse_diffs", "enforce_limits", "max_files", "max_lines", "max_bytes", "max_patch_bytes", "safe_max_files", "safe_max_lines", "safe_max_bytes", "diff_mode", "max_patch_bytes_for_file_extension", "whitespace_changes", "collect_all_paths")
    class DiffMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DEFAULT: _ClassVar[CommitDiffRequest.DiffMode]
        WORDDIFF: _ClassVar[CommitDiffRequest.DiffMode]
    DEFAULT: CommitDiffRequest.DiffMode
    WORDDIFF: CommitDiffRequest.DiffMode
    class WhitespaceChanges(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        WHITESPACE_CHANGES_UNSPECIFIED: _ClassVar[CommitDiffRequest.WhitespaceChanges]
        WHITESPACE_CHANGES_IGNORE: _ClassVar[CommitDiffRequest.WhitespaceChanges]
        WHITESPACE_CHANGES_IGNORE_ALL: _ClassVar[CommitDiffRequest.WhitespaceChanges]
    WHITESPACE_CHANGES_UNSPECIFIED: CommitDiffRequest.WhitespaceChanges
    WHITESPACE_CHANGES_IGNORE: CommitDiffRequest.WhitespaceChanges
    WHITESPACE_CHANGES_IGNORE_ALL: CommitDiffRequest.WhitespaceChanges
    class MaxPatchBytesForFileExtensionEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    LEFT_COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    RIGHT_COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    COLLAPSE_DIFFS_FIELD_NUMBER: _ClassVar[int]
    ENFORCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    MAX_FILES_FIELD_NUMBER: _ClassVar[int]
    MAX_LINES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PATCH_BYTES_FIELD_NUMBER: _ClassVar[int]
    SAFE_MAX_FILES_FIELD_NUMBER: _ClassVar[int]
    SAFE_MAX_LINES_FIELD_NUMBER: _ClassVar[int]
    SAFE_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    DIFF_MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_PATCH_BYTES_FOR_FILE_EXTENSION_FIELD_NUMBER: _ClassVar[int]
    WHITESPACE_CHANGES_FIELD_NUMBER: _ClassVar[int]
    COLLECT_ALL_PATHS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    left_commit_id: str
    right_commit_id: str
    paths: _containers.RepeatedScalarFieldContainer[bytes]
    collapse_diffs: bool
    enforce_limits: bool
    max_files: int
    max_lines: int
    max_bytes: int
    max_patch_bytes: int
    safe_max_files: int
    safe_max_lines: int
    safe_max_bytes: int
    diff_mode: CommitDiffRequest.DiffMode
    max_patch_bytes_for_file_extension: _containers.ScalarMap[str, int]
    whitespace_changes: CommitDiffRequest.WhitespaceChanges
    collect_all_paths: bool
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., left_commit_id: _Optional[str] = ..., right_commit_id: _Optional[str] = ..., paths: _Optional[_Iterable[bytes]] = ..., collapse_diffs: _Optional[bool] = ..., enforce_limits: _Optional[bool] = ..., max_files: _Optional[int] = ..., max_lines: _Optional[int] = ..., max_bytes: _Optional[int] = ..., max_patch_bytes: _Optional[int] = ..., safe_max_files: _Optional[int] = ..., safe_max_lines: _Optional[int] = ..., safe_max_bytes: _Optional[int] = ..., diff_mode: _Optional[_Union[CommitDiffRequest.DiffMode, str]] = ..., max_patch_bytes_for_file_extension: _Optional[_Mapping[str, int]] = ..., whitespace_changes: _Optional[_Union[CommitDiffRequest.WhitespaceChanges, str]] = ..., collect_all_paths: _Optional[bool] = ...) -> None: ...

class CommitDiffResponse(_message.Message):
    __slots__ = ("from_path", "to_path", "from_id", "to_id", "old_mode", "new_mode", "binary", "raw_patch_data", "end_of_patch", "overflow_marker", "collapsed", "too_large")
    FROM_PATH_FIELD_NUMBER: _ClassVar[int]
    TO_PATH_FIELD_NUMBER: _ClassVar[int]
    FROM_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_MODE_FIELD_NUMBER: _ClassVar[int]
    NEW_MODE_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    RAW_PATCH_DATA_FIELD_NUMBER: _ClassVar[int]
    END_OF_PATCH_FIELD_NUMBER: _ClassVar[int]
    OVERFLOW_MARKER_FIELD_NUMBER: _ClassVar[int]
    COLLAPSED_FIELD_NUMBER: _ClassVar[int]
    TOO_LARGE_FIELD_NUMBER: _ClassVar[int]
    from_path: bytes
    to_path: bytes
    from_id: str
    to_id: str
    old_mode: int
    new_mode: int
    binary: bool
    raw_patch_data: bytes
    end_of_patch: bool
    overflow_marker: bool
    collapsed: bool
    too_large: bool
    def __init__(self, from_path: _Optional[bytes] = ..., to_path: _Optional[bytes] = ..., from_id: _Optional[str] = ..., to_id: _Optional[str] = ..., old_mode: _Optional[int] = ..., new_mode: _Optional[int] = ..., binary: _Optional[bool] = ..., raw_patch_data: _Optional[bytes] = ..., end_of_patch: _Optional[bool] = ..., overflow_marker: _Optional[bool] = ..., collapsed: _Optional[bool] = ..., too_large: _Optional[bool] = ...) -> None: ...

class CommitDeltaRequest(_message.Message):
    __slots__ = ("repository", "left_commit_id", "right_commit_id", "paths")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    LEFT_COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    RIGHT_COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    left_commit_id: str
    right_commit_id: str
    paths: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., left_commit_id: _Optional[str] = ..., right_commit_id: _Optional[str] = ..., paths: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CommitDelta(_message.Message):
    __slots__ = ("from_path", "to_path", "from_id", "to_id", "old_mode", "new_mode")
    FROM_PATH_FIELD_NUMBER: _ClassVar[int]
    TO_PATH_FIELD_NUMBER: _ClassVar[int]
    FROM_ID_FIELD_NUMBER: _ClassVar[int]
    TO_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_MODE_FIELD_NUMBER: _ClassVar[int]
    NEW_MODE_FIELD_NUMBER: _ClassVar[int]
    from_path: bytes
    to_path: bytes
    from_id: str
    to_id: str
    old_mode: int
    new_mode: int
    def __init__(self, from_path: _Optional[bytes] = ..., to_path: _Optional[bytes] = ..., from_id: _Optional[str] = ..., to_id: _Optional[str] = ..., old_mode: _Optional[int] = ..., new_mode: _Optional[int] = ...) -> None: ...

class CommitDeltaResponse(_message.Message):
    __slots__ = ("deltas",)
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    deltas: _containers.RepeatedCompositeFieldContainer[CommitDelta]
    def __init__(self, deltas: _Optional[_Iterable[_Union[CommitDelta, _Mapping]]] = ...) -> None: ...

class RawDiffRequest(_message.Message):
    __slots__ = ("repository", "left_commit_id", "right_commit_id")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    LEFT_COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    RIGHT_COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    left_commit_id: str
    right_commit_id: str
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., left_commit_id: _Optional[str] = ..., right_commit_id: _Optional[str] = ...) -> None: ...

class RawDiffResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class RawPatchRequest(_message.Message):
    __slots__ = ("repository", "left_commit_id", "right_commit_id")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    LEFT_COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    RIGHT_COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    left_commit_id: str
    right_commit_id: str
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., left_commit_id: _Optional[str] = ..., right_commit_id: _Optional[str] = ...) -> None: ...

class RawPatchResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class DiffStatsRequest(_message.Message):
    __slots__ = ("repository", "left_commit_id", "right_commit_id")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    LEFT_COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    RIGHT_COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    left_commit_id: str
    right_commit_id: str
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., left_commit_id: _Optional[str] = ..., right_commit_id: _Optional[str] = ...) -> None: ...

class DiffStats(_message.Message):
    __slots__ = ("path", "additions", "deletions", "old_path")
    PATH_FIELD_NUMBER: _ClassVar[int]
    ADDITIONS_FIELD_NUMBER: _ClassVar[int]
    DELETIONS_FIELD_NUMBER: _ClassVar[int]
    OLD_PATH_FIELD_NUMBER: _ClassVar[int]
    path: bytes
    additions: int
    deletions: int
    old_path: bytes
    def __init__(self, path: _Optional[bytes] = ..., additions: _Optional[int] = ..., deletions: _Optional[int] = ..., old_path: _Optional[bytes] = ...) -> None: ...

class DiffStatsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: _containers.RepeatedCompositeFieldContainer[DiffStats]
    def __init__(self, stats: _Optional[_Iterable[_Union[DiffStats, _Mapping]]] = ...) -> None: ...

class FindChangedPathsRequest(_message.Message):
    __slots__ = ("repository", "commits", "requests", "merge_commit_diff_mode", "find_renames")
    class MergeCommitDiffMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MERGE_COMMIT_DIFF_MODE_UNSPECIFIED: _ClassVar[FindChangedPathsRequest.MergeCommitDiffMode]
        MERGE_COMMIT_DIFF_MODE_INCLUDE_MERGES: _ClassVar[FindChangedPathsRequest.MergeCommitDiffMode]
        MERGE_COMMIT_DIFF_MODE_ALL_PARENTS: _ClassVar[FindChangedPathsRequest.MergeCommitDiffMode]
    MERGE_COMMIT_DIFF_MODE_UNSPECIFIED: FindChangedPathsRequest.MergeCommitDiffMode
    MERGE_COMMIT_DIFF_MODE_INCLUDE_MERGES: FindChangedPathsRequest.MergeCommitDiffMode
    MERGE_COMMIT_DIFF_MODE_ALL_PARENTS: FindChangedPathsRequest.MergeCommitDiffMode
    class Request(_message.Message):
        __slots__ = ("tree_request", "commit_request")
        class TreeRequest(_message.Message):
            __slots__ = ("left_tree_revision", "right_tree_revision")
            LEFT_TREE_REVISION_FIELD_NUMBER: _ClassVar[int]
            RIGHT_TREE_REVISION_FIELD_NUMBER: _ClassVar[int]
            left_tree_revision: str
            right_tree_revision: str
            def __init__(self, left_tree_revision: _Optional[str] = ..., right_tree_revision: _Optional[str] = ...) -> None: ...
        class CommitRequest(_message.Message):
            __slots__ = ("commit_revision", "parent_commit_revisions")
            COMMIT_REVISION_FIELD_NUMBER: _ClassVar[int]
            PARENT_COMMIT_REVISIONS_FIELD_NUMBER: _ClassVar[int]
            commit_revision: str
            parent_commit_revisions: _containers.RepeatedScalarFieldContainer[str]
            def __init__(self, commit_revision: _Optional[str] = ..., parent_commit_revisions: _Optional[_Iterable[str]] = ...) -> None: ...
        TREE_REQUEST_FIELD_NUMBER: _ClassVar[int]
        COMMIT_REQUEST_FIELD_NUMBER: _ClassVar[int]
        tree_request: FindChangedPathsRequest.Request.TreeRequest
        commit_request: FindChangedPathsRequest.Request.CommitRequest
        def __init__(self, tree_request: _Optional[_Union[FindChangedPathsRequest.Request.TreeRequest, _Mapping]] = ..., commit_request: _Optional[_Union[FindChangedPathsRequest.Request.CommitRequest, _Mapping]] = ...) -> None: ...
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MERGE_COMMIT_DIFF_MODE_FIELD_NUMBER: _ClassVar[int]
    FIND_RENAMES_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    commits: _containers.RepeatedScalarFieldContainer[str]
    requests: _containers.RepeatedCompositeFieldContainer[FindChangedPathsRequest.Request]
    merge_commit_diff_mode: FindChangedPathsRequest.MergeCommitDiffMode
    find_renames: bool
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., commits: _Optional[_Iterable[str]] = ..., requests: _Optional[_Iterable[_Union[FindChangedPathsRequest.Request, _Mapping]]] = ..., merge_commit_diff_mode: _Optional[_Union[FindChangedPathsRequest.MergeCommitDiffMode, str]] = ..., find_renames: _Optional[bool] = ...) -> None: ...

class FindChangedPathsResponse(_message.Message):
    __slots__ = ("paths",)
    PATHS_FIELD_NUMBER: _ClassVar[int]
    paths: _containers.RepeatedCompositeFieldContainer[ChangedPaths]
    def __init__(self, paths: _Optional[_Iterable[_Union[ChangedPaths, _Mapping]]] = ...) -> None: ...

class ChangedPaths(_message.Message):
    __slots__ = ("path", "status", "old_mode", "new_mode", "old_blob_id", "new_blob_id", "old_path")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ADDED: _ClassVar[ChangedPaths.Status]
        MODIFIED: _ClassVar[ChangedPaths.Status]
        DELETED: _ClassVar[ChangedPaths.Status]
        TYPE_CHANGE: _ClassVar[ChangedPaths.Status]
        COPIED: _ClassVar[ChangedPaths.Status]
        RENAMED: _ClassVar[ChangedPaths.Status]
    ADDED: ChangedPaths.Status
    MODIFIED: ChangedPaths.Status
    DELETED: ChangedPaths.Status
    TYPE_CHANGE: ChangedPaths.Status
    COPIED: ChangedPaths.Status
    RENAMED: ChangedPaths.Status
    PATH_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OLD_MODE_FIELD_NUMBER: _ClassVar[int]
    NEW_MODE_FIELD_NUMBER: _ClassVar[int]
    OLD_BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_BLOB_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_PATH_FIELD_NUMBER: _ClassVar[int]
    path: bytes
    status: ChangedPaths.Status
    old_mode: int
    new_mode: int
    old_blob_id: str
    new_blob_id: str
    old_path: bytes
    def __init__(self, path: _Optional[bytes] = ..., status: _Optional[_Union[ChangedPaths.Status, str]] = ..., old_mode: _Optional[int] = ..., new_mode: _Optional[int] = ..., old_blob_id: _Optional[str] = ..., new_blob_id: _Optional[str] = ..., old_path: _Optional[bytes] = ...) -> None: ...
