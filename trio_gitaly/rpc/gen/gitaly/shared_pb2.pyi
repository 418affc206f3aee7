from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ObjectType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[ObjectType]
    COMMIT: _ClassVar[ObjectType]
    BLOB: _ClassVar[ObjectType]
    TREE: _ClassVar[ObjectType]
    TAG: _ClassVar[ObjectType]

class ObjectFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBJECT_FORMAT_UNSPECIFIED: _ClassVar[ObjectFormat]
    OBJECT_FORMAT_SHA1: _ClassVar[ObjectFormat]
    OBJECT_FORMAT_SHA256: _ClassVar[ObjectFormat]
UNKNOWN: ObjectType
COMMIT: ObjectType
BLOB: ObjectType
TREE: ObjectType
TAG: ObjectType
OBJECT_FORMAT_UNSPECIFIED: ObjectFormat
OBJECT_FORMAT_SHA1: ObjectFormat
OBJECT_FORMAT_SHA256: ObjectFormat

class Repository(_message.Message):
    __slots__ = ("storage_name", "relative_path", "git_object_directory", "git_alternate_object_directories", "gl_repository", "gl_project_path")
    STORAGE_NAME_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_PATH_FIELD_NUMBER: _ClassVar[int]
    GIT_OBJECT_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    GIT_ALTERNATE_OBJECT_DIRECTORIES_FIELD_NUMBER: _ClassVar[int]
    GL_REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    GL_PROJECT_PATH_FIELD_NUMBER: _ClassVar[int]
    storage_name: str
    relative_path: str
    git_object_directory: str
    git_alternate_object_directories: _containers.RepeatedScalarFieldContainer[str]
    gl_repository: str
    gl_project_path: str
    def __init__(self, storage_name: _Optional[str] = ..., relative_path: _Optional[str] = ..., git_object_directory: _Optional[str] = ..., git_alternate_object_directories: _Optional[_Iterable[str]] = ..., gl_repository: _Optional[str] = ..., gl_project_path: _Optional[str] = ...) -> None: ...
