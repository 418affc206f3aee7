from trio_gitaly.rpc.gen.gitaly import lint_pb2 as _lint_pb2
from trio_gitaly.rpc.gen.gitaly import shared_pb2 as _shared_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PreReceiveHookRequest(_message.Message):
    __slots__ = ("repository", "environment_variables", "stdin", "git_push_options")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    GIT_PUSH_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    environment_variables: _containers.RepeatedScalarFieldContainer[str]
    stdin: bytes
    git_push_options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., environment_variables: _Optional[_Iterable[str]] = ..., stdin: _Optional[bytes] = ..., git_push_options: _Optional[_Iterable[str]] = ...) -> None: ...

class PreReceiveHookResponse(_message.Message):
    __slots__ = ("stdout", "stderr", "exit_status")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    exit_status: _shared_pb2.ExitStatus
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit_status: _Optional[_Union[_shared_pb2.ExitStatus, _Mapping]] = ...) -> None: ...

class PostReceiveHookRequest(_message.Message):
    __slots__ = ("repository", "environment_variables", "stdin", "git_push_options")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    GIT_PUSH_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    environment_variables: _containers.RepeatedScalarFieldContainer[str]
    stdin: bytes
    git_push_options: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., environment_variables: _Optional[_Iterable[str]] = ..., stdin: _Optional[bytes] = ..., git_push_options: _Optional[_Iterable[str]] = ...) -> None: ...

class PostReceiveHookResponse(_message.Message):
    __slots__ = ("stdout", "stderr", "exit_status")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    exit_status: _shared_pb2.ExitStatus
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit_status: _Optional[_Union[_shared_pb2.ExitStatus, _Mapping]] = ...) -> None: ...

class UpdateHookRequest(_message.Message):
    __slots__ = ("repository", "environment_variables", "ref", "old_value", "new_value")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    OLD_VALUE_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    environment_variables: _containers.RepeatedScalarFieldContainer[str]
    ref: bytes
    old_value: str
    new_value: str
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., environment_variables: _Optional[_Iterable[str]] = ..., ref: _Optional[bytes] = ..., old_value: _Optional[str] = ..., new_value: _Optional[str] = ...) -> None: ...

class UpdateHookResponse(_message.Message):
    __slots__ = ("stdout", "stderr", "exit_status")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    exit_status: _shared_pb2.ExitStatus
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit_status: _Optional[_Union[_shared_pb2.ExitStatus, _Mapping]] = ...) -> None: ...

class ReferenceTransactionHookRequest(_message.Message):
    __slots__ = ("repository", "environment_variables", "stdin", "state")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PREPARED: _ClassVar[ReferenceTransactionHookRequest.State]
        COMMITTED: _ClassVar[ReferenceTransactionHookRequest.State]
        ABORTED: _ClassVar[ReferenceTransactionHookRequest.State]
    PREPARED: ReferenceTransactionHookRequest.State
    COMMITTED: ReferenceTransactionHookRequest.State
    ABORTED: ReferenceTransactionHookRequest.State
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    environment_variables: _containers.RepeatedScalarFieldContainer[str]
    stdin: bytes
    state: ReferenceTransactionHookRequest.State
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., environment_variables: _Optional[_Iterable[str]] = ..., stdin: _Optional[bytes] = ..., state: _Optional[_Union[ReferenceTransactionHookRequest.State, str]] = ...) -> None: ...

class ReferenceTransactionHookResponse(_message.Message):
    __slots__ = ("stdout", "stderr", "exit_status")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    exit_status: _shared_pb2.ExitStatus
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit_status: _Optional[_Union[_shared_pb2.ExitStatus, _Mapping]] = ...) -> None: ...

class PackObjectsHookWithSidechannelRequest(_message.Message):
    __slots__ = ("repository", "args", "gl_id", "gl_username", "git_protocol", "remote_ip")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    GL_ID_FIELD_NUMBER: _ClassVar[int]
    GL_USERNAME_FIELD_NUMBER: _ClassVar[int]
    GIT_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    REMOTE_IP_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    args: _containers.RepeatedScalarFieldContainer[str]
    gl_id: str
    gl_username: str
    git_protocol: str
    remote_ip: str
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., args: _Optional[_Iterable[str]] = ..., gl_id: _Optional[str] = ..., gl_username: _Optional[str] = ..., git_protocol: _Optional[str] = ..., remote_ip: _Optional[str] = ...) -> None: ...

class PackObjectsHookWithSidechannelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProcReceiveHookRequest(_message.Message):
    __slots__ = ("repository", "environment_variables", "stdin")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_VARIABLES_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    environment_variables: _containers.RepeatedScalarFieldContainer[str]
    stdin: bytes
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., environment_variables: _Optional[_Iterable[str]] = ..., stdin: _Optional[bytes] = ...) -> None: ...

class ProcReceiveHookResponse(_message.Message):
    __slots__ = ("stdout", "stderr", "exit_status")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    EXIT_STATUS_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    exit_status: _shared_pb2.ExitStatus
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., exit_status: _Optional[_Union[_shared_pb2.ExitStatus, _Mapping]] = ...) -> None: ...
