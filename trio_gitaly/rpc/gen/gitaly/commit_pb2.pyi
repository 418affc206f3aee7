import datetime

from trio_gitaly.rpc.gen.gitaly import errors_pb2 as _errors_pb2
from trio_gitaly.rpc.gen.gitaly import lint_pb2 as _lint_pb2
from trio_gitaly.rpc.gen.gitaly import shared_pb2 as _shared_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListCommitsRequest(_message.Message):
    __slots__ = ("repository", "revisions", "pagination_params", "order", "reverse", "max_parents", "disable_walk", "first_parent", "after", "before", "author", "ignore_case", "commit_message_patterns", "skip")
    class Order(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NONE: _ClassVar[ListCommitsRequest.Order]
        TOPO: _ClassVar[ListCommitsRequest.Order]
        DATE: _ClassVar[ListCommitsRequest.Order]
    NONE: ListCommitsRequest.Order
    TOPO: ListCommitsRequest.Order
    DATE: ListCommitsRequest.Order
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_PARAMS_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    MAX_PARENTS_FIELD_NUMBER: _ClassVar[int]
    DISABLE_WALK_FIELD_NUMBER: _ClassVar[int]
    FIRST_PARENT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    IGNORE_CASE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_MESSAGE_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    SKIP_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revisions: _containers.RepeatedScalarFieldContainer[str]
    pagination_params: _shared_pb2.PaginationParameter
    order: ListCommitsRequest.Order
    reverse: bool
    max_parents: int
    disable_walk: bool
    first_parent: bool
    after: _timestamp_pb2.Timestamp
    before: _timestamp_pb2.Timestamp
    author: bytes
    ignore_case: bool
    commit_message_patterns: _containers.RepeatedScalarFieldContainer[bytes]
    skip: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revisions: _Optional[_Iterable[str]] = ..., pagination_params: _Optional[_Union[_shared_pb2.PaginationParameter, _Mapping]] = ..., order: _Optional[_Union[ListCommitsRequest.Order, str]] = ..., reverse: _Optional[bool] = ..., max_parents: _Optional[int] = ..., disable_walk: _Optional[bool] = ..., first_parent: _Optional[bool] = ..., after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., author: _Optional[bytes] = ..., ignore_case: _Optional[bool] = ..., commit_message_patterns: _Optional[_Iterable[bytes]] = ..., skip: _Optional[int] = ...) -> None: ...

class ListCommitsResponse(_message.Message):
    __slots__ = ("commits",)
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[_shared_pb2.GitCommit]
    def __init__(self, commits: _Optional[_Iterable[_Union[_shared_pb2.GitCommit, _Mapping]]] = ...) -> None: ...

class ListAllCommitsRequest(_message.Message):
    __slots__ = ("repository", "pagination_params")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_PARAMS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    pagination_params: _shared_pb2.PaginationParameter
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., pagination_params: _Optional[_Union[_shared_pb2.PaginationParameter, _Mapping]] = ...) -> None: ...

class ListAllCommitsResponse(_message.Message):
    __slots__ = ("commits",)
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[_shared_pb2.GitCommit]
    def __init__(self, commits: _Optional[_Iterable[_Union[_shared_pb2.GitCommit, _Mapping]]] = ...) -> None: ...

class CommitStatsRequest(_message.Message):
    __slots__ = ("repository", "revision")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: bytes
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[bytes] = ...) -> None: ...

class CommitStatsResponse(_message.Message):
    __slots__ = ("oid", "additions", "deletions", "files")
    OID_FIELD_NUMBER: _ClassVar[int]
    ADDITIONS_FIELD_NUMBER: _ClassVar[int]
    DELETIONS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    oid: str
    additions: int
    deletions: int
    files: int
    def __init__(self, oid: _Optional[str] = ..., additions: _Optional[int] = ..., deletions: _Optional[int] = ..., files: _Optional[int] = ...) -> None: ...

class CommitIsAncestorRequest(_message.Message):
    __slots__ = ("repository", "ancestor_id", "child_id")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    ANCESTOR_ID_FIELD_NUMBER: _ClassVar[int]
    CHILD_ID_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    ancestor_id: str
    child_id: str
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., ancestor_id: _Optional[str] = ..., child_id: _Optional[str] = ...) -> None: ...

class CommitIsAncestorResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: bool
    def __init__(self, value: _Optional[bool] = ...) -> None: ...

class TreeEntryRequest(_message.Message):
    __slots__ = ("repository", "revision", "path", "limit", "max_size")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: bytes
    path: bytes
    limit: int
    max_size: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[bytes] = ..., path: _Optional[bytes] = ..., limit: _Optional[int] = ..., max_size: _Optional[int] = ...) -> None: ...

class TreeEntryResponse(_message.Message):
    __slots__ = ("type", "oid", "size", "mode", "data")
    class ObjectType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        COMMIT: _ClassVar[TreeEntryResponse.ObjectType]
        BLOB: _ClassVar[TreeEntryResponse.ObjectType]
        TREE: _ClassVar[TreeEntryResponse.ObjectType]
        TAG: _ClassVar[TreeEntryResponse.ObjectType]
    COMMIT: TreeEntryResponse.ObjectType
    BLOB: TreeEntryResponse.ObjectType
    TREE: TreeEntryResponse.ObjectType
    TAG: TreeEntryResponse.ObjectType
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    type: TreeEntryResponse.ObjectType
    oid: str
    size: int
    mode: int
    data: bytes
    def __init__(self, type: _Optional[_Union[TreeEntryResponse.ObjectType, str]] = ..., oid: _Optional[str] = ..., size: _Optional[int] = ..., mode: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class CountCommitsRequest(_message.Message):
    __slots__ = ("repository", "revision", "after", "before", "path", "max_count", "all", "first_parent", "global_options")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    FIRST_PARENT_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: bytes
    after: _timestamp_pb2.Timestamp
    before: _timestamp_pb2.Timestamp
    path: bytes
    max_count: int
    all: bool
    first_parent: bool
    global_options: _shared_pb2.GlobalOptions
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[bytes] = ..., after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., path: _Optional[bytes] = ..., max_count: _Optional[int] = ..., all: _Optional[bool] = ..., first_parent: _Optional[bool] = ..., global_options: _Optional[_Union[_shared_pb2.GlobalOptions, _Mapping]] = ...) -> None: ...

class CountCommitsResponse(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class CountDivergingCommitsRequest(_message.Message):
    __slots__ = ("repository", "to", "max_count")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    to: bytes
    max_count: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., to: _Optional[bytes] = ..., max_count: _Optional[int] = ..., **kwargs) -> None: ...

class CountDivergingCommitsResponse(_message.Message):
    __slots__ = ("left_count", "right_count")
    LEFT_COUNT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_COUNT_FIELD_NUMBER: _ClassVar[int]
    left_count: int
    right_count: int
    def __init__(self, left_count: _Optional[int] = ..., right_count: _Optional[int] = ...) -> None: ...

class TreeEntry(_message.Message):
    __slots__ = ("oid", "path", "type", "mode", "commit_oid", "flat_path")
    class EntryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        BLOB: _ClassVar[TreeEntry.EntryType]
        TREE: _ClassVar[TreeEntry.EntryType]
        COMMIT: _ClassVar[TreeEntry.EntryType]
    BLOB: TreeEntry.EntryType
    TREE: TreeEntry.EntryType
    COMMIT: TreeEntry.EntryType
    OID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_OID_FIELD_NUMBER: _ClassVar[int]
    FLAT_PATH_FIELD_NUMBER: _ClassVar[int]
    oid: str
    path: bytes
    type: TreeEntry.EntryType
    mode: int
    commit_oid: str
    flat_path: bytes
    def __init__(self, oid: _Optional[str] = ..., path: _Optional[bytes] = ..., type: _Optional[_Union[TreeEntry.EntryType, str]] = ..., mode: _Optional[int] = ..., commit_oid: _Optional[str] = ..., flat_path: _Optional[bytes] = ...) -> None: ...

class GetTreeEntriesRequest(_message.Message):
    __slots__ = ("repository", "revision", "path", "recursive", "sort", "pagination_params", "skip_flat_paths")
    class SortBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DEFAULT: _ClassVar[GetTreeEntriesRequest.SortBy]
        TREES_FIRST: _ClassVar[GetTreeEntriesRequest.SortBy]
    DEFAULT: GetTreeEntriesRequest.SortBy
    TREES_FIRST: GetTreeEntriesRequest.SortBy
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_PARAMS_FIELD_NUMBER: _ClassVar[int]
    SKIP_FLAT_PATHS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: bytes
    path: bytes
    recursive: bool
    sort: GetTreeEntriesRequest.SortBy
    pagination_params: _shared_pb2.PaginationParameter
    skip_flat_paths: bool
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[bytes] = ..., path: _Optional[bytes] = ..., recursive: _Optional[bool] = ..., sort: _Optional[_Union[GetTreeEntriesRequest.SortBy, str]] = ..., pagination_params: _Optional[_Union[_shared_pb2.PaginationParameter, _Mapping]] = ..., skip_flat_paths: _Optional[bool] = ...) -> None: ...

class GetTreeEntriesResponse(_message.Message):
    __slots__ = ("entries", "pagination_cursor")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_CURSOR_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[TreeEntry]
    pagination_cursor: _shared_pb2.PaginationCursor
    def __init__(self, entries: _Optional[_Iterable[_Union[TreeEntry, _Mapping]]] = ..., pagination_cursor: _Optional[_Union[_shared_pb2.PaginationCursor, _Mapping]] = ...) -> None: ...

class GetTreeEntriesError(_message.Message):
    __slots__ = ("resolve_tree", "path")
    RESOLVE_TREE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    resolve_tree: _errors_pb2.ResolveRevisionError
    path: _errors_pb2.PathError
    def __init__(self, resolve_tree: _Optional[_Union[_errors_pb2.ResolveRevisionError, _Mapping]] = ..., path: _Optional[_Union[_errors_pb2.PathError, _Mapping]] = ...) -> None: ...

class ListFilesRequest(_message.Message):
    __slots__ = ("repository", "revision")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: bytes
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[bytes] = ...) -> None: ...

class ListFilesResponse(_message.Message):
    __slots__ = ("paths",)
    PATHS_FIELD_NUMBER: _ClassVar[int]
    paths: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, paths: _Optional[_Iterable[bytes]] = ...) -> None: ...

class FindCommitRequest(_message.Message):
    __slots__ = ("repository", "revision", "trailers")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TRAILERS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: bytes
    trailers: bool
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[bytes] = ..., trailers: _Optional[bool] = ...) -> None: ...

class FindCommitResponse(_message.Message):
    __slots__ = ("commit",)
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    commit: _shared_pb2.GitCommit
    def __init__(self, commit: _Optional[_Union[_shared_pb2.GitCommit, _Mapping]] = ...) -> None: ...

class ListCommitsByOidRequest(_message.Message):
    __slots__ = ("repository", "oid")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    oid: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., oid: _Optional[_Iterable[str]] = ...) -> None: ...

class ListCommitsByOidResponse(_message.Message):
    __slots__ = ("commits",)
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[_shared_pb2.GitCommit]
    def __init__(self, commits: _Optional[_Iterable[_Union[_shared_pb2.GitCommit, _Mapping]]] = ...) -> None: ...

class ListCommitsByRefNameRequest(_message.Message):
    __slots__ = ("repository", "ref_names")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REF_NAMES_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    ref_names: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., ref_names: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListCommitsByRefNameResponse(_message.Message):
    __slots__ = ("commit_refs",)
    class CommitForRef(_message.Message):
        __slots__ = ("commit", "ref_name")
        COMMIT_FIELD_NUMBER: _ClassVar[int]
        REF_NAME_FIELD_NUMBER: _ClassVar[int]
        commit: _shared_pb2.GitCommit
        ref_name: bytes
        def __init__(self, commit: _Optional[_Union[_shared_pb2.GitCommit, _Mapping]] = ..., ref_name: _Optional[bytes] = ...) -> None: ...
    COMMIT_REFS_FIELD_NUMBER: _ClassVar[int]
    commit_refs: _containers.RepeatedCompositeFieldContainer[ListCommitsByRefNameResponse.CommitForRef]
    def __init__(self, commit_refs: _Optional[_Iterable[_Union[ListCommitsByRefNameResponse.CommitForRef, _Mapping]]] = ...) -> None: ...

class FindCommitsRequest(_message.Message):
    __slots__ = ("repository", "revision", "limit", "offset", "paths", "follow", "skip_merges", "disable_walk", "after", "before", "all", "first_parent", "author", "order", "global_options", "trailers", "include_shortstat", "include_referenced_by")
    class Order(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NONE: _ClassVar[FindCommitsRequest.Order]
        TOPO: _ClassVar[FindCommitsRequest.Order]
    NONE: FindCommitsRequest.Order
    TOPO: FindCommitsRequest.Order
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PATHS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    SKIP_MERGES_FIELD_NUMBER: _ClassVar[int]
    DISABLE_WALK_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    FIRST_PARENT_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    TRAILERS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SHORTSTAT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_REFERENCED_BY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: bytes
    limit: int
    offset: int
    paths: _containers.RepeatedScalarFieldContainer[bytes]
    follow: bool
    skip_merges: bool
    disable_walk: bool
    after: _timestamp_pb2.Timestamp
    before: _timestamp_pb2.Timestamp
    all: bool
    first_parent: bool
    author: bytes
    order: FindCommitsRequest.Order
    global_options: _shared_pb2.GlobalOptions
    trailers: bool
    include_shortstat: bool
    include_referenced_by: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[bytes] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., paths: _Optional[_Iterable[bytes]] = ..., follow: _Optional[bool] = ..., skip_merges: _Optional[bool] = ..., disable_walk: _Optional[bool] = ..., after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., all: _Optional[bool] = ..., first_parent: _Optional[bool] = ..., author: _Optional[bytes] = ..., order: _Optional[_Union[FindCommitsRequest.Order, str]] = ..., global_options: _Optional[_Union[_shared_pb2.GlobalOptions, _Mapping]] = ..., trailers: _Optional[bool] = ..., include_shortstat: _Optional[bool] = ..., include_referenced_by: _Optional[_Iterable[bytes]] = ...) -> None: ...

class FindCommitsResponse(_message.Message):
    __slots__ = ("commits",)
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[_shared_pb2.GitCommit]
    def __init__(self, commits: _Optional[_Iterable[_Union[_shared_pb2.GitCommit, _Mapping]]] = ...) -> None: ...

class FindCommitsError(_message.Message):
    __slots__ = ("bad_object", "ambiguous_ref", "invalid_range")
    BAD_OBJECT_FIELD_NUMBER: _ClassVar[int]
    AMBIGUOUS_REF_FIELD_NUMBER: _ClassVar[int]
    INVALID_RANGE_FIELD_NUMBER: _ClassVar[int]
    bad_object: _errors_pb2.BadObjectError
    ambiguous_ref: _errors_pb2.AmbiguousReferenceError
    invalid_range: _errors_pb2.InvalidRevisionRange
    def __init__(self, bad_object: _Optional[_Union[_errors_pb2.BadObjectError, _Mapping]] = ..., ambiguous_ref: _Optional[_Union[_errors_pb2.AmbiguousReferenceError, _Mapping]] = ..., invalid_range: _Optional[_Union[_errors_pb2.InvalidRevisionRange, _Mapping]] = ...) -> None: ...

class RawBlameRequest(_message.Message):
    __slots__ = ("repository", "revision", "path", "range")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: bytes
    path: bytes
    range: bytes
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[bytes] = ..., path: _Optional[bytes] = ..., range: _Optional[bytes] = ...) -> None: ...

class RawBlameResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class RawBlameError(_message.Message):
    __slots__ = ("path_not_found", "out_of_range")
    class OutOfRangeError(_message.Message):
        __slots__ = ("actual_lines",)
        ACTUAL_LINES_FIELD_NUMBER: _ClassVar[int]
        actual_lines: int
        def __init__(self, actual_lines: _Optional[int] = ...) -> None: ...
    PATH_NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_RANGE_FIELD_NUMBER: _ClassVar[int]
    path_not_found: _errors_pb2.PathNotFoundError
    out_of_range: RawBlameError.OutOfRangeError
    def __init__(self, path_not_found: _Optional[_Union[_errors_pb2.PathNotFoundError, _Mapping]] = ..., out_of_range: _Optional[_Union[RawBlameError.OutOfRangeError, _Mapping]] = ...) -> None: ...

class LastCommitForPathRequest(_message.Message):
    __slots__ = ("repository", "revision", "path", "literal_pathspec", "global_options")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LITERAL_PATHSPEC_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: bytes
    path: bytes
    literal_pathspec: bool
    global_options: _shared_pb2.GlobalOptions
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[bytes] = ..., path: _Optional[bytes] = ..., literal_pathspec: _Optional[bool] = ..., global_options: _Optional[_Union[_shared_pb2.GlobalOptions, _Mapping]] = ...) -> None: ...

class LastCommitForPathResponse(_message.Message):
    __slots__ = ("commit",)
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    commit: _shared_pb2.GitCommit
    def __init__(self, commit: _Optional[_Union[_shared_pb2.GitCommit, _Mapping]] = ...) -> None: ...

class ListLastCommitsForTreeRequest(_message.Message):
    __slots__ = ("repository", "revision", "path", "limit", "offset", "literal_pathspec", "global_options")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LITERAL_PATHSPEC_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision: str
    path: bytes
    limit: int
    offset: int
    literal_pathspec: bool
    global_options: _shared_pb2.GlobalOptions
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision: _Optional[str] = ..., path: _Optional[bytes] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., literal_pathspec: _Optional[bool] = ..., global_options: _Optional[_Union[_shared_pb2.GlobalOptions, _Mapping]] = ...) -> None: ...

class ListLastCommitsForTreeResponse(_message.Message):
    __slots__ = ("commits",)
    class CommitForTree(_message.Message):
        __slots__ = ("commit", "path_bytes")
        COMMIT_FIELD_NUMBER: _ClassVar[int]
        PATH_BYTES_FIELD_NUMBER: _ClassVar[int]
        commit: _shared_pb2.GitCommit
        path_bytes: bytes
        def __init__(self, commit: _Optional[_Union[_shared_pb2.GitCommit, _Mapping]] = ..., path_bytes: _Optional[bytes] = ...) -> None: ...
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    commits: _containers.RepeatedCompositeFieldContainer[ListLastCommitsForTreeResponse.CommitForTree]
    def __init__(self, commits: _Optional[_Iterable[_Union[ListLastCommitsForTreeResponse.CommitForTree, _Mapping]]] = ...) -> None: ...

class GetCommitMessagesRequest(_message.Message):
    __slots__ = ("repository", "commit_ids")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    COMMIT_IDS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    commit_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., commit_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetCommitMessagesResponse(_message.Message):
    __slots__ = ("commit_id", "message")
    COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    commit_id: str
    message: bytes
    def __init__(self, commit_id: _Optional[str] = ..., message: _Optional[bytes] = ...) -> None: ...

class CheckObjectsExistRequest(_message.Message):
    __slots__ = ("repository", "revisions")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revisions: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revisions: _Optional[_Iterable[bytes]] = ...) -> None: ...

class CheckObjectsExistResponse(_message.Message):
    __slots__ = ("revisions",)
    class RevisionExistence(_message.Message):
        __slots__ = ("name", "exists")
        NAME_FIELD_NUMBER: _ClassVar[int]
        EXISTS_FIELD_NUMBER: _ClassVar[int]
        name: bytes
        exists: bool
        def __init__(self, name: _Optional[bytes] = ..., exists: _Optional[bool] = ...) -> None: ...
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[CheckObjectsExistResponse.RevisionExistence]
    def __init__(self, revisions: _Optional[_Iterable[_Union[CheckObjectsExistResponse.RevisionExistence, _Mapping]]] = ...) -> None: ...
