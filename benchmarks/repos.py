"""Benchmark repositories: generated deterministically, made once and cached.

A `Shape` says how many commits, files, branches and tags a repository has and how big
its files are; `ensure(shape, cache_dir)` builds it with `git fast-import` (the approach
of tests/repos.py: every byte, date and identity is ours, so the object ids are the same
on every machine and run) and keeps it under `<cache>/repos/<name>-<digest>.git`, where
the digest covers the shape and GENERATOR_VERSION. After the import the repository is
repacked with a bitmap and a commit-graph, as a server's housekeeping would leave it.

The history: `main` is linear with, every `merge_every` commits, a two-commit topic merged
back (a merge commit); each commit rewrites a few lines of `changes_per_commit` files;
every `binary_every` commits a binary file is added. Then `branches` branches fork from
commits spread over main with a commit of their own, and `tags` annotated tags point at
commits spread over main.

`inspect(path)` reads any repository (generated or `--repo PATH`) into the workload the
suites use: commits to find, blobs to read, the ref count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

# Bump when the generated content changes: every cached repository is then rebuilt.
GENERATOR_VERSION = 1

GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_SYSTEM": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "A U Thor",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "A U Thor",
    "GIT_COMMITTER_EMAIL": "author@example.com",
    "GIT_AUTHOR_DATE": "1700100000 +0000",
    "GIT_COMMITTER_DATE": "1700100000 +0000",
    "LC_ALL": "C",
}
EPOCH = 1_700_000_000
IDENTITY = b"A U Thor <author@example.com>"


@dataclass(frozen=True)
class Shape:
    """What a generated repository looks like."""

    name: str
    commits: int  # on main, merges included
    files: int  # text files in the first commit
    file_bytes: int  # their median size
    changes_per_commit: int  # files rewritten by each commit
    change_lines: int  # lines replaced in each rewritten file
    branches: int  # besides main
    tags: int  # annotated
    merge_every: int = 0  # a topic merged into main every N commits; 0: never
    binary_every: int = 0  # a binary file added every N commits; 0: never
    binary_bytes: int = 0
    seed: int = 1

    def digest(self) -> str:
        text = json.dumps({**dataclasses.asdict(self), "v": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


SHAPES: dict[str, Shape] = {
    # For the harness's own smoke test: seconds to build.
    "tiny": Shape(
        name="tiny", commits=40, files=20, file_bytes=2048, changes_per_commit=2,
        change_lines=4, branches=3, tags=2, merge_every=10,
    ),
    # Quick mode: ~1k commits, a few MB packed.
    "small": Shape(
        name="small", commits=1000, files=300, file_bytes=4096, changes_per_commit=3,
        change_lines=8, branches=20, tags=10, merge_every=50, binary_every=200,
        binary_bytes=64 * 1024,
    ),
    # Full mode: ~20k commits, ~100 MB packed.
    "medium": Shape(
        name="medium", commits=20_000, files=3000, file_bytes=6144, changes_per_commit=3,
        change_lines=16, branches=200, tags=100, merge_every=40, binary_every=500,
        binary_bytes=256 * 1024,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class RepoInfo:
    """A repository the suites run on, and the workload read from it."""

    name: str  # "small", or the basename of --repo
    path: str  # the git directory
    shape: Shape | None  # None for --repo
    default_branch: str  # "refs/heads/main"
    commits: int  # reachable from HEAD
    refs: int
    branches: int
    packed_bytes: int
    object_format: str
    commit_oids: tuple[str, ...]  # spread over HEAD's history
    blobs: tuple[tuple[str, str, int], ...]  # (path, oid, size) at HEAD

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "path": self.path,
            "shape": dataclasses.asdict(self.shape) if self.shape else None,
            "default_branch": self.default_branch,
            "commits": self.commits,
            "refs": self.refs,
            "branches": self.branches,
            "packed_bytes": self.packed_bytes,
            "object_format": self.object_format,
            "sampled_commits": len(self.commit_oids),
            "sampled_blobs": len(self.blobs),
        }


def git(path: str, *args: str, input: bytes | None = None) -> bytes:
    """Run git in repository `path` without user or system config; return stdout."""
    return subprocess.run(
        ["git", "-C", path, *args], input=input, check=True, env=GIT_ENV, capture_output=True
    ).stdout


def ensure(shape: Shape, cache_dir: str, *, log: bool = True) -> str:
    """The path of the cached repository of `shape`, built first if missing."""
    root = os.path.join(cache_dir, "repos")
    final = os.path.join(root, f"{shape.name}-{shape.digest()}.git")
    if os.path.isdir(final):
        return final
    os.makedirs(root, exist_ok=True)
    building = os.path.join(root, f".building-{shape.name}-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    if log:
        print(f"generating the {shape.name} repository ({shape.commits} commits) in {final}")
    try:
        build(shape, building)
        os.rename(building, final)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return final


def build(shape: Shape, path: str) -> None:
    """Create the bare repository of `shape` at `path`."""
    subprocess.run(
        ["git", "init", "--bare", "--quiet", "--initial-branch=main", path],
        check=True,
        env=GIT_ENV,
    )
    process = subprocess.Popen(
        ["git", "-C", path, "fast-import", "--quiet", "--done"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=GIT_ENV,
    )
    assert process.stdin is not None
    try:
        for chunk in _stream(shape):
            process.stdin.write(chunk)
        process.stdin.close()
    except BrokenPipeError:
        pass
    stderr = process.stderr.read() if process.stderr else b""
    if process.wait() != 0:
        raise RuntimeError(f"git fast-import failed: {stderr.decode(errors='replace')}")
    git(path, "update-ref", "-d", "refs/heads/topic")
    git(path, "symbolic-ref", "HEAD", "refs/heads/main")
    git(path, "config", "gc.auto", "0")
    git(path, "repack", "-a", "-d", "-f", "-q", "--write-bitmap-index")
    git(path, "commit-graph", "write", "--reachable")
    git(path, "pack-refs", "--all")
    git(path, "fsck", "--connectivity-only", "--no-progress")


class _History:
    """The fast-import stream of one shape, produced commit by commit."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.rng = random.Random(shape.seed)
        letters = "abcdefghijklmnopqrstuvwxyz"
        self.words = [
            "".join(self.rng.choices(letters, k=self.rng.randint(2, 10))) for _ in range(4096)
        ]
        self.files: dict[bytes, list[bytes]] = {}
        self.paths: list[bytes] = []  # of self.files, in creation order (sampled from)
        self.marks = 0
        self.clock = EPOCH

    def line(self) -> bytes:
        indent = b"    " * self.rng.randint(0, 3)
        return indent + " ".join(self.rng.choices(self.words, k=self.rng.randint(3, 14))).encode()

    def mark(self) -> int:
        self.marks += 1
        return self.marks

    def commit(
        self,
        ref: str,
        message: bytes,
        changes: dict[bytes, bytes],
        *,
        parents: tuple[int, ...] = (),
        reset: bool = False,
    ) -> tuple[int, bytes]:
        self.clock += 60
        mark = self.mark()
        out = [b"reset %s\n" % ref.encode()] if reset else []
        out += [
            b"commit %s\nmark :%d\n" % (ref.encode(), mark),
            b"author %s %d +0000\n" % (IDENTITY, self.clock),
            b"committer %s %d +0000\n" % (IDENTITY, self.clock),
            _data(message),
        ]
        for index, parent in enumerate(parents):
            out.append(b"%s :%d\n" % (b"from" if index == 0 else b"merge", parent))
        for path, content in changes.items():
            out += [b"M 100644 inline %s\n" % path, _data(content)]
        out.append(b"\n")
        return mark, b"".join(out)

    def new_file(self, index: int) -> bytes:
        path = b"src/mod%02d/part%d/file%05d.%s" % (
            index % 23,
            (index // 23) % 4,
            index,
            (b"py", b"md", b"txt", b"c")[index % 4],
        )
        size = max(64, int(self.rng.lognormvariate(0, 0.7) * self.shape.file_bytes))
        lines: list[bytes] = []
        total = 0
        while total < size:
            lines.append(self.line())
            total += len(lines[-1]) + 1
        self.files[path] = lines
        self.paths.append(path)
        return path

    def rewrite(self, path: bytes) -> bytes:
        lines = self.files[path]
        count = min(self.shape.change_lines, max(1, len(lines)))
        start = self.rng.randrange(0, max(1, len(lines) - count + 1))
        lines[start : start + count] = [self.line() for _ in range(count)]
        return b"\n".join(lines) + b"\n"

    def content(self, path: bytes) -> bytes:
        return b"\n".join(self.files[path]) + b"\n"

    def message(self, number: int) -> bytes:
        subject = " ".join(self.rng.choices(self.words, k=self.rng.randint(3, 8)))
        body = "\n".join(
            " ".join(self.rng.choices(self.words, k=10)) for _ in range(self.rng.randint(0, 4))
        )
        text = f"Change {number}: {subject}\n"
        if body:
            text += f"\n{body}\n"
        if number % 5 == 0:
            text += f"\nSigned-off-by: A U Thor <author@example.com>\nChange-Id: I{number:040x}\n"
        return text.encode()


def _stream(shape: Shape) -> Iterator[bytes]:
    history = _History(shape)
    rng = history.rng
    first = {history.new_file(i): b"" for i in range(shape.files)}
    readme = b"README.md"
    history.files[readme] = [b"# %s" % shape.name.encode(), b"", b"A generated repository."]
    history.paths.append(readme)
    changes = {path: history.content(path) for path in [readme, *first]}
    tip, chunk = history.commit("refs/heads/main", b"Initial commit\n", changes, reset=True)
    yield chunk
    main: list[int] = [tip]
    next_file = shape.files
    binaries = 0
    while len(main) < shape.commits:
        number = len(main)
        if shape.merge_every and number % shape.merge_every == 0 and len(main) + 1 < shape.commits:
            # A topic of two commits off main's tip, merged back with a merge commit.
            paths = rng.sample(history.paths, 2)
            topic, chunk = history.commit(
                "refs/heads/topic",
                history.message(number),
                {paths[0]: history.rewrite(paths[0])},
                parents=(tip,),
                reset=True,
            )
            yield chunk
            topic, chunk = history.commit(
                "refs/heads/topic", history.message(number), {paths[1]: history.rewrite(paths[1])}
            )
            yield chunk
            merged = {path: history.content(path) for path in paths}
            tip, chunk = history.commit(
                "refs/heads/main",
                b"Merge branch 'topic-%d'\n" % number,
                merged,
                parents=(tip, topic),
            )
            yield chunk
            main.append(tip)
            continue
        paths = rng.sample(history.paths, min(shape.changes_per_commit, len(history.paths)))
        changes = {path: history.rewrite(path) for path in paths}
        if number % 97 == 0:
            path = history.new_file(next_file)
            next_file += 1
            changes[path] = history.content(path)
        if shape.binary_every and number % shape.binary_every == 0:
            binaries += 1
            changes[b"assets/blob%04d.bin" % binaries] = rng.randbytes(shape.binary_bytes)
        tip, chunk = history.commit("refs/heads/main", history.message(number), changes)
        yield chunk
        main.append(tip)
    for index in range(shape.branches):
        base = main[(index * 7919) % len(main)]
        name = f"refs/heads/feature/{index:04d}"
        path = b"branches/feature-%04d.txt" % index
        _, chunk = history.commit(
            name,
            b"Work on feature %d\n" % index,
            {path: b"feature %d\n" % index},
            parents=(base,),
            reset=True,
        )
        yield chunk
    for index in range(shape.tags):
        target = main[min(len(main) - 1, (index + 1) * len(main) // max(1, shape.tags))]
        history.clock += 60
        yield b"".join(
            [
                b"tag v%d.%d.0\nfrom :%d\n" % (index // 10 + 1, index % 10, target),
                b"tagger %s %d +0000\n" % (IDENTITY, history.clock),
                _data(b"Release %d\n" % index),
            ]
        )
    yield b"done\n"


def _data(content: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(content), content)


def git_dir(path: str) -> str:
    """The git directory of a repository path (bare, or a work tree's .git)."""
    out = subprocess.run(
        ["git", "-C", path, "rev-parse", "--absolute-git-dir"],
        check=True,
        capture_output=True,
        env=GIT_ENV,
    )
    return out.stdout.decode().strip()


def inspect(name: str, path: str, shape: Shape | None = None, *, samples: int = 64) -> RepoInfo:
    """Read the workload of the repository at `path`: commits, blobs, refs, size."""
    path = git_dir(path)
    head = git(path, "symbolic-ref", "-q", "HEAD").decode().strip()
    oids = git(path, "rev-list", "--first-parent", "HEAD").decode().split()
    commits = int(git(path, "rev-list", "--count", "HEAD").decode())
    step = max(1, len(oids) // samples)
    commit_oids = tuple(oids[::step][:samples])
    entries = []
    for line in git(path, "ls-tree", "-r", "-l", "-z", "HEAD").split(b"\0"):
        if not line:
            continue
        meta, _, file_path = line.partition(b"\t")
        _mode, kind, oid, size = meta.split()
        if kind == b"blob" and size != b"-":
            entries.append((file_path.decode(errors="surrogateescape"), oid.decode(), int(size)))
    # Typical source files: 256 B to 64 KiB; any blob when the tree has none of those.
    typical = [entry for entry in entries if 256 <= entry[2] <= 64 * 1024] or entries
    step = max(1, len(typical) // samples)
    blobs = tuple(typical[::step][:samples])
    refs = git(path, "for-each-ref", "--format=%(refname)").decode().splitlines()
    counts = dict(
        line.split(": ", 1) for line in git(path, "count-objects", "-v").decode().splitlines()
    )
    packed = (int(counts.get("size-pack", "0")) + int(counts.get("size", "0"))) * 1024
    try:
        object_format = git(path, "rev-parse", "--show-object-format").decode().strip()
    except subprocess.CalledProcessError:
        object_format = "sha1"
    return RepoInfo(
        name=name,
        path=path,
        shape=shape,
        default_branch=head,
        commits=commits,
        refs=len(refs),
        branches=sum(1 for ref in refs if ref.startswith("refs/heads/")),
        packed_bytes=packed,
        object_format=object_format,
        commit_oids=commit_oids,
        blobs=blobs,
    )
