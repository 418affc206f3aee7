"""DiffService.FindChangedPaths over a real server, compared with `git diff-tree`.

The reference runs one plain `git diff-tree -r -z` per comparison (a merge under
INCLUDE_MERGES is compared with each parent in turn; ALL_PARENTS is git's combined -c
output), where the server feeds all requests to one `diff-tree --stdin`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Client
from tests.repos import FastImport, build_history, git, histories, rich_repository
from tests.rpc.services.test_diff_common import FORMATS, SERVICE, new_repo, own_server, repo
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import diff_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2

METHOD = SERVICE + "FindChangedPaths"
Request = pb.FindChangedPathsRequest
Status = pb.ChangedPaths
STATUS = {"M": Status.MODIFIED, "D": Status.DELETED, "T": Status.TYPE_CHANGE}
STATUS |= {"C": Status.COPIED, "A": Status.ADDED, "R": Status.RENAMED}
MODES = [
    Request.MERGE_COMMIT_DIFF_MODE_UNSPECIFIED,
    Request.MERGE_COMMIT_DIFF_MODE_INCLUDE_MERGES,
    Request.MERGE_COMMIT_DIFF_MODE_ALL_PARENTS,
]


def commit_request(commit: str, *parents: str) -> Request.Request:
    return Request.Request(
        commit_request=Request.Request.CommitRequest(
            commit_revision=commit, parent_commit_revisions=parents
        )
    )


def tree_request(left: str, right: str) -> Request.Request:
    return Request.Request(
        tree_request=Request.Request.TreeRequest(left_tree_revision=left, right_tree_revision=right)
    )


async def changed_paths(client: Client, request: Request) -> list[pb.ChangedPaths]:
    responses: list[pb.FindChangedPathsResponse] = await client.stream(
        METHOD, request, pb.FindChangedPathsResponse
    )
    assert all(r.paths and r.ByteSize() < 1024 * 1024 for r in responses)
    return [path for response in responses for path in response.paths]


def diff_tree(
    path: str, *args: str, renames: bool = False, stdin: bytes | None = None
) -> list[pb.ChangedPaths]:
    """`git diff-tree -r -z` of one comparison, as ChangedPaths."""
    rename = "--find-renames=30%" if renames else "--no-renames"
    flags = ["-r", "-z", "--root", "--no-commit-id", "--diff-filter=AMDTCR", rename]
    fields = git(path, "diff-tree", *flags, *args, input=stdin).split(b"\0")
    out: list[pb.ChangedPaths] = []
    index = 0
    while index < len(fields):
        header = fields[index]
        if not header.startswith(b":"):
            index += 1  # the echoed object ids of a tree pair
            continue
        sources = len(header) - len(header.lstrip(b":"))
        values = header[sources:].decode().split(" ")
        modes, oids, status = values[: sources + 1], values[sources + 1 : -1], values[-1]
        letters = [ch for ch in status if ch in STATUS]
        old_path = b""
        index += 1
        if sources == 1 and letters[0] in "RC":
            old_path = fields[index]
            index += 1
        name = fields[index]
        index += 1
        for source, letter in enumerate(letters):
            out.append(
                pb.ChangedPaths(
                    path=name,
                    old_path=old_path,
                    status=STATUS[letter],
                    old_mode=int(modes[source], 8),
                    new_mode=int(modes[-1], 8),
                    old_blob_id=oids[source],
                    new_blob_id=oids[-1],
                )
            )
    return out


def parents(path: str, commit: str) -> list[str]:
    return git(path, "rev-parse", f"{commit}^@").decode().split()


def expected_commit(
    path: str, commit: str, mode: int, renames: bool, given_parents: Sequence[str] = ()
) -> list[pb.ChangedPaths]:
    bases = list(given_parents) or parents(path, commit)
    if not bases:
        return diff_tree(path, commit, renames=renames)  # a root commit: against nothing
    if len(bases) > 1 and mode == Request.MERGE_COMMIT_DIFF_MODE_ALL_PARENTS:
        if not given_parents:
            return diff_tree(path, "-c", commit, renames=renames)
        # Only --stdin takes a commit's parents from the caller.
        line = " ".join([commit, *bases]).encode() + b"\n"
        return diff_tree(path, "-c", "--stdin", renames=renames, stdin=line)
    return [p for base in bases for p in diff_tree(path, base, commit, renames=renames)]


@pytest.mark.parametrize("object_format", FORMATS)
async def test_rich_repository_commits(client: Client, config: Config, object_format: str) -> None:
    path = new_repo(config, "rich.git")
    oids = rich_repository(path, object_format)
    for mode in MODES:
        for renames in (False, True):
            request = Request(
                repository=repo("rich.git"),
                requests=[commit_request(oid) for oid in oids.values()],
                merge_commit_diff_mode=mode,
                find_renames=renames,
            )
            expected = [
                p for oid in oids.values() for p in expected_commit(path, oid, mode, renames)
            ]
            assert await changed_paths(client, request) == expected, (mode, renames)
    # The deprecated field: commits compared with their parents.
    request = Request(repository=repo("rich.git"), commits=list(oids.values()))
    expected = [p for oid in oids.values() for p in expected_commit(path, oid, MODES[0], False)]
    assert await changed_paths(client, request) == expected
    renamed = await changed_paths(
        client,
        Request(
            repository=repo("rich.git"), requests=[commit_request("main~3")], find_renames=True
        ),
    )
    assert [(p.status, p.old_path, p.path) for p in renamed] == [
        (Status.RENAMED, b"docs/guide.md", b"docs/manual.md")
    ]


@pytest.mark.parametrize("object_format", FORMATS)
async def test_trees_parents_refs_and_tags(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_repo(config, "rich.git")
    oids = rich_repository(path, object_format)

    def tree(revision: str) -> str:
        return git(path, "rev-parse", f"{revision}^{{tree}}").decode().strip()

    empty_tree = git(path, "hash-object", "-t", "tree", "/dev/null").decode().strip()
    requests = [
        tree_request(empty_tree, "main"),
        tree_request(tree(oids["root"]), tree(oids["submodule"])),
        tree_request(oids["submodule"], oids["root"]),  # commits peel to their trees
        tree_request("v1.0.0", "main"),
        commit_request(oids["submodule"], oids["root"], oids["feature"]),
        commit_request("v2.0.0", "main~4"),  # an annotated tag peels to its commit
        commit_request("feature"),
    ]
    expected = diff_tree(path, empty_tree, tree("main"))
    expected += diff_tree(path, tree(oids["root"]), tree(oids["submodule"]))
    expected += diff_tree(path, tree(oids["submodule"]), tree(oids["root"]))
    expected += diff_tree(path, tree("v1.0.0"), tree("main"))
    expected += expected_commit(path, oids["submodule"], 0, False, [oids["root"], oids["feature"]])
    expected += diff_tree(path, "main~4", "v2.0.0^{commit}")
    expected += expected_commit(path, "feature", 0, False)
    for mode in MODES[:2]:
        request = Request(
            repository=repo("rich.git"), requests=requests, merge_commit_diff_mode=mode
        )
        assert await changed_paths(client, request) == expected
    # Two given parents under ALL_PARENTS: one combined entry per path changed from both.
    request = Request(
        repository=repo("rich.git"),
        requests=[commit_request(oids["submodule"], oids["root"], oids["feature"])],
        merge_commit_diff_mode=Request.MERGE_COMMIT_DIFF_MODE_ALL_PARENTS,
    )
    combined = expected_commit(
        path, oids["submodule"], MODES[2], False, [oids["root"], oids["feature"]]
    )
    assert await changed_paths(client, request) == combined
    assert len(combined) > 2


async def test_octopus_merge_all_parents(client: Client, config: Config) -> None:
    build = FastImport()
    base = build.commit("refs/heads/main", b"base\n", {b"README.md": b"# Hello"}, parents=[])
    tips = [
        build.commit(
            f"refs/heads/b{i}", b"b\n", {b"README.md": b"# Hello\n" + word}, parents=[base]
        )
        for i, word in enumerate([b"Welcome", b"to", b"this", b"project"])
    ]
    merge = build.commit(
        "refs/heads/main",
        b"octopus\n",
        {b"README.md": b"# Hello\nWelcome to this project"},
        parents=[base, *tips],
    )
    path = new_repo(config, "o.git")
    marks = build.run(path)
    for mode in MODES:
        request = Request(
            repository=repo("o.git"),
            requests=[commit_request(marks[merge])],
            merge_commit_diff_mode=mode,
        )
        got = await changed_paths(client, request)
        assert got == expected_commit(path, marks[merge], mode, False)
        assert len(got) == 5
        assert {p.old_blob_id for p in got} == {
            git(path, "rev-parse", f"{c}:README.md").decode().strip()
            for c in (marks[base], *(marks[t] for t in tips))
        }


async def test_large_answer_in_batches(client: Client, config: Config) -> None:
    files = {
        b"a/rather/long/directory/name/for/many/files/%06d.txt" % i: b"%d" % i for i in range(9000)
    }
    build = FastImport()
    commit = build.commit("refs/heads/main", b"many\n", files, parents=[])
    path = new_repo(config, "many.git")
    oid = build.run(path)[commit]
    request = Request(repository=repo("many.git"), requests=[commit_request(oid)])
    responses = await client.stream(METHOD, request, pb.FindChangedPathsResponse)
    assert len(responses) == 2
    assert [p for r in responses for p in r.paths] == diff_tree(path, oid)


@given(history=histories(max_commits=6), object_format=st.sampled_from(FORMATS))
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_random_histories(
    config: Config,
    connect: Callable[..., Client],
    history: list,  # type: ignore[type-arg]
    object_format: str,
) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = new_repo(config, name)
    oids = list(build_history(path, history, object_format).values())
    async with own_server(config, connect) as client:
        for mode in MODES:
            request = Request(
                repository=repo(name),
                requests=[commit_request(oid) for oid in oids],
                merge_commit_diff_mode=mode,
                find_renames=mode == MODES[2],
            )
            expected = [
                p for oid in oids for p in expected_commit(path, oid, mode, mode == MODES[2])
            ]
            assert await changed_paths(client, request) == expected


async def test_errors(client: Client, config: Config) -> None:
    build = FastImport()
    old = build.commit("refs/heads/main", b"old\n", {b"modified.txt": b"before"}, parents=[])
    new = build.commit(
        "refs/heads/main", b"new\n", {b"added.txt": b"new", b"modified.txt": b"after"}
    )
    path = new_repo(config, "e.git")
    marks = build.run(path)
    old, new = marks[old], marks[new]
    tree = git(path, "rev-parse", f"{new}^{{tree}}").decode().strip()
    blob = git(path, "rev-parse", f"{new}:added.txt").decode().strip()
    invalid, not_found = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    cases = [
        (Request(commits=[new, old]), invalid, "repository not set"),
        (
            Request(repository=repo("bar.git"), commits=[new, old]),
            not_found,
            "repository not found",
        ),
        (
            Request(repository=shared_pb2.Repository(storage_name="foo", relative_path="bar.git")),
            invalid,
            "storage name not found",
        ),
        (
            Request(repository=repo("e.git"), commits=[""]),
            invalid,
            "resolving commit: revision cannot be empty",
        ),
        (
            Request(repository=repo("e.git"), commits=[new], requests=[commit_request(new)]),
            invalid,
            "cannot specify both commits and requests",
        ),
        (
            Request(repository=repo("e.git"), commits=["notfound", old]),
            not_found,
            'resolving commit: revision can not be found: "notfound"',
        ),
        (
            Request(repository=repo("e.git"), requests=[commit_request(tree)]),
            not_found,
            f'resolving commit: revision can not be found: "{tree}"',
        ),
        (
            Request(repository=repo("e.git"), requests=[commit_request(new, tree)]),
            not_found,
            f'resolving commit parent: revision can not be found: "{tree}"',
        ),
        (
            Request(repository=repo("e.git"), requests=[commit_request(new, "")]),
            invalid,
            "resolving commit parent: revision cannot be empty",
        ),
        (
            Request(repository=repo("e.git"), requests=[tree_request(blob, tree)]),
            not_found,
            f'resolving left tree: revision can not be found: "{blob}"',
        ),
        (
            Request(repository=repo("e.git"), requests=[tree_request(tree, blob)]),
            not_found,
            f'resolving right tree: revision can not be found: "{blob}"',
        ),
        (
            Request(repository=repo("e.git"), requests=[tree_request("", tree)]),
            invalid,
            "resolving left tree: revision cannot be empty",
        ),
        (
            Request(repository=repo("e.git"), requests=[commit_request('-x"ü\t')]),
            not_found,
            'resolving commit: revision can not be found: "-x\\"ü\\t"',
        ),
        # A request of no type is refused once every other one is resolved.
        (
            Request(repository=repo("e.git"), requests=[Request.Request(), commit_request(new)]),
            grpc.StatusCode.INTERNAL,
            "unknown FindChangedPathsRequest type",
        ),
    ]
    git(new_repo(config, ""), "init", "--bare", "--quiet", "empty.git")
    cases.append(
        (
            Request(repository=repo("empty.git"), requests=[commit_request("HEAD")]),
            not_found,
            'resolving commit: revision can not be found: "HEAD"',
        )
    )
    for request, code, message in cases:
        error = await client.stream_error(METHOD, request, pb.FindChangedPathsResponse)
        assert (error.code(), error.details()) == (code, message), request
    # No requests at all: nothing to compare, no messages.
    assert (
        await client.stream(METHOD, Request(repository=repo("e.git")), pb.FindChangedPathsResponse)
        == []
    )
