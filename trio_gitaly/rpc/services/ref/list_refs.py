"""ListRefs, FindRefsByOID, RefExists and the ref names containing a commit: answers from
reference names and ids alone, no object content read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.refs import (
    RefListingError,
    for_each_ref,
    object_format,
    validate_object_id,
)
from trio_gitaly.rpc.gen.gitaly import ref_pb2, shared_pb2
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.rpc.services.ref.branches import as_argument, refuse_dash_patterns
from trio_gitaly.rpc.streaming import MESSAGE_BUDGET_BYTES, Batcher

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from google.protobuf.message import Message

    from trio_gitaly.rpc.call import ServerCall

#: ListRefsRequest.SortBy.Key -> for-each-ref --sort key.
LIST_SORT_KEYS: Final = {
    ref_pb2.ListRefsRequest.SortBy.REFNAME: "refname",
    ref_pb2.ListRefsRequest.SortBy.CREATORDATE: "creatordate",
    ref_pb2.ListRefsRequest.SortBy.AUTHORDATE: "authordate",
    ref_pb2.ListRefsRequest.SortBy.COMMITTERDATE: "committerdate",
}
SORT_DIRECTIONS: Final = {shared_pb2.ASCENDING: "", shared_pb2.DESCENDING: "-"}
#: What FindRefsByOID searches when the request names no patterns.
DEFAULT_OID_PATTERNS: Final = ("refs/tags/", "refs/heads/")
# git's exit status for bad usage: an unknown or too short object name, for one.
_USAGE_EXIT_STATUS: Final = 129


class NameBatcher:
    """Reference names in messages under MESSAGE_BUDGET_BYTES (Gitaly's chunker rule)."""

    def __init__(self, call: ServerCall, make: Callable[[list[bytes]], Message]) -> None:
        self._call = call
        self._make = make
        self._names: list[bytes] = []
        self._size = 0

    async def add(self, name: bytes, counted: bytes) -> None:
        """Queue `name`; `counted` is what Gitaly sizes it by (the full ref name).

        Cancellation: raises Cancelled while a full message waits for the client.
        """
        # A protobuf string field: tag, length varint, bytes.
        size = 1 + _varint_size(len(counted)) + len(counted)
        if self._names and self._size + size >= MESSAGE_BUDGET_BYTES:
            await self.flush()
        self._names.append(name)
        self._size += size

    async def flush(self) -> None:
        """Send what is pending, if anything."""
        if self._names:
            names, self._names, self._size = self._names, [], 0
            await self._call.send(self._make(names))


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


class RefListing(ServiceBase):
    """ListRefs, FindRefsByOID, RefExists, ListBranchNamesContainingCommit,
    ListTagNamesContainingCommit."""

    async def ListRefs(self, request: ref_pb2.ListRefsRequest, call: ServerCall) -> None:
        """References matching the patterns (for-each-ref's rules), with HEAD first when
        asked for and at least one reference matched; optionally peeled tags and only
        those pointing at given ids.

        Cancellation: for-each-ref is killed.
        """
        repo = open_repo(self._deps.locator, request.repository)
        if not request.patterns:
            raise invalid_argument("patterns must have at least one entry")
        if request.HasField("sort_by"):
            if request.sort_by.key not in LIST_SORT_KEYS:
                raise invalid_argument(f'sorting key "{request.sort_by.key}" is not supported')
            if request.sort_by.direction not in SORT_DIRECTIONS:
                raise invalid_argument("sorting direction is not supported")
        head = b""
        if request.head:
            result = await self._deps.git.run(
                GitCommand("rev-parse", flags=["--verify"], args=["HEAD"]),
                repo_path=repo.path,
                env=repo.env(),
                check=False,
            )
            if result.returncode == 0:
                head = result.stdout.strip()
        patterns = [as_argument(pattern) for pattern in request.patterns]
        refuse_dash_patterns(patterns, "spawning for-each-ref: ")
        fields = (
            ("refname", "objectname", "*objectname")
            if request.peel_tags
            else (
                "refname",
                "objectname",
            )
        )
        sort = SORT_DIRECTIONS[request.sort_by.direction] + LIST_SORT_KEYS[request.sort_by.key]
        batch: Batcher[ref_pb2.ListRefsResponse.Reference] = Batcher(
            call, lambda items: ref_pb2.ListRefsResponse(references=items)
        )
        Reference = ref_pb2.ListRefsResponse.Reference
        async with for_each_ref(
            self._deps.git,
            repo.path,
            env=repo.env(),
            fields=fields,
            patterns=patterns,
            sort=sort,
            points_at=[as_argument(oid) for oid in request.pointing_at_oids],
        ) as records:
            async for record in records:
                if head:
                    await batch.add(Reference(name=b"HEAD", target=head.decode()))
                    head = b""
                reference = Reference(name=record[0], target=record[1].decode())
                if request.peel_tags:
                    reference.peeled_target = record[2].decode()
                await batch.add(reference)
        await batch.flush()

    async def FindRefsByOID(
        self, request: ref_pb2.FindRefsByOIDRequest, call: ServerCall
    ) -> ref_pb2.FindRefsByOIDResponse:
        """Full names of the refs (tags and branches unless patterns say otherwise)
        pointing at `oid` (an id or a unique prefix), sorted, at most `limit`.

        Cancellation: for-each-ref is killed.
        """
        repo = open_repo(self._deps.locator, request.repository)
        if not request.oid:
            raise invalid_argument("empty Oid")
        patterns: Sequence[str] = list(request.ref_patterns) or DEFAULT_OID_PATTERNS
        refuse_dash_patterns(patterns, "")
        names: list[bytes] = []
        try:
            async with for_each_ref(
                self._deps.git,
                repo.path,
                env=repo.env(),
                fields=("refname",),
                patterns=patterns,
                sort=request.sort_field,
                points_at=[request.oid],
                count=request.limit,
            ) as records:
                names = [name async for (name,) in records]
        except RefListingError as error:
            code = (
                StatusCode.INVALID_ARGUMENT
                if error.returncode == _USAGE_EXIT_STATUS
                else StatusCode.INTERNAL
            )
            raise GitalyError(
                code, f"for-each-ref pipeline command: exit status {error.returncode}"
            ) from error
        try:
            refs = [name.decode() for name in names]
        except UnicodeDecodeError:
            # `refs` is a proto string: Gitaly's marshalling refuses such a name too.
            raise internal(
                "grpc: error while marshaling: string field contains invalid UTF-8"
            ) from None
        return ref_pb2.FindRefsByOIDResponse(refs=refs)

    async def RefExists(
        self, request: ref_pb2.RefExistsRequest, call: ServerCall
    ) -> ref_pb2.RefExistsResponse:
        """Whether the fully qualified reference exists (it must start with "refs/").

        Cancellation: show-ref is killed.
        """
        repo = open_repo(self._deps.locator, request.repository)
        if not request.ref.startswith(b"refs/"):
            raise invalid_argument("invalid refname")
        result = await self._deps.git.run(
            GitCommand("show-ref", flags=["--verify", "--quiet"], args=[as_argument(request.ref)]),
            repo_path=repo.path,
            env=repo.env(),
            check=False,
        )
        if result.returncode not in (0, 1):
            raise internal(f"exit status {result.returncode}")
        return ref_pb2.RefExistsResponse(value=result.returncode == 0)

    async def ListBranchNamesContainingCommit(
        self, request: ref_pb2.ListBranchNamesContainingCommitRequest, call: ServerCall
    ) -> None:
        """Short names of the branches whose history contains the commit (at most
        `limit`, 0 for all), in name order.

        Cancellation: for-each-ref is killed.
        """
        await self._names_containing(
            request,
            call,
            "refs/heads",
            lambda names: ref_pb2.ListBranchNamesContainingCommitResponse(branch_names=names),
        )

    async def ListTagNamesContainingCommit(
        self, request: ref_pb2.ListTagNamesContainingCommitRequest, call: ServerCall
    ) -> None:
        """Short names of the tags whose history contains the commit (at most `limit`,
        0 for all), in name order.

        Cancellation: for-each-ref is killed.
        """
        await self._names_containing(
            request,
            call,
            "refs/tags",
            lambda names: ref_pb2.ListTagNamesContainingCommitResponse(tag_names=names),
        )

    async def _names_containing(
        self,
        request: ref_pb2.ListBranchNamesContainingCommitRequest
        | ref_pb2.ListTagNamesContainingCommitRequest,
        call: ServerCall,
        prefix: str,
        make: Callable[[list[bytes]], Message],
    ) -> None:
        repo = open_repo(self._deps.locator, request.repository)
        fmt = await object_format(self._deps.git, repo.path, repo.env())
        commit_id = validate_object_id(request.commit_id, fmt)
        strip = prefix.encode() + b"/"
        batch = NameBatcher(call, make)
        try:
            async with for_each_ref(
                self._deps.git,
                repo.path,
                env=repo.env(),
                fields=("refname",),
                patterns=(prefix,),
                contains=commit_id,
                count=request.limit,
            ) as records:
                async for (name,) in records:
                    await batch.add(name.removeprefix(strip), name)
        except RefListingError as error:
            raise internal(f"exit status {error.returncode}") from error
        await batch.flush()
