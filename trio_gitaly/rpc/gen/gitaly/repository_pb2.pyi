from trio_gitaly.rpc.gen.gitaly import lint_pb2 as _lint_pb2
from trio_gitaly.rpc.gen.gitaly import shared_pb2 as _shared_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
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
