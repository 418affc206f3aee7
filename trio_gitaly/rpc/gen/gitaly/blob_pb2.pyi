from trio_gitaly.rpc.gen.gitaly import lint_pb2 as _lint_pb2
from trio_gitaly.rpc.gen.gitaly import shared_pb2 as _shared_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetBlobRequest(_message.Message):
    __slots__ = ("repository", "oid", "limit")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    oid: str
    limit: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., oid: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class GetBlobResponse(_message.Message):
    __slots__ = ("size", "data", "oid")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    size: int
    data: bytes
    oid: str
    def __init__(self, size: _Optional[int] = ..., data: _Optional[bytes] = ..., oid: _Optional[str] = ...) -> None: ...

class GetBlobsRequest(_message.Message):
    __slots__ = ("repository", "revision_paths", "limit")
    class RevisionPath(_message.Message):
        __slots__ = ("revision", "path")
        REVISION_FIELD_NUMBER: _ClassVar[int]
        PATH_FIELD_NUMBER: _ClassVar[int]
        revision: str
        path: bytes
        def __init__(self, revision: _Optional[str] = ..., path: _Optional[bytes] = ...) -> None: ...
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISION_PATHS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revision_paths: _containers.RepeatedCompositeFieldContainer[GetBlobsRequest.RevisionPath]
    limit: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revision_paths: _Optional[_Iterable[_Union[GetBlobsRequest.RevisionPath, _Mapping]]] = ..., limit: _Optional[int] = ...) -> None: ...

class GetBlobsResponse(_message.Message):
    __slots__ = ("size", "data", "oid", "is_submodule", "mode", "revision", "path", "type")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    IS_SUBMODULE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    size: int
    data: bytes
    oid: str
    is_submodule: bool
    mode: int
    revision: str
    path: bytes
    type: _shared_pb2.ObjectType
    def __init__(self, size: _Optional[int] = ..., data: _Optional[bytes] = ..., oid: _Optional[str] = ..., is_submodule: _Optional[bool] = ..., mode: _Optional[int] = ..., revision: _Optional[str] = ..., path: _Optional[bytes] = ..., type: _Optional[_Union[_shared_pb2.ObjectType, str]] = ...) -> None: ...

class ListBlobsRequest(_message.Message):
    __slots__ = ("repository", "revisions", "limit", "bytes_limit", "with_paths")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BYTES_LIMIT_FIELD_NUMBER: _ClassVar[int]
    WITH_PATHS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revisions: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    bytes_limit: int
    with_paths: bool
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revisions: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., bytes_limit: _Optional[int] = ..., with_paths: _Optional[bool] = ...) -> None: ...

class ListBlobsResponse(_message.Message):
    __slots__ = ("blobs",)
    class Blob(_message.Message):
        __slots__ = ("oid", "size", "data", "path")
        OID_FIELD_NUMBER: _ClassVar[int]
        SIZE_FIELD_NUMBER: _ClassVar[int]
        DATA_FIELD_NUMBER: _ClassVar[int]
        PATH_FIELD_NUMBER: _ClassVar[int]
        oid: str
        size: int
        data: bytes
        path: bytes
        def __init__(self, oid: _Optional[str] = ..., size: _Optional[int] = ..., data: _Optional[bytes] = ..., path: _Optional[bytes] = ...) -> None: ...
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    blobs: _containers.RepeatedCompositeFieldContainer[ListBlobsResponse.Blob]
    def __init__(self, blobs: _Optional[_Iterable[_Union[ListBlobsResponse.Blob, _Mapping]]] = ...) -> None: ...

class ListAllBlobsRequest(_message.Message):
    __slots__ = ("repository", "limit", "bytes_limit")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BYTES_LIMIT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    limit: int
    bytes_limit: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., limit: _Optional[int] = ..., bytes_limit: _Optional[int] = ...) -> None: ...

class ListAllBlobsResponse(_message.Message):
    __slots__ = ("blobs",)
    class Blob(_message.Message):
        __slots__ = ("oid", "size", "data")
        OID_FIELD_NUMBER: _ClassVar[int]
        SIZE_FIELD_NUMBER: _ClassVar[int]
        DATA_FIELD_NUMBER: _ClassVar[int]
        oid: str
        size: int
        data: bytes
        def __init__(self, oid: _Optional[str] = ..., size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    blobs: _containers.RepeatedCompositeFieldContainer[ListAllBlobsResponse.Blob]
    def __init__(self, blobs: _Optional[_Iterable[_Union[ListAllBlobsResponse.Blob, _Mapping]]] = ...) -> None: ...

class LFSPointer(_message.Message):
    __slots__ = ("size", "data", "oid", "file_size", "file_oid")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    FILE_OID_FIELD_NUMBER: _ClassVar[int]
    size: int
    data: bytes
    oid: str
    file_size: int
    file_oid: bytes
    def __init__(self, size: _Optional[int] = ..., data: _Optional[bytes] = ..., oid: _Optional[str] = ..., file_size: _Optional[int] = ..., file_oid: _Optional[bytes] = ...) -> None: ...

class GetLFSPointersRequest(_message.Message):
    __slots__ = ("repository", "blob_ids")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    BLOB_IDS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    blob_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., blob_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetLFSPointersResponse(_message.Message):
    __slots__ = ("lfs_pointers",)
    LFS_POINTERS_FIELD_NUMBER: _ClassVar[int]
    lfs_pointers: _containers.RepeatedCompositeFieldContainer[LFSPointer]
    def __init__(self, lfs_pointers: _Optional[_Iterable[_Union[LFSPointer, _Mapping]]] = ...) -> None: ...

class ListLFSPointersRequest(_message.Message):
    __slots__ = ("repository", "revisions", "limit")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    revisions: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., revisions: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListLFSPointersResponse(_message.Message):
    __slots__ = ("lfs_pointers",)
    LFS_POINTERS_FIELD_NUMBER: _ClassVar[int]
    lfs_pointers: _containers.RepeatedCompositeFieldContainer[LFSPointer]
    def __init__(self, lfs_pointers: _Optional[_Iterable[_Union[LFSPointer, _Mapping]]] = ...) -> None: ...

class ListAllLFSPointersRequest(_message.Message):
    __slots__ = ("repository", "limit")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    limit: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAllLFSPointersResponse(_message.Message):
    __slots__ = ("lfs_pointers",)
    LFS_POINTERS_FIELD_NUMBER: _ClassVar[int]
    lfs_pointers: _containers.RepeatedCompositeFieldContainer[LFSPointer]
    def __init__(self, lfs_pointers: _Optional[_Iterable[_Union[LFSPointer, _Mapping]]] = ...) -> None: ...
