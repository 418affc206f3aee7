"""FindAllTags, FindTag and GetTagMessages: tags with their messages and target commits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.command import READ_CHUNK_BYTES
from trio_gitaly.git.objects import parse_tag
from trio_gitaly.git.refs import RefListingError, for_each_ref, read_small_object
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.gen.gitaly import errors_pb2, ref_pb2, shared_pb2
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.rpc.services.ref.branches import as_argument
from trio_gitaly.rpc.services.ref.targets import PageWindow, open_targets
from trio_gitaly.rpc.streaming import Batcher, chunks

if TYPE_CHECKING:
    from trio_gitaly.rpc.call import ServerCall
    from trio_gitaly.rpc.services.ref.targets import TargetReader

#: FindAllTagsRequest.SortBy.Key -> for-each-ref --sort key.
TAG_SORT_KEYS: Final = {
    ref_pb2.FindAllTagsRequest.SortBy.REFNAME: "refname",
    ref_pb2.FindAllTagsRequest.SortBy.CREATORDATE: "creatordate",
    ref_pb2.FindAllTagsRequest.SortBy.VERSION_REFNAME: "version:refname",
}
#: SortDirection -> the --sort prefix.
SORT_DIRECTIONS: Final = {shared_pb2.ASCENDING: "", shared_pb2.DESCENDING: "-"}
_TAGS: Final = b"refs/tags/"
# `git tag -l` prints "<id> <type> <name>" per matching tag, in name order.
_TAG_LINE_FORMAT: Final = "--format=%(objectname) %(objecttype) %(refname:lstrip=2)"
# A `git tag -l` line is an id, a type word and a ref name: far below this.
_MAX_TAG_LINE_BYTES: Final = 64 * 1024


def tag_sort(request: ref_pb2.FindAllTagsRequest) -> str:
    """The --sort key FindAllTags asks for ("" for git's default, by name)."""
    if not request.HasField("sort_by"):
        return ""
    direction = SORT_DIRECTIONS.get(request.sort_by.direction)
    if direction is None:
        raise invalid_argument(f"unsupported sorting direction: {request.sort_by.direction}")
    key = TAG_SORT_KEYS.get(request.sort_by.key)
    if key is None:
        raise invalid_argument(f"unsupported sorting key: {request.sort_by.key}")
    return direction + key


class Tags(ServiceBase):
    """FindAllTags, FindTag, GetTagMessages."""

    async def FindAllTags(self, request: ref_pb2.FindAllTagsRequest, call: ServerCall) -> None:
        """refs/tags/*: annotated tags with message, tagger and peeled target commit,
        others with their commit (or just the id for trees and blobs); sorted, paginated.

        Cancellation: for-each-ref is killed and the cat-file process discarded.
        """
        repo = open_repo(self._deps.locator, request.repository)
        sort = tag_sort(request)
        window = PageWindow(
            request.pagination_params if request.HasField("pagination_params") else None
        )
        batch: Batcher[shared_pb2.Tag] = Batcher(
            call, lambda items: ref_pb2.FindAllTagsResponse(tags=items)
        )
        async with open_targets(self._deps, repo) as targets:
            try:
                async with for_each_ref(
                    self._deps.git,
                    repo.path,
                    env=repo.env(),
                    fields=("refname", "objectname"),
                    patterns=("refs/tags/",),
                    sort=sort,
                ) as records:
                    while not window.full and (record := await records.next()) is not None:
                        name, oid = record
                        # Tags before the page token are skipped unread: only their
                        # names decide where the page starts.
                        if window.admit(name):
                            tag = await targets.tag(oid.decode(), name.removeprefix(_TAGS))
                            await batch.add(tag)
            except RefListingError as error:
                raise internal(
                    "iterating over tags: for-each-ref pipeline command: "
                    f"exit status {error.returncode}"
                ) from error
        window.check("could not find page token")
        await batch.flush()

    async def FindTag(
        self, request: ref_pb2.FindTagRequest, call: ServerCall
    ) -> ref_pb2.FindTagResponse:
        """The tag `git tag -l <tag_name>` lists first (the name is a pattern, as in
        Gitaly); NOT_FOUND with FindTagError.tag_not_found when there is none.

        Cancellation: git and a mid-read cat-file process are killed.
        """
        repo = open_repo(self._deps.locator, request.repository)
        if not request.tag_name:
            raise invalid_argument("tag name is empty")
        pattern = as_argument(request.tag_name)
        if pattern.startswith("-"):
            raise internal(
                f"for-each-ref error: positional arg {go_quote(pattern)} cannot start with "
                "dash '-': invalid argument"
            )
        line = await self._first_tag_line(repo.path, repo.env(), pattern)
        fields = line.split(b" ", 2) if line else []
        if len(fields) != 3:
            if line:
                raise internal("parsing tag: invalid output from for-each-ref command")
            raise GitalyError(
                StatusCode.NOT_FOUND,
                "tag does not exist",
                detail=ref_pb2.FindTagError(
                    tag_not_found=errors_pb2.ReferenceNotFoundError(
                        reference_name=_TAGS + request.tag_name
                    )
                ),
            )
        oid, kind, name = fields[0].decode(), fields[1], fields[2]
        async with open_targets(self._deps, repo) as targets:
            tag = await _tag_from_line(targets, oid, kind, name)
        return ref_pb2.FindTagResponse(tag=tag)

    async def _first_tag_line(self, repo_path: str, env: dict[str, str], pattern: str) -> bytes:
        """The first line `git tag -l` prints for `pattern`, or b"" (git is not waited for,
        as Gitaly does not: no line means no tag, whatever the reason).

        Cancellation: git is killed and reaped.
        """
        command = GitCommand("tag", flags=["-l", _TAG_LINE_FORMAT], args=[pattern])
        buffer = bytearray()
        async with self._deps.git.spawn(command, repo_path=repo_path, env=env) as process:
            assert process.stdout is not None
            while b"\n" not in buffer and len(buffer) <= _MAX_TAG_LINE_BYTES:
                chunk = await process.stdout.receive_some(READ_CHUNK_BYTES)
                if not chunk:
                    break
                buffer += chunk
        return bytes(buffer).partition(b"\n")[0]

    async def GetTagMessages(
        self, request: ref_pb2.GetTagMessagesRequest, call: ServerCall
    ) -> None:
        """For each tag id: a message with the id, then the tag's whole message (as
        stored, signature included) in 128 KiB pieces.

        Cancellation: the cat-file process is discarded if it was mid-read.
        """
        repo = open_repo(self._deps.locator, request.repository)
        async with self._deps.catfile.reader(
            repo.path,
            object_dir=repo.object_dirs.object_dir,
            alternate_dirs=repo.object_dirs.alternates,
        ) as reader:
            for tag_id in request.tag_ids:
                found = await read_small_object(reader, tag_id)
                if found is None:
                    raise internal("getting tag: object not found", revision=tag_id)
                info, data = found
                if info.type != "tag" or data is None:
                    raise internal(f"getting tag: expected tag, got {info.type}")
                message = parse_tag(info.oid, data).message
                await call.send(ref_pb2.GetTagMessagesResponse(tag_id=tag_id))
                if message:
                    for piece in chunks(message):
                        await call.send(ref_pb2.GetTagMessagesResponse(message=piece))


async def _tag_from_line(
    targets: TargetReader, oid: str, kind: bytes, name: bytes
) -> shared_pb2.Tag:
    """A `git tag -l` line's tag: annotated tags read in full, commits as their commit."""
    if kind == b"tag":
        found = await read_small_object(targets.reader, oid)
        if found is None or found[1] is None:
            raise internal("parsing tag: getting annotated tag: object not found", revision=oid)
        return await targets.annotated_tag(found[0].oid, found[1], name)
    if kind == b"commit":
        return shared_pb2.Tag(name=name, id=oid, target_commit=await targets.commit(oid))
    return shared_pb2.Tag(name=name, id=oid)
