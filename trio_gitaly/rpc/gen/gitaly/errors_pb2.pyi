import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AccessCheckError(_message.Message):
    __slots__ = ("error_message", "protocol", "user_id", "changes")
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    error_message: str
    protocol: str
    user_id: str
    changes: bytes
    def __init__(self, error_message: _Optional[str] = ..., protocol: _Optional[str] = ..., user_id: _Optional[str] = ..., changes: _Optional[bytes] = ...) -> None: ...

class IndexError(_message.Message):
    __slots__ = ("path", "error_type")
    class ErrorType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ERROR_TYPE_UNSPECIFIED: _ClassVar[IndexError.ErrorType]
        ERROR_TYPE_EMPTY_PATH: _ClassVar[IndexError.ErrorType]
        ERROR_TYPE_INVALID_PATH: _ClassVar[IndexError.ErrorType]
        ERROR_TYPE_DIRECTORY_EXISTS: _ClassVar[IndexError.ErrorType]
        ERROR_TYPE_DIRECTORY_TRAVERSAL: _ClassVar[IndexError.ErrorType]
        ERROR_TYPE_FILE_EXISTS: _ClassVar[IndexError.ErrorType]
        ERROR_TYPE_FILE_NOT_FOUND: _ClassVar[IndexError.ErrorType]
    ERROR_TYPE_UNSPECIFIED: IndexError.ErrorType
    ERROR_TYPE_EMPTY_PATH: IndexError.ErrorType
    ERROR_TYPE_INVALID_PATH: IndexError.ErrorType
    ERROR_TYPE_DIRECTORY_EXISTS: IndexError.ErrorType
    ERROR_TYPE_DIRECTORY_TRAVERSAL: IndexError.ErrorType
    ERROR_TYPE_FILE_EXISTS: IndexError.ErrorType
    ERROR_TYPE_FILE_NOT_FOUND: IndexError.ErrorType
    PATH_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    path: bytes
    error_type: IndexError.ErrorType
    def __init__(self, path: _Optional[bytes] = ..., error_type: _Optional[_Union[IndexError.ErrorType, str]] = ...) -> None: ...

class InvalidRefFormatError(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, refs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class NotAncestorError(_message.Message):
    __slots__ = ("parent_revision", "child_revision")
    PARENT_REVISION_FIELD_NUMBER: _ClassVar[int]
    CHILD_REVISION_FIELD_NUMBER: _ClassVar[int]
    parent_revision: bytes
    child_revision: bytes
    def __init__(self, parent_revision: _Optional[bytes] = ..., child_revision: _Optional[bytes] = ...) -> None: ...

class ChangesAlreadyAppliedError(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MergeConflictError(_message.Message):
    __slots__ = ("conflicting_files", "conflicting_commit_ids")
    CONFLICTING_FILES_FIELD_NUMBER: _ClassVar[int]
    CONFLICTING_COMMIT_IDS_FIELD_NUMBER: _ClassVar[int]
    conflicting_files: _containers.RepeatedScalarFieldContainer[bytes]
    conflicting_commit_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, conflicting_files: _Optional[_Iterable[bytes]] = ..., conflicting_commit_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReferencesLockedError(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, refs: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ReferenceExistsError(_message.Message):
    __slots__ = ("reference_name", "oid")
    REFERENCE_NAME_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    reference_name: bytes
    oid: str
    def __init__(self, reference_name: _Optional[bytes] = ..., oid: _Optional[str] = ...) -> None: ...

class ReferenceNotFoundError(_message.Message):
    __slots__ = ("reference_name",)
    REFERENCE_NAME_FIELD_NUMBER: _ClassVar[int]
    reference_name: bytes
    def __init__(self, reference_name: _Optional[bytes] = ...) -> None: ...

class ReferenceStateMismatchError(_message.Message):
    __slots__ = ("reference_name", "expected_object_id", "actual_object_id")
    REFERENCE_NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    reference_name: bytes
    expected_object_id: bytes
    actual_object_id: bytes
    def __init__(self, reference_name: _Optional[bytes] = ..., expected_object_id: _Optional[bytes] = ..., actual_object_id: _Optional[bytes] = ...) -> None: ...

class ReferenceUpdateError(_message.Message):
    __slots__ = ("reference_name", "old_oid", "new_oid")
    REFERENCE_NAME_FIELD_NUMBER: _ClassVar[int]
    OLD_OID_FIELD_NUMBER: _ClassVar[int]
    NEW_OID_FIELD_NUMBER: _ClassVar[int]
    reference_name: bytes
    old_oid: str
    new_oid: str
    def __init__(self, reference_name: _Optional[bytes] = ..., old_oid: _Optional[str] = ..., new_oid: _Optional[str] = ...) -> None: ...

class ResolveRevisionError(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: bytes
    def __init__(self, revision: _Optional[bytes] = ...) -> None: ...

class LimitError(_message.Message):
    __slots__ = ("error_message", "retry_after")
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    error_message: str
    retry_after: _duration_pb2.Duration
    def __init__(self, error_message: _Optional[str] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CustomHookError(_message.Message):
    __slots__ = ("stdout", "stderr", "hook_type")
    class HookType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        HOOK_TYPE_UNSPECIFIED: _ClassVar[CustomHookError.HookType]
        HOOK_TYPE_PRERECEIVE: _ClassVar[CustomHookError.HookType]
        HOOK_TYPE_UPDATE: _ClassVar[CustomHookError.HookType]
        HOOK_TYPE_POSTRECEIVE: _ClassVar[CustomHookError.HookType]
    HOOK_TYPE_UNSPECIFIED: CustomHookError.HookType
    HOOK_TYPE_PRERECEIVE: CustomHookError.HookType
    HOOK_TYPE_UPDATE: CustomHookError.HookType
    HOOK_TYPE_POSTRECEIVE: CustomHookError.HookType
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    HOOK_TYPE_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    hook_type: CustomHookError.HookType
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., hook_type: _Optional[_Union[CustomHookError.HookType, str]] = ...) -> None: ...

class PathError(_message.Message):
    __slots__ = ("path", "error_type")
    class ErrorType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ERROR_TYPE_UNSPECIFIED: _ClassVar[PathError.ErrorType]
        ERROR_TYPE_EMPTY_PATH: _ClassVar[PathError.ErrorType]
        ERROR_TYPE_RELATIVE_PATH_ESCAPES_REPOSITORY: _ClassVar[PathError.ErrorType]
        ERROR_TYPE_ABSOLUTE_PATH: _ClassVar[PathError.ErrorType]
        ERROR_TYPE_LONG_PATH: _ClassVar[PathError.ErrorType]
    ERROR_TYPE_UNSPECIFIED: PathError.ErrorType
    ERROR_TYPE_EMPTY_PATH: PathError.ErrorType
    ERROR_TYPE_RELATIVE_PATH_ESCAPES_REPOSITORY: PathError.ErrorType
    ERROR_TYPE_ABSOLUTE_PATH: PathError.ErrorType
    ERROR_TYPE_LONG_PATH: PathError.ErrorType
    PATH_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    path: bytes
    error_type: PathError.ErrorType
    def __init__(self, path: _Optional[bytes] = ..., error_type: _Optional[_Union[PathError.ErrorType, str]] = ...) -> None: ...

class PathNotFoundError(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: bytes
    def __init__(self, path: _Optional[bytes] = ...) -> None: ...

class AmbiguousReferenceError(_message.Message):
    __slots__ = ("reference",)
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    reference: bytes
    def __init__(self, reference: _Optional[bytes] = ...) -> None: ...

class BadObjectError(_message.Message):
    __slots__ = ("bad_oid",)
    BAD_OID_FIELD_NUMBER: _ClassVar[int]
    bad_oid: bytes
    def __init__(self, bad_oid: _Optional[bytes] = ...) -> None: ...

class InvalidRevisionRange(_message.Message):
    __slots__ = ("range",)
    RANGE_FIELD_NUMBER: _ClassVar[int]
    range: bytes
    def __init__(self, range: _Optional[bytes] = ...) -> None: ...

class RemoteNotFoundError(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
