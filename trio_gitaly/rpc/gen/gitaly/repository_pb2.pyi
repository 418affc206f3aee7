from trio_gitaly.rpc.gen.gitaly import lint_pb2 as _lint_pb2
from trio_gitaly.rpc.gen.gitaly import shared_pb2 as _shared_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RepositoryExistsRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ...) -> None: ...

class RepositoryExistsResponse(_message.Message):
    __slots__ = ("exists",)
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    def __init__(self, exists: _Optional[bool] = ...) -> None: ...

class ObjectFormatRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ...) -> None: ...

class ObjectFormatResponse(_message.Message):
    __slots__ = ("format",)
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    format: _shared_pb2.ObjectFormat
    def __init__(self, format: _Optional[_Union[_shared_pb2.ObjectFormat, str]] = ...) -> None: ...

class CreateRepositoryRequest(_message.Message):
    __slots__ = ("repository", "default_branch", "object_format")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BRANCH_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    default_branch: bytes
    object_format: _shared_pb2.ObjectFormat
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., default_branch: _Optional[bytes] = ..., object_format: _Optional[_Union[_shared_pb2.ObjectFormat, str]] = ...) -> None: ...

class CreateRepositoryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RemoveRepositoryRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ...) -> None: ...

class RemoveRepositoryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HasLocalBranchesRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ...) -> None: ...

class HasLocalBranchesResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: bool
    def __init__(self, value: _Optional[bool] = ...) -> None: ...

class RepositorySizeRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ...) -> None: ...

class RepositorySizeResponse(_message.Message):
    __slots__ = ("size",)
    SIZE_FIELD_NUMBER: _ClassVar[int]
    size: int
    def __init__(self, size: _Optional[int] = ...) -> None: ...

class RepositoryInfoRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ...) -> None: ...

class RepositoryInfoResponse(_message.Message):
    __slots__ = ("size", "references", "objects")
    class ReferencesInfo(_message.Message):
        __slots__ = ("loose_count", "packed_size", "reference_backend")
        class ReferenceBackend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            REFERENCE_BACKEND_UNSPECIFIED: _ClassVar[RepositoryInfoResponse.ReferencesInfo.ReferenceBackend]
            REFERENCE_BACKEND_FILES: _ClassVar[RepositoryInfoResponse.ReferencesInfo.ReferenceBackend]
            REFERENCE_BACKEND_REFTABLE: _ClassVar[RepositoryInfoResponse.ReferencesInfo.ReferenceBackend]
        REFERENCE_BACKEND_UNSPECIFIED: RepositoryInfoResponse.ReferencesInfo.ReferenceBackend
        REFERENCE_BACKEND_FILES: RepositoryInfoResponse.ReferencesInfo.ReferenceBackend
        REFERENCE_BACKEND_REFTABLE: RepositoryInfoResponse.ReferencesInfo.ReferenceBackend
        LOOSE_COUNT_FIELD_NUMBER: _ClassVar[int]
        PACKED_SIZE_FIELD_NUMBER: _ClassVar[int]
        REFERENCE_BACKEND_FIELD_NUMBER: _ClassVar[int]
        loose_count: int
        packed_size: int
        reference_backend: RepositoryInfoResponse.ReferencesInfo.ReferenceBackend
        def __init__(self, loose_count: _Optional[int] = ..., packed_size: _Optional[int] = ..., reference_backend: _Optional[_Union[RepositoryInfoResponse.ReferencesInfo.ReferenceBackend, str]] = ...) -> None: ...
    class ObjectsInfo(_message.Message):
        __slots__ = ("size", "recent_size", "stale_size", "keep_size")
        SIZE_FIELD_NUMBER: _ClassVar[int]
        RECENT_SIZE_FIELD_NUMBER: _ClassVar[int]
        STALE_SIZE_FIELD_NUMBER: _ClassVar[int]
        KEEP_SIZE_FIELD_NUMBER: _ClassVar[int]
        size: int
        recent_size: int
        stale_size: int
        keep_size: int
        def __init__(self, size: _Optional[int] = ..., recent_size: _Optional[int] = ..., stale_size: _Optional[int] = ..., keep_size: _Optional[int] = ...) -> None: ...
    SIZE_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    size: int
    references: RepositoryInfoResponse.ReferencesInfo
    objects: RepositoryInfoResponse.ObjectsInfo
    def __init__(self, size: _Optional[int] = ..., references: _Optional[_Union[RepositoryInfoResponse.ReferencesInfo, _Mapping]] = ..., objects: _Optional[_Union[RepositoryInfoResponse.ObjectsInfo, _Mapping]] = ...) -> None: ...

class FindMergeBaseRequest(_message.Message):
    __slots__ = ("repository", "revisions")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revisions: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revisions: _Optional[_Iterable[bytes]] = ...) -> None: ...

class FindMergeBaseResponse(_message.Message):
    __slots__ = ("base",)
    BASE_FIELD_NUMBER: _ClassVar[int]
    base: str
    def __init__(self, base: _Optional[str] = ...) -> None: ...

class CalculateChecksumRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ...) -> None: ...

class CalculateChecksumResponse(_message.Message):
    __slots__ = ("checksum",)
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    checksum: str
    def __init__(self, checksum: _Optional[str] = ...) -> None: ...

class SearchFilesByNameRequest(_message.Message):
    __slots__ = ("repository", "query", "ref", "filter", "limit", "offset")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    query: str
    ref: bytes
    filter: str
    limit: int
    offset: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., query: _Optional[str] = ..., ref: _Optional[bytes] = ..., filter: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class SearchFilesByNameResponse(_message.Message):
    __slots__ = ("files",)
    FILES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, files: _Optional[_Iterable[bytes]] = ...) -> None: ...

class OptimizeRepositoryRequest(_message.Message):
    __slots__ = ("repository", "strategy")
    class Strategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STRATEGY_UNSPECIFIED: _ClassVar[OptimizeRepositoryRequest.Strategy]
        STRATEGY_HEURISTICAL: _ClassVar[OptimizeRepositoryRequest.Strategy]
        STRATEGY_EAGER: _ClassVar[OptimizeRepositoryRequest.Strategy]
    STRATEGY_UNSPECIFIED: OptimizeRepositoryRequest.Strategy
    STRATEGY_HEURISTICAL: OptimizeRepositoryRequest.Strategy
    STRATEGY_EAGER: OptimizeRepositoryRequest.Strategy
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    strategy: OptimizeRepositoryRequest.Strategy
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., strategy: _Optional[_Union[OptimizeRepositoryRequest.Strategy, str]] = ...) -> None: ...

class OptimizeRepositoryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PruneUnreachableObjectsRequest(_message.Message):
    __slots__ = ("repository",)
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ...) -> None: ...

class PruneUnreachableObjectsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
