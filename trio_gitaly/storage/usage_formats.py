"""Reading repository files as Gitaly's statistics read them, and failing as it fails.

Gitaly's RepositoryInfo parses the headers of bitmaps, multi-pack-indexes and
commit-graphs and reads the alternates file; none of that is reported, but a broken file
fails the RPC. These checks reproduce those failures and their messages (Go's error
texts, `%q` quoting included). Blocking: run in a worker thread.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import Final

from trio_gitaly.goformat import go_quote

#: bufio.Scanner's default token limit: Gitaly fails on a longer line in these files.
SCANNER_MAX_TOKEN_BYTES: Final = 64 * 1024


class UsageError(Exception):
    """The filesystem could not be read as Gitaly reads it; the message is Gitaly's."""


def check_commit_graphs(repo_path: str) -> None:
    """Read the header and chunk table of each commit-graph as Gitaly does."""
    info_dir = os.path.join(repo_path, "objects", "info")
    chain_path = os.path.join(info_dir, "commit-graphs", "commit-graph-chain")
    try:
        with open(chain_path, "rb") as chain:
            ids = chain.read().strip().split(b"\n")
    except FileNotFoundError:
        single = os.path.join(info_dir, "commit-graph")
        try:
            os.stat(single)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise UsageError(f"statting commit-graph: {os_error('stat', exc)}") from exc
        paths = [single]
    except OSError as exc:
        op = "read" if isinstance(exc, IsADirectoryError) else "open"
        raise UsageError(f"reading commit-graphs chain: {os_error(op, exc)}") from exc
    else:
        graphs = os.path.join(info_dir, "commit-graphs")
        paths = [os.path.join(graphs, f"graph-{i.decode('utf-8', 'replace')}.graph") for i in ids]
    for path in paths:
        _check_commit_graph(path)


def check_alternates(repo_path: str) -> None:
    """Fail, as Gitaly does, when objects/info/alternates exists but cannot be read."""
    path = os.path.join(repo_path, "objects", "info", "alternates")
    try:
        with open(path, "rb") as alternates:
            data = alternates.read()
    except FileNotFoundError:
        return
    except IsADirectoryError as exc:
        message = f"scanning alternate paths: {os_error('read', exc)}"
        raise UsageError(f"read alternates file: {message}") from exc
    except OSError as exc:
        raise UsageError(f"read alternates file: open: {os_error('open', exc)}") from exc
    for _ in scan_lines(data, "read alternates file: scanning alternate paths"):
        pass


def os_error(op: str, exc: OSError) -> str:
    """An OSError as Go's *PathError prints it: "open /path: no such file or directory"."""
    filename = exc.filename
    if isinstance(filename, bytes):
        filename = filename.decode("utf-8", "replace")
    reason = exc.strerror or str(exc)
    reason = reason[:1].lower() + reason[1:]
    return f"{op} {filename}: {reason}" if filename is not None else reason


def readdir_error(exc: OSError) -> str:
    """A failed directory listing as Go's os.ReadDir reports it."""
    # Go opens a regular file fine and fails on reading it as a directory.
    return os_error("readdirent" if exc.errno == errno.ENOTDIR else "open", exc)


def _read_header(path: bytes, size: int, opening: str, reading: str) -> bytes:
    """The first `size` bytes, failing as Go's os.Open + io.ReadFull do."""
    try:
        with open(path, "rb") as file:
            data = file.read(size)
    except IsADirectoryError as exc:
        raise UsageError(f"{reading}: {os_error('read', exc)}") from exc
    except OSError as exc:
        raise UsageError(f"{opening}: {os_error('open', exc)}") from exc
    if len(data) < size:
        raise UsageError(f"{reading}: {'EOF' if not data else 'unexpected EOF'}")
    return data


def check_bitmap(path: bytes) -> None:
    """Gitaly's BitmapInfoForPath checks: the BITM signature and version 1."""
    header = _read_header(path, 8, "opening bitmap", "reading bitmap header")
    if header[:4] != b"BITM":
        raise UsageError(f"invalid bitmap signature: {go_quote(header[:4])}")
    version = int.from_bytes(header[4:6], "big")
    if version != 1:
        raise UsageError(f"unsupported version: {version}")


def check_midx(path: bytes) -> None:
    """Gitaly's MultiPackIndexInfoForPath checks: MIDX, version 1, no base files."""
    header = _read_header(path, 12, "opening multi-pack-index", "reading header")
    if header[:4] != b"MIDX":
        raise UsageError(f"invalid signature: {go_quote(header[:4])}")
    if header[4] != 1:
        raise UsageError(f"invalid version: {header[4]}")
    if header[7] != 0:
        raise UsageError(f"unsupported number of base files: {header[7]}")


def _check_commit_graph(path: str) -> None:
    quoted = go_quote(path)
    try:
        with open(path, "rb") as file:
            # Gitaly reads through a 4 KiB bufio.Reader: the first read fills it with one
            # read(2), and each later Read only copies what that one read buffered.
            buffered = file.read(4096)
    except FileNotFoundError:
        return  # replaced concurrently
    except IsADirectoryError as exc:
        raise UsageError(
            f"read commit graph file {quoted} header: {os_error('read', exc)}"
        ) from exc
    except OSError as exc:
        raise UsageError(f"read commit graph chain file: {os_error('open', exc)}") from exc
    if not buffered:
        raise UsageError(f"read commit graph file {quoted} header: EOF")
    if len(buffered) < 8:
        raise UsageError(f"commit graph file {quoted} is too small, no header")
    if buffered[:4] != b"CGPH":
        raise UsageError(f"commit graph file {quoted} doesn't have signature")
    if buffered[4] != 1:
        raise UsageError(
            f"commit graph file {quoted} has unsupported version number: {buffered[4]}"
        )
    # Gitaly sizes the table as a Go byte, (chunks + 1) * 12, which wraps at 256.
    table_size = ((buffered[6] + 1) * 12) % 256
    rest = len(buffered) - 8
    if table_size and not rest:
        raise UsageError(f"read commit graph file {quoted} table of contents for the chunks: EOF")
    if min(rest, table_size) != table_size:
        raise UsageError(f"commit graph file {quoted} is too small, no table of contents")


def scan_lines(data: bytes, what: str, *, strict: bool = True) -> Iterator[bytes]:
    """Lines as bufio.Scanner splits them; a line over its limit fails when reached
    (or, not `strict`, silently ends the scan)."""
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    for line in lines:
        if len(line) >= SCANNER_MAX_TOKEN_BYTES:
            if not strict:
                return
            raise UsageError(f"{what}: bufio.Scanner: token too long")
        yield line[:-1] if line.endswith(b"\r") else line
