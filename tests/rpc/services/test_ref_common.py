"""RefService tests' shared helpers (expected answers built from the git CLI alone), and
the repository validation every RefService RPC shares.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from tests.helpers import Client, storage_path
from tests.helpers import repository as repository
from tests.repos import GIT_ENV, git, rich_repository
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import ref_pb2, shared_pb2

SERVICE = "/gitaly.RefService/"
MAX_MESSAGE = 10 * 1024  # Gitaly's cap on commit bodies and tag messages
OBJECT_FORMATS = ["sha1", "sha256"]


# rich_repository takes most of a second (its 5 MiB blob): each object format is built
# once per session into a template, and every test gets a copy of it.
_TEMPLATES: dict[str, tuple[str, dict[str, str]]] = {}


def rich(
    config: Config, object_format: str = "sha1", name: str = "rich.git"
) -> tuple[str, shared_pb2.Repository, dict[str, str]]:
    """rich_repository plus the refs it lacks: a non-UTF-8 branch, a remote-tracking
    branch, a branch pointing at a tag object, tags of a tree, a symbolic ref."""
    template = _TEMPLATES.get(object_format)
    if template is None:
        base = tempfile.mkdtemp(prefix="tg-ref-")
        atexit.register(shutil.rmtree, base, True)
        template = (os.path.join(base, "rich.git"), {})
        template[1].update(_build_rich(template[0], object_format))
        _TEMPLATES[object_format] = template
    path = os.path.join(storage_path(config), name)
    # Objects are never changed in place: linking them is safe and far faster than copying.
    shutil.copytree(template[0], path, symlinks=True, copy_function=_link_objects)
    return path, repository(name), dict(template[1])


def _link_objects(source: str, target: str) -> None:
    if f"{os.sep}objects{os.sep}" in source:
        os.link(source, target)
    else:
        shutil.copy2(source, target)


def _build_rich(path: str, object_format: str) -> dict[str, str]:
    oids = rich_repository(path, object_format)
    tree = git(path, "rev-parse", f"{oids['root']}^{{tree}}").decode().strip()
    run(path, "update-ref", b"refs/heads/caf\xe9-latin1", oids["latin1"])
    git(path, "update-ref", "refs/remotes/origin/feature", oids["feature"])
    # git refuses a branch on a tag object; written by hand, as old git or a push left it.
    with open(os.path.join(path, "refs", "heads", "tagged"), "w") as ref:
        ref.write(git(path, "rev-parse", "v1.0.0").decode())
    git(path, "update-ref", "refs/tags/tree-light", tree)
    git(path, "tag", "-a", "-m", "a tree\n", "tree-annotated", tree)
    git(path, "tag", "-a", "-m", "x" * (MAX_MESSAGE + 100) + "\n\n", "huge-message", oids["root"])
    git(path, "symbolic-ref", "refs/heads/sym", "refs/heads/feature")
    return oids


def pack_refs(path: str, names: list[str], oid: str) -> None:
    """Create many refs at once (update-ref writes and syncs a file per ref: slow)."""
    lines = sorted(f"{oid} {name}\n" for name in names)
    with open(os.path.join(path, "packed-refs"), "w") as packed:
        packed.write("# pack-refs with: peeled fully-peeled sorted \n" + "".join(lines))


def empty(
    config: Config, name: str = "empty.git", object_format: str = "sha1"
) -> tuple[str, shared_pb2.Repository]:
    path = os.path.join(storage_path(config), name)
    subprocess.run(
        ["git", "init", "--bare", "--quiet", f"--object-format={object_format}", path],
        check=True,
        env=GIT_ENV,
    )
    return path, repository(name)


def run(path: str, *args: str | bytes) -> bytes:
    """git with byte arguments (names that are not UTF-8)."""
    return subprocess.run(
        ["git", "-C", path, *args], check=True, env=GIT_ENV, capture_output=True
    ).stdout


def refs(path: str, *args: str) -> list[list[bytes]]:
    """`git for-each-ref` records: fields joined by %00 in the --format given."""
    out = run(path, "for-each-ref", *args)
    return [line.split(b"\0") for line in out.splitlines()]


def _split_object(raw: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    head, _, message = raw.partition(b"\n\n")
    headers = []
    for line in head.split(b"\n"):
        if line.startswith(b" "):
            continue
        key, _, value = line.partition(b" ")
        headers.append((key, value))
    return headers, message


def _author(value: bytes) -> shared_pb2.CommitAuthor:
    name, _, rest = value.partition(b" <")
    email, _, rest = rest.partition(b"> ")
    seconds, zone = rest.split(b" ")
    return shared_pb2.CommitAuthor(
        name=name, email=email, date=Timestamp(seconds=int(seconds)), timezone=zone
    )


def cli_commit(path: str, revision: str) -> shared_pb2.GitCommit:
    """The GitCommit Gitaly reports for `revision`, from `git cat-file` alone."""
    oid = git(path, "rev-parse", f"{revision}^{{commit}}").decode().strip()
    headers, message = _split_object(git(path, "cat-file", "commit", oid))
    fields = dict(headers)
    return shared_pb2.GitCommit(
        id=oid,
        subject=message.split(b"\n", 1)[0].rstrip(b"\r\n"),
        body=message[:MAX_MESSAGE],
        body_size=len(message),
        author=_author(fields[b"author"]),
        committer=_author(fields[b"committer"]),
        parent_ids=[value.decode() for key, value in headers if key == b"parent"],
        tree_id=fields[b"tree"].decode(),
        encoding=fields.get(b"encoding", b"").decode(),
    )


def cli_tag(path: str, refname: bytes) -> shared_pb2.Tag:
    """The Tag FindAllTags/FindTag report for the tag ref `refname`, from git alone."""
    name = refname.removeprefix(b"refs/tags/")
    oid = run(path, "rev-parse", refname).decode().strip()
    kind = git(path, "cat-file", "-t", oid).decode().strip()
    if kind == "commit":
        return shared_pb2.Tag(name=name, id=oid, target_commit=cli_commit(path, oid))
    if kind != "tag":
        return shared_pb2.Tag(name=name, id=oid)
    headers, message = _split_object(git(path, "cat-file", "tag", oid))
    trimmed = message.rstrip(b"\n")
    tag = shared_pb2.Tag(
        name=name,
        id=oid,
        message=trimmed[:MAX_MESSAGE],
        message_size=len(trimmed),
        tagger=_author(dict(headers)[b"tagger"]),
    )
    peeled = git(path, "rev-parse", f"{oid}^{{}}").decode().strip()
    if git(path, "cat-file", "-t", peeled).decode().strip() == "commit":
        tag.target_commit.CopyFrom(cli_commit(path, peeled))
    return tag


def new_repository(config: Config) -> tuple[str, shared_pb2.Repository]:
    """A fresh path in the storage for a repository, and its Repository message."""
    name = f"h{os.urandom(6).hex()}.git"
    return os.path.join(storage_path(config), name), repository(name)


def assert_status(error: grpc.RpcError, code: grpc.StatusCode, message: str) -> None:
    assert (error.code(), error.details()) == (code, message)


# -- every RPC validates its repository the same way ------------------------------------

_RPCS: list[tuple[str, type[Message], type[Message], bool, dict[str, Any]]] = [
    ("FindDefaultBranchName", ref_pb2.FindDefaultBranchNameRequest,
     ref_pb2.FindDefaultBranchNameResponse, False, {}),
    ("FindLocalBranches", ref_pb2.FindLocalBranchesRequest,
     ref_pb2.FindLocalBranchesResponse, True, {}),
    ("FindAllBranches", ref_pb2.FindAllBranchesRequest,
     ref_pb2.FindAllBranchesResponse, True, {}),
    ("FindBranch", ref_pb2.FindBranchRequest, ref_pb2.FindBranchResponse, False,
     {"name": b"main"}),
    ("FindAllTags", ref_pb2.FindAllTagsRequest, ref_pb2.FindAllTagsResponse, True, {}),
    ("FindTag", ref_pb2.FindTagRequest, ref_pb2.FindTagResponse, False, {"tag_name": b"v1"}),
    ("RefExists", ref_pb2.RefExistsRequest, ref_pb2.RefExistsResponse, False,
     {"ref": b"refs/heads/main"}),
    ("ListRefs", ref_pb2.ListRefsRequest, ref_pb2.ListRefsResponse, True,
     {"patterns": [b"refs/"]}),
    ("FindRefsByOID", ref_pb2.FindRefsByOIDRequest, ref_pb2.FindRefsByOIDResponse, False,
     {"oid": "a" * 40}),
    ("ListBranchNamesContainingCommit", ref_pb2.ListBranchNamesContainingCommitRequest,
     ref_pb2.ListBranchNamesContainingCommitResponse, True, {"commit_id": "a" * 40}),
    ("ListTagNamesContainingCommit", ref_pb2.ListTagNamesContainingCommitRequest,
     ref_pb2.ListTagNamesContainingCommitResponse, True, {"commit_id": "a" * 40}),
    ("GetTagMessages", ref_pb2.GetTagMessagesRequest, ref_pb2.GetTagMessagesResponse, True,
     {"tag_ids": ["a" * 40]}),
]  # fmt: skip

_BAD_REPOSITORIES = [
    (None, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
    (repository("x.git", storage="fake"), grpc.StatusCode.INVALID_ARGUMENT,
     "storage name not found"),
    (repository("missing.git"), grpc.StatusCode.NOT_FOUND, "repository not found"),
]  # fmt: skip


@pytest.mark.parametrize("rpc", _RPCS, ids=[rpc[0] for rpc in _RPCS])
@pytest.mark.parametrize("bad", _BAD_REPOSITORIES, ids=["unset", "storage", "missing"])
async def test_repository_is_validated_first(
    client: Client, rpc: tuple[str, type[Message], type[Message], bool, dict[str, Any]], bad: Any
) -> None:
    name, request_type, response_type, streaming, fields = rpc
    repo, code, message = bad
    request = request_type(**fields)
    if repo is not None:
        request.repository.CopyFrom(repo)  # type: ignore[attr-defined]
    if streaming:
        error = await client.stream_error(SERVICE + name, request, response_type)
    else:
        error = await client.error(SERVICE + name, request, response_type)
    assert_status(error, code, message)
