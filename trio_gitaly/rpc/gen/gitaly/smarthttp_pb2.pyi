from trio_gitaly.rpc.gen.gitaly import lint_pb2 as _lint_pb2
from trio_gitaly.rpc.gen.gitaly import packfile_pb2 as _packfile_pb2
from trio_gitaly.rpc.gen.gitaly import shared_pb2 as _shared_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InfoRefsRequest(_message.Message):
    __slots__ = ("repository", "git_config_options", "git_protocol")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    GIT_CONFIG_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    GIT_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    git_config_options: _containers.RepeatedScalarFieldContainer[str]
    git_protocol: str
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., git_config_options: _Optional[_Iterable[str]] = ..., git_protocol: _Optional[str] = ...) -> None: ...

class InfoRefsResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class PostUploadPackWithSidechannelRequest(_message.Message):
    __slots__ = ("repository", "git_config_options", "git_protocol")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    GIT_CONFIG_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    GIT_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    git_config_options: _containers.RepeatedScalarFieldContainer[str]
    git_protocol: str
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., git_config_options: _Optional[_Iterable[str]] = ..., git_protocol: _Optional[str] = ...) -> None: ...

class PostUploadPackWithSidechannelResponse(_message.Message):
    __slots__ = ("packfile_negotiation_statistics",)
    PACKFILE_NEGOTIATION_STATISTICS_FIELD_NUMBER: _ClassVar[int]
    packfile_negotiation_statistics: _packfile_pb2.PackfileNegotiationStatistics
    def __init__(self, packfile_negotiation_statistics: _Optional[_Union[_packfile_pb2.PackfileNegotiationStatistics, _Mapping]] = ...) -> None: ...

class PostReceivePackRequest(_message.Message):
    __slots__ = ("repository", "data", "gl_id", "gl_repository", "gl_username", "git_protocol", "git_config_options")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    GL_ID_FIELD_NUMBER: _ClassVar[int]
    GL_REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    GL_USERNAME_FIELD_NUMBER: _ClassVar[int]
    GIT_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    GIT_CONFIG_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    data: bytes
    gl_id: str
    gl_repository: str
    gl_username: str
    git_protocol: str
    git_config_options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., data: _Optional[bytes] = ..., gl_id: _Optional[str] = ..., gl_repository: _Optional[str] = ..., gl_username: _Optional[str] = ..., git_protocol: _Optional[str] = ..., git_config_options: _Optional[_Iterable[str]] = ...) -> None: ...

class PostReceivePackResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...
