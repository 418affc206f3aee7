"""Tree walking for the tree and path RPCs: resolving `revision:path`, listing entries.

Entries are read one tree at a time through a cat-file reader (`ObjectReader`) and
`objects.parse_tree`; whole recursive listings come from one `git ls-tree -z -r`, parsed
as it streams. Paths are joined and cleaned the way Gitaly's Go code does it
(`path.Clean`, `filepath.Join`), since clients compare the paths we answer with the
ones they sent.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import internal
from trio_gitaly.git.catfile_reader import ObjectTooLargeError
from trio_gitaly.git.command import READ_CHUNK_BYTES
from trio_gitaly.git.objects import TreeEntry, parse_tree

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from trio_gitaly.git.args import GitCommand
    from trio_gitaly.git.catfile_reader import ObjectInfo, ObjectReader
    from trio_gitaly.git.command import CommandFactory

__all__ = [
    "FLAT_PATH_MAX_LEVELS",
    "SORT_RANK",
    "TREE_READ_BYTES",
    "find_entry",
    "flat_path",
    "go_clean",
    "go_dir",
    "go_join",
    "is_local",
    "parse_ls_tree_record",
    "read_tree",
    "resolve_path",
    "stream_ls_tree",
    "tree_entries",
]

#: Flat paths look this many levels deep at most, counting the entry itself (Gitaly's
#: defaultFlatTreeRecursion): a chain of single subdirectories costs one read per level.
FLAT_PATH_MAX_LEVELS: Final = 10
#: Objects up to this size are read whole in one round trip where a tree is expected; a
#: larger one is read through without being kept (and read again if it is a tree), so a
#: path that names a huge blob costs no memory.
TREE_READ_BYTES: Final = 16 * 1024 * 1024
#: Gitaly's "trees first" order (localrepo.ObjectType): trees, then blobs, then gitlinks.
SORT_RANK: Final = {"tree": 1, "blob": 2, "commit": 3}

# `rev:./x` and `rev:../x` make cat-file die ("relative path syntax can't be used outside
# working tree"), and cat-file's protocol is line based (a newline ends the request, a
# CR before it is dropped, a NUL ends the name): such paths are walked instead.
_RELATIVE_PREFIXES: Final = (b"./", b"../")
_LINE_BREAKERS: Final = (b"\n", b"\r", b"\0")


def go_clean(path: bytes) -> bytes:
    """Go's `path.Clean`: no empty, "." or resolvable ".." elements; "." for nothing."""
    if not path:
        return b"."
    rooted = path.startswith(b"/")
    parts: list[bytes] = []
    for part in path.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            if parts and parts[-1] != b"..":
                parts.pop()
            elif not rooted:
                parts.append(b"..")
            continue
        parts.append(part)
    cleaned = b"/".join(parts)
    if rooted:
        return b"/" + cleaned
    return cleaned or b"."


def go_dir(path: bytes) -> bytes:
    """Go's `path.Dir`: everything before the last slash, cleaned ("." when none)."""
    return go_clean(path[: path.rfind(b"/") + 1])


def go_join(*elements: bytes) -> bytes:
    """Go's `filepath.Join`: the non-empty tail of `elements` joined by "/" and cleaned."""
    for index, element in enumerate(elements):
        if element:
            return go_clean(b"/".join(elements[index:]))
    return b""


def is_local(path: bytes) -> bool:
    """Go's `filepath.IsLocal` on Unix: relative, non-empty, and not escaping via "..".

    Cleaning happens only when a "." or ".." element is present, as in Go.
    """
    if not path or path.startswith(b"/"):
        return False
    if any(part in (b".", b"..") for part in path.split(b"/")):
        path = go_clean(path)
    return path != b".." and not path.startswith(b"../")


def _hash_bytes(info: ObjectInfo) -> int:
    # A hex object id has two characters per byte: 20 bytes for SHA-1, 32 for SHA-256.
    return len(info.oid) // 2


async def read_tree(reader: ObjectReader, revision: bytes | str) -> list[TreeEntry] | None:
    """The entries of the tree `revision` names; None when missing or not a tree.

    Cancellation: the reader's process is abandoned and killed (see `ObjectReader`).
    """
    try:
        found = await reader.read(revision, max_size=TREE_READ_BYTES)
    except ObjectTooLargeError as error:
        if error.info.type != "tree":
            return None
        found = await reader.read(error.info.oid)
    if found is None:
        return None
    info, data = found
    if info.type != "tree":
        return None
    try:
        return parse_tree(data, _hash_bytes(info))
    except ValueError as exc:
        raise internal("corrupt tree object", oid=info.oid) from exc


async def _walk(reader: ObjectReader, revision: bytes, path: bytes) -> TreeEntry | None:
    """The entry at `path` under `revision`'s tree, looked up as git's get_tree_entry does.

    One trailing slash after a tree is allowed ("dir/"); a root entry for an empty path.
    """
    info = await reader.info(revision + b"^{tree}")
    if info is None or info.type != "tree":
        return None
    if not path:
        return TreeEntry(0o040000, "tree", info.oid, b"")
    tree_oid = info.oid
    while True:
        entries = await read_tree(reader, tree_oid)
        if entries is None:
            return None
        name, slash, rest = path.partition(b"/")
        entry = next((e for e in entries if e.path == name), None)
        if entry is None:
            return None
        if not slash:
            return entry
        if entry.kind != "tree":
            return None
        if not rest:
            return entry
        tree_oid, path = entry.oid, rest


def _direct(path: bytes) -> bool:
    """Whether cat-file can be asked for `rev:path` as is."""
    return not path.startswith(_RELATIVE_PREFIXES) and not any(c in path for c in _LINE_BREAKERS)


async def resolve_path(reader: ObjectReader, revision: bytes, path: bytes) -> ObjectInfo | None:
    """What `revision:path` names, if it exists; None for a missing path or object.

    Asks cat-file for `revision:path` in one round trip where cat-file can take the
    path; walks the trees otherwise (same answer, no dying cat-file).

    Cancellation: the reader's process is abandoned and killed.
    """
    if _direct(path):
        return await reader.info(revision + b":" + path)
    entry = await _walk(reader, revision, path)
    if entry is None:
        return None
    return await reader.info(entry.oid)


async def tree_entries(reader: ObjectReader, revision: bytes, path: bytes) -> list[TreeEntry]:
    """Gitaly's catfile.TreeEntries: the entries of the tree at `revision:path`.

    Entry paths are `path` joined with each name. Nothing (not an error) when the path
    is missing, escapes the root, or is not a tree.

    Cancellation: the reader's process is abandoned and killed.
    """
    if path == b".":
        path = b""
    if go_clean(path).startswith(b"../"):
        return []
    if _direct(path):
        entries = await read_tree(reader, revision + b":" + path)
    else:
        entry = await _walk(reader, revision, path)
        entries = None if entry is None else await read_tree(reader, entry.oid)
    return [
        TreeEntry(entry.mode, entry.kind, entry.oid, go_join(path, entry.path))
        for entry in entries or ()
    ]


async def find_entry(reader: ObjectReader, revision: bytes, path: bytes) -> TreeEntry | None:
    """Gitaly's TreeEntryFinder: the entry whose joined path equals `path` exactly.

    Cancellation: the reader's process is abandoned and killed.
    """
    for entry in await tree_entries(reader, revision, go_dir(path)):
        if entry.path == path:
            return entry
    return None


async def flat_path(reader: ObjectReader, entry: TreeEntry) -> bytes:
    """Gitaly's flat path of a tree entry: its path extended through single subtrees.

    Descends while a tree holds exactly one entry and that entry is a tree, at most
    `FLAT_PATH_MAX_LEVELS - 1` times. Trees are read by object id.

    Cancellation: the reader's process is abandoned and killed.
    """
    path = entry.path
    if entry.kind != "tree":
        return path
    oid = entry.oid
    for _ in range(1, FLAT_PATH_MAX_LEVELS):
        children = await read_tree(reader, oid)
        if children is None or len(children) != 1 or children[0].kind != "tree":
            break
        path = go_join(path, children[0].path)
        oid = children[0].oid
    return path


def parse_ls_tree_record(record: bytes) -> TreeEntry:
    """One `git ls-tree -z` record: "<mode> <type> <oid>\\t<path>" (no terminator).

    Raises:
        GitalyError: INTERNAL for a record that is not of that form.
    """
    meta, tab, path = record.partition(b"\t")
    fields = meta.split(b" ")
    if not tab or len(fields) != 3 or not fields[0].isdigit():
        raise internal("unexpected git ls-tree output", record=record[:200])
    mode, kind, oid = fields
    return TreeEntry(int(mode, 8), kind.decode("ascii", "replace"), oid.decode("ascii"), path)


async def stream_ls_tree(
    factory: CommandFactory,
    cmd: GitCommand,
    *,
    repo_path: str,
    env: Mapping[str, str] | None,
    on_entry: Callable[[TreeEntry], Awaitable[None]],
) -> int:
    """Run a `git ls-tree -z ...` command and await `on_entry` for each entry, in order.

    Output is parsed as it arrives, so at most one pipe read plus one record is held.

    Returns:
        git's exit status (the caller decides whether a failure matters).

    Cancellation: git's process group is killed and reaped (`CommandFactory.spawn`).
    """
    async with factory.spawn(cmd, repo_path=repo_path, env=env, stdout=subprocess.PIPE) as git:
        assert git.stdout is not None
        pending = b""
        while chunk := await git.stdout.receive_some(READ_CHUNK_BYTES):
            records = (pending + chunk).split(b"\0")
            pending = records.pop()
            for record in records:
                await on_entry(parse_ls_tree_record(record))
        if pending:
            await on_entry(parse_ls_tree_record(pending))
        return await git.wait()
