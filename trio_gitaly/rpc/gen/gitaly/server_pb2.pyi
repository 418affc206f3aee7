import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from trio_gitaly.rpc.gen.gitaly import lint_pb2 as _lint_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfoResponse(_message.Message):
    __slots__ = ("server_version", "git_version", "storage_statuses")
    class StorageStatus(_message.Message):
        __slots__ = ("storage_name", "readable", "writeable", "fs_type", "filesystem_id", "replication_factor")
        STORAGE_NAME_FIELD_NUMBER: _ClassVar[int]
        READABLE_FIELD_NUMBER: _ClassVar[int]
        WRITEABLE_FIELD_NUMBER: _ClassVar[int]
        FS_TYPE_FIELD_NUMBER: _ClassVar[int]
        FILESYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
        REPLICATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
        storage_name: str
        readable: bool
        writeable: bool
        fs_type: str
        filesystem_id: str
        replication_factor: int
        def __init__(self, storage_name: _Optional[str] = ..., readable: _Optional[bool] = ..., writeable: _Optional[bool] = ..., fs_type: _Optional[str] = ..., filesystem_id: _Optional[str] = ..., replication_factor: _Optional[int] = ...) -> None: ...
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    GIT_VERSION_FIELD_NUMBER: _ClassVar[int]
    STORAGE_STATUSES_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    git_version: str
    storage_statuses: _containers.RepeatedCompositeFieldContainer[ServerInfoResponse.StorageStatus]
    def __init__(self, server_version: _Optional[str] = ..., git_version: _Optional[str] = ..., storage_statuses: _Optional[_Iterable[_Union[ServerInfoResponse.StorageStatus, _Mapping]]] = ...) -> None: ...

class DiskStatisticsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DiskStatisticsResponse(_message.Message):
    __slots__ = ("storage_statuses",)
    class StorageStatus(_message.Message):
        __slots__ = ("storage_name", "available", "used")
        STORAGE_NAME_FIELD_NUMBER: _ClassVar[int]
        AVAILABLE_FIELD_NUMBER: _ClassVar[int]
        USED_FIELD_NUMBER: _ClassVar[int]
        storage_name: str
        available: int
        used: int
        def __init__(self, storage_name: _Optional[str] = ..., available: _Optional[int] = ..., used: _Optional[int] = ...) -> None: ...
    STORAGE_STATUSES_FIELD_NUMBER: _ClassVar[int]
    storage_statuses: _containers.RepeatedCompositeFieldContainer[DiskStatisticsResponse.StorageStatus]
    def __init__(self, storage_statuses: _Optional[_Iterable[_Union[DiskStatisticsResponse.StorageStatus, _Mapping]]] = ...) -> None: ...

class ReadinessCheckRequest(_message.Message):
    __slots__ = ("timeout",)
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    timeout: _duration_pb2.Duration
    def __init__(self, timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ReadinessCheckResponse(_message.Message):
    __slots__ = ("ok_response", "failure_response")
    class Ok(_message.Message):
        __slots__ = ()
        def __init__(self) -> None: ...
    class Failure(_message.Message):
        __slots__ = ("failed_checks",)
        class Response(_message.Message):
            __slots__ = ("name", "error_message")
            NAME_FIELD_NUMBER: _ClassVar[int]
            ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
            name: str
            error_message: str
            def __init__(self, name: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...
        FAILED_CHECKS_FIELD_NUMBER: _ClassVar[int]
        failed_checks: _containers.RepeatedCompositeFieldContainer[ReadinessCheckResponse.Failure.Response]
        def __init__(self, failed_checks: _Optional[_Iterable[_Union[ReadinessCheckResponse.Failure.Response, _Mapping]]] = ...) -> None: ...
    OK_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ok_response: ReadinessCheckResponse.Ok
    failure_response: ReadinessCheckResponse.Failure
    def __init__(self, ok_response: _Optional[_Union[ReadinessCheckResponse.Ok, _Mapping]] = ..., failure_response: _Optional[_Union[ReadinessCheckResponse.Failure, _Mapping]] = ...) -> None: ...

class ServerSignatureRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerSignatureResponse(_message.Message):
    __slots__ = ("public_key",)
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    def __init__(self, public_key: _Optional[bytes] = ...) -> None: ...
