from trio_gitaly.rpc.gen.gitaly import errors_pb2 as _errors_pb2
from trio_gitaly.rpc.gen.gitaly import lint_pb2 as _lint_pb2
from trio_gitaly.rpc.gen.gitaly import shared_pb2 as _shared_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FindDefaultBranchNameRequest(_message.Message):
    __slots__ = ("repository", "head_only")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    HEAD_ONLY_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    head_only: bool
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., head_only: _Optional[bool] = ...) -> None: ...

class FindDefaultBranchNameResponse(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: bytes
    def __init__(self, name: _Optional[bytes] = ...) -> None: ...

class FindLocalBranchesRequest(_message.Message):
    __slots__ = ("repository", "sort_by", "pagination_params")
    class SortBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NAME: _ClassVar[FindLocalBranchesRequest.SortBy]
        UPDATED_ASC: _ClassVar[FindLocalBranchesRequest.SortBy]
        UPDATED_DESC: _ClassVar[FindLocalBranchesRequest.SortBy]
    NAME: FindLocalBranchesRequest.SortBy
    UPDATED_ASC: FindLocalBranchesRequest.SortBy
    UPDATED_DESC: FindLocalBranchesRequest.SortBy
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_PARAMS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    sort_by: FindLocalBranchesRequest.SortBy
    pagination_params: _shared_pb2.PaginationParameter
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., sort_by: _Optional[_Union[FindLocalBranchesRequest.SortBy, str]] = ..., pagination_params: _Optional[_Union[_shared_pb2.PaginationParameter, _Mapping]] = ...) -> None: ...

class FindLocalBranchesResponse(_message.Message):
    __slots__ = ("local_branches",)
    LOCAL_BRANCHES_FIELD_NUMBER: _ClassVar[int]
    local_branches: _containers.RepeatedCompositeFieldContainer[_shared_pb2.Branch]
    def __init__(self, local_branches: _Optional[_Iterable[_Union[_shared_pb2.Branch, _Mapping]]] = ...) -> None: ...

class FindAllBranchesRequest(_message.Message):
    __slots__ = ("repository", "merged_only", "merged_branches")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    MERGED_ONLY_FIELD_NUMBER: _ClassVar[int]
    MERGED_BRANCHES_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    merged_only: bool
    merged_branches: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., merged_only: _Optional[bool] = ..., merged_branches: _Optional[_Iterable[bytes]] = ...) -> None: ...

class FindAllBranchesResponse(_message.Message):
    __slots__ = ("branches",)
    class Branch(_message.Message):
        __slots__ = ("name", "target")
        NAME_FIELD_NUMBER: _ClassVar[int]
        TARGET_FIELD_NUMBER: _ClassVar[int]
        name: bytes
        target: _shared_pb2.GitCommit
        def __init__(self, name: _Optional[bytes] = ..., target: _Optional[_Union[_shared_pb2.GitCommit, _Mapping]] = ...) -> None: ...
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    branches: _containers.RepeatedCompositeFieldContainer[FindAllBranchesResponse.Branch]
    def __init__(self, branches: _Optional[_Iterable[_Union[FindAllBranchesResponse.Branch, _Mapping]]] = ...) -> None: ...

class FindTagRequest(_message.Message):
    __slots__ = ("repository", "tag_name")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAG_NAME_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    tag_name: bytes
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., tag_name: _Optional[bytes] = ...) -> None: ...

class FindTagResponse(_message.Message):
    __slots__ = ("tag",)
    TAG_FIELD_NUMBER: _ClassVar[int]
    tag: _shared_pb2.Tag
    def __init__(self, tag: _Optional[_Union[_shared_pb2.Tag, _Mapping]] = ...) -> None: ...

class FindTagError(_message.Message):
    __slots__ = ("tag_not_found",)
    TAG_NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    tag_not_found: _errors_pb2.ReferenceNotFoundError
    def __init__(self, tag_not_found: _Optional[_Union[_errors_pb2.ReferenceNotFoundError, _Mapping]] = ...) -> None: ...

class FindAllTagsRequest(_message.Message):
    __slots__ = ("repository", "sort_by", "pagination_params")
    class SortBy(_message.Message):
        __slots__ = ("key", "direction")
        class Key(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            REFNAME: _ClassVar[FindAllTagsRequest.SortBy.Key]
            CREATORDATE: _ClassVar[FindAllTagsRequest.SortBy.Key]
            VERSION_REFNAME: _ClassVar[FindAllTagsRequest.SortBy.Key]
        REFNAME: FindAllTagsRequest.SortBy.Key
        CREATORDATE: FindAllTagsRequest.SortBy.Key
        VERSION_REFNAME: FindAllTagsRequest.SortBy.Key
        KEY_FIELD_NUMBER: _ClassVar[int]
        DIRECTION_FIELD_NUMBER: _ClassVar[int]
        key: FindAllTagsRequest.SortBy.Key
        direction: _shared_pb2.SortDirection
        def __init__(self, key: _Optional[_Union[FindAllTagsRequest.SortBy.Key, str]] = ..., direction: _Optional[_Union[_shared_pb2.SortDirection, str]] = ...) -> None: ...
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_PARAMS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    sort_by: FindAllTagsRequest.SortBy
    pagination_params: _shared_pb2.PaginationParameter
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., sort_by: _Optional[_Union[FindAllTagsRequest.SortBy, _Mapping]] = ..., pagination_params: _Optional[_Union[_shared_pb2.PaginationParameter, _Mapping]] = ...) -> None: ...

class FindAllTagsResponse(_message.Message):
    __slots__ = ("tags",)
    TAGS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedCompositeFieldContainer[_shared_pb2.Tag]
    def __init__(self, tags: _Optional[_Iterable[_Union[_shared_pb2.Tag, _Mapping]]] = ...) -> None: ...

class RefExistsRequest(_message.Message):
    __slots__ = ("repository", "ref")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    ref: bytes
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., ref: _Optional[bytes] = ...) -> None: ...

class RefExistsResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: bool
    def __init__(self, value: _Optional[bool] = ...) -> None: ...

class FindBranchRequest(_message.Message):
    __slots__ = ("repository", "name")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    name: bytes
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., name: _Optional[bytes] = ...) -> None: ...

class FindBranchResponse(_message.Message):
    __slots__ = ("branch",)
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    branch: _shared_pb2.Branch
    def __init__(self, branch: _Optional[_Union[_shared_pb2.Branch, _Mapping]] = ...) -> None: ...

class ListBranchNamesContainingCommitRequest(_message.Message):
    __slots__ = ("repository", "commit_id", "limit")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    commit_id: str
    limit: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., commit_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListBranchNamesContainingCommitResponse(_message.Message):
    __slots__ = ("branch_names",)
    BRANCH_NAMES_FIELD_NUMBER: _ClassVar[int]
    branch_names: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, branch_names: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListTagNamesContainingCommitRequest(_message.Message):
    __slots__ = ("repository", "commit_id", "limit")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    COMMIT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    commit_id: str
    limit: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., commit_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListTagNamesContainingCommitResponse(_message.Message):
    __slots__ = ("tag_names",)
    TAG_NAMES_FIELD_NUMBER: _ClassVar[int]
    tag_names: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, tag_names: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetTagMessagesRequest(_message.Message):
    __slots__ = ("repository", "tag_ids")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    TAG_IDS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    tag_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., tag_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetTagMessagesResponse(_message.Message):
    __slots__ = ("message", "tag_id")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TAG_ID_FIELD_NUMBER: _ClassVar[int]
    message: bytes
    tag_id: str
    def __init__(self, message: _Optional[bytes] = ..., tag_id: _Optional[str] = ...) -> None: ...

class ListRefsRequest(_message.Message):
    __slots__ = ("repository", "patterns", "head", "sort_by", "pointing_at_oids", "peel_tags")
    class SortBy(_message.Message):
        __slots__ = ("key", "direction")
        class Key(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            REFNAME: _ClassVar[ListRefsRequest.SortBy.Key]
            CREATORDATE: _ClassVar[ListRefsRequest.SortBy.Key]
            AUTHORDATE: _ClassVar[ListRefsRequest.SortBy.Key]
            COMMITTERDATE: _ClassVar[ListRefsRequest.SortBy.Key]
        REFNAME: ListRefsRequest.SortBy.Key
        CREATORDATE: ListRefsRequest.SortBy.Key
        AUTHORDATE: ListRefsRequest.SortBy.Key
        COMMITTERDATE: ListRefsRequest.SortBy.Key
        KEY_FIELD_NUMBER: _ClassVar[int]
        DIRECTION_FIELD_NUMBER: _ClassVar[int]
        key: ListRefsRequest.SortBy.Key
        direction: _shared_pb2.SortDirection
        def __init__(self, key: _Optional[_Union[ListRefsRequest.SortBy.Key, str]] = ..., direction: _Optional[_Union[_shared_pb2.SortDirection, str]] = ...) -> None: ...
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    SORT_BY_FIELD_NUMBER: _ClassVar[int]
    POINTING_AT_OIDS_FIELD_NUMBER: _ClassVar[int]
    PEEL_TAGS_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    patterns: _containers.RepeatedScalarFieldContainer[bytes]
    head: bool
    sort_by: ListRefsRequest.SortBy
    pointing_at_oids: _containers.RepeatedScalarFieldContainer[bytes]
    peel_tags: bool
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., patterns: _Optional[_Iterable[bytes]] = ..., head: _Optional[bool] = ..., sort_by: _Optional[_Union[ListRefsRequest.SortBy, _Mapping]] = ..., pointing_at_oids: _Optional[_Iterable[bytes]] = ..., peel_tags: _Optional[bool] = ...) -> None: ...

class ListRefsResponse(_message.Message):
    __slots__ = ("references",)
    class Reference(_message.Message):
        __slots__ = ("name", "target", "peeled_target")
        NAME_FIELD_NUMBER: _ClassVar[int]
        TARGET_FIELD_NUMBER: _ClassVar[int]
        PEELED_TARGET_FIELD_NUMBER: _ClassVar[int]
        name: bytes
        target: str
        peeled_target: str
        def __init__(self, name: _Optional[bytes] = ..., target: _Optional[str] = ..., peeled_target: _Optional[str] = ...) -> None: ...
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    references: _containers.RepeatedCompositeFieldContainer[ListRefsResponse.Reference]
    def __init__(self, references: _Optional[_Iterable[_Union[ListRefsResponse.Reference, _Mapping]]] = ...) -> None: ...

class FindRefsByOIDRequest(_message.Message):
    __slots__ = ("repository", "oid", "ref_patterns", "sort_field", "limit")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    OID_FIELD_NUMBER: _ClassVar[int]
    REF_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    repository: _shared_pb2.Repository
    oid: str
    ref_patterns: _containers.RepeatedScalarFieldContainer[str]
    sort_field: str
    limit: int
    def __init__(self, repository: _Optional[_Union[_shared_pb2.Repository, _Mapping]] = ..., oid: _Optional[str] = ..., ref_patterns: _Optional[_Iterable[str]] = ..., sort_field: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class FindRefsByOIDResponse(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, refs: _Optional[_Iterable[str]] = ...) -> None: ...
