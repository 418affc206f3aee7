from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class PackfileNegotiationStatistics(_message.Message):
    __slots__ = ("payload_size", "packets", "caps", "wants", "haves", "shallows", "deepen", "filter")
    PAYLOAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    CAPS_FIELD_NUMBER: _ClassVar[int]
    WANTS_FIELD_NUMBER: _ClassVar[int]
    HAVES_FIELD_NUMBER: _ClassVar[int]
    SHALLOWS_FIELD_NUMBER: _ClassVar[int]
    DEEPEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    payload_size: int
    packets: int
    caps: _containers.RepeatedScalarFieldContainer[str]
    wants: int
    haves: int
    shallows: int
    deepen: str
    filter: str
    def __init__(self, payload_size: _Optional[int] = ..., packets: _Optional[int] = ..., caps: _Optional[_Iterable[str]] = ..., wants: _Optional[int] = ..., haves: _Optional[int] = ..., shallows: _Optional[int] = ..., deepen: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...
