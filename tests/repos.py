"""Test repositories, built with `git fast-import` so every byte is ours to choose.

fast-import takes arbitrary bytes in paths and messages, exact dates, merges with any
number of parents, gitlinks (submodules) and commit encodings, and is deterministic:
the same description gives the same object ids, run after run.

`rich_repository()` holds every case the read path must get right; `histories()` is a
hypothesis strategy for random ones.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

from hypothesis import strategies as st

# No user or system config; a fixed identity and date so that objects git itself makes
# (tags of tags, in rich_repository) get the same ids on every run.
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_SYSTEM": "/dev/null",
    "GIT_AUTHOR_NAME": "A U Thor",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "A U Thor",
    "GIT_COMMITTER_EMAIL": "author@example.com",
    "GIT_AUTHOR_DATE": "1700100000 +0000",
    "GIT_COMMITTER_DATE": "1700100000 +0000",
}
EPOCH = 1_700_000_000  # 2023-11-14: dates count up from here, one minute per commit
SUBMODULE = "submodule"  # a FileSpec content marker: a gitlink to `content` (an oid)


@dataclass(frozen=True)
class Person:
    name: bytes = b"A U Thor"
    email: bytes = b"author@example.com"
    timezone: bytes = b"+0000"


@dataclass
class FastImport:
    """Accumulates a fast-import stream; `run(path)` creates the objects and refs."""

    object_format: str = "sha1"
    _stream: list[bytes] = field(default_factory=list)
    _marks: int = 0
    _clock: int = EPOCH

    def _mark(self) -> str:
        self._marks += 1
        return f":{self._marks}"

    def blob(self, data: bytes) -> str:
        mark = self._mark()
        self._stream += [b"blob\n", f"mark {mark}\n".encode(), _data(data)]
        return mark

    def commit(
        self,
        ref: str,
        message: bytes,
        files: dict[bytes, bytes | tuple[str, str] | None] | None = None,
        *,
        parents: list[str] | None = None,
        author: Person = Person(),
        committer: Person | None = None,
        encoding: str | None = None,
        executable: frozenset[bytes] = frozenset(),
        symlinks: frozenset[bytes] = frozenset(),
        deleteall: bool = False,
    ) -> str:
        """A commit on `ref`; files map path → content, None (delete) or (SUBMODULE, oid).

        `parents` None continues `ref`'s history; [] starts a root commit; a list of
        marks/oids gives a (merge) commit with exactly those parents.
        """
        self._clock += 60
        mark = self._mark()
        committer = committer or author
        out = [f"commit {ref}\n".encode(), f"mark {mark}\n".encode()]
        out.append(
            b"author %s <%s> %d %s\n" % (author.name, author.email, self._clock, author.timezone)
        )
        out.append(
            b"committer %s <%s> %d %s\n"
            % (committer.name, committer.email, self._clock, committer.timezone)
        )
        if encoding:
            out.append(f"encoding {encoding}\n".encode())
        out.append(_data(message))
        if parents is not None:
            if not parents:
                self._stream.append(f"reset {ref}\n".encode())
            for index, parent in enumerate(parents):
                out.append(f"{'from' if index == 0 else 'merge'} {parent}\n".encode())
        if deleteall:
            out.append(b"deleteall\n")
        for path, content in (files or {}).items():
            quoted = _quote(path)
            if content is None:
                out.append(b"D " + quoted + b"\n")
            elif isinstance(content, tuple):
                out.append(b"M 160000 " + content[1].encode() + b" " + quoted + b"\n")
            else:
                mode = (
                    b"120000"
                    if path in symlinks
                    else b"100755"
                    if path in executable
                    else b"100644"
                )
                out += [b"M " + mode + b" inline " + quoted + b"\n", _data(content)]
        self._stream += out
        return mark

    def annotated_tag(
        self, name: str, target: str, message: bytes, *, tagger: Person = Person()
    ) -> None:
        self._clock += 60
        self._stream += [
            f"tag {name}\n".encode(),
            f"from {target}\n".encode(),
            b"tagger %s <%s> %d %s\n" % (tagger.name, tagger.email, self._clock, tagger.timezone),
            _data(message),
        ]

    def ref(self, ref: str, target: str) -> None:
        """Point `ref` at a mark or oid (a lightweight tag, a branch)."""
        self._stream += [f"reset {ref}\n".encode(), f"from {target}\n\n".encode()]

    def run(self, path: str) -> dict[str, str]:
        """Create a bare repository at `path` (if missing) and import; return mark → oid."""
        if not os.path.exists(os.path.join(path, "HEAD")):
            subprocess.run(
                ["git", "init", "--bare", "--quiet", f"--object-format={self.object_format}", path],
                check=True,
                env=GIT_ENV,
            )
        marks = os.path.join(path, "fast-import.marks")
        subprocess.run(
            ["git", "-C", path, "fast-import", "--quiet", f"--export-marks={marks}"],
            input=b"".join(self._stream),
            check=True,
            env=GIT_ENV,
            capture_output=True,
        )
        with open(marks, encoding="ascii") as lines:
            result = dict(line.split() for line in lines)
        os.unlink(marks)
        return result


def _data(content: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(content), content)


def _quote(path: bytes) -> bytes:
    if not any(c in path for c in b'"\\\n') and not path.startswith(b'"'):
        return path
    escaped = path.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\n", b"\\n")
    return b'"' + escaped + b'"'


def git(path: str, *args: str, input: bytes | None = None) -> bytes:
    """Run the git CLI in repository `path` (the reference answers); return stdout."""
    return subprocess.run(
        ["git", "-C", path, *args], input=input, check=True, env=GIT_ENV, capture_output=True
    ).stdout


def rich_repository(path: str, object_format: str = "sha1") -> dict[str, str]:
    """A repository with every case the read path must handle; returns name → oid.

    main: root → README/binary/large/exec/symlink → rename → non-UTF-8 names and an
    ISO-8859-1 message; feature branches off and is merged back (a merge commit);
    a submodule gitlink; annotated, lightweight, nested and non-commit tags; a branch
    with a non-ASCII name.
    """
    build = FastImport(object_format=object_format)
    root = build.commit(
        "refs/heads/main", b"Initial commit\n", {b"README.md": b"# readme\n"}, parents=[]
    )
    large = bytes(range(256)) * (5 * 4096)  # 5 MiB, binary
    second = build.commit(
        "refs/heads/main",
        b"Add files\n\nWith a body.\n\nSigned-off-by: A U Thor <author@example.com>\n",
        {
            b"bin/tool": b"#!/bin/sh\necho hi\n",
            b"binary.dat": b"\x00\x01\x02binary\xff" * 100,
            b"large.bin": large,
            b"link": b"README.md",
            b"docs/guide.md": b"line 1\nline 2\nline 3\n",
        },
        executable=frozenset({b"bin/tool"}),
        symlinks=frozenset({b"link"}),
    )
    feature = build.commit(
        "refs/heads/feature",
        b"Feature work\n",
        {b"feature.txt": b"feature\n", b"docs/guide.md": b"line 1\nline two\nline 3\n"},
        parents=[second],
        author=Person(b"F\xc3\xa9ature Dev", b"dev@example.com", b"+0200"),
    )
    renamed = build.commit(
        "refs/heads/main",
        b"Rename guide\n",
        {b"docs/guide.md": None, b"docs/manual.md": b"line 1\nline 2\nline 3\n"},
    )
    latin1 = build.commit(
        "refs/heads/main",
        b"Caf\xe9 na\xefve message\n",
        {b"caf\xe9.txt": b"latin-1 name\n", b"\xe2\x9c\x93 check.txt": b"utf-8 name\n"},
        encoding="ISO-8859-1",
        author=Person(b"Ren\xe9", b"rene@example.com", b"-0500"),
    )
    merge = build.commit(
        "refs/heads/main",
        b"Merge branch 'feature'\n",
        {b"feature.txt": b"feature\n"},
        parents=[latin1, feature],
    )
    submodule = build.commit(
        "refs/heads/main",
        b"Add submodule\n",
        {b"vendor/lib": (SUBMODULE, "1" * (40 if object_format == "sha1" else 64))},
    )
    build.annotated_tag("v1.0.0", second, b"Release 1.0.0\n\nNotes.\n")
    build.annotated_tag("v2.0.0", submodule, b"Release 2.0.0\n")
    build.ref("refs/tags/lightweight", renamed)
    build.ref("refs/heads/\u00fcnicode-branch", root)
    marks = build.run(path)
    # A tag of a tag, and a tag of a blob, as only git tag makes them.
    git(path, "tag", "-a", "-m", "nested\n", "v1.0.0-nested", "v1.0.0")
    readme_blob = git(path, "rev-parse", f"{marks[root]}:README.md").decode().strip()
    git(path, "tag", "-a", "-m", "a blob\n", "blob-tag", readme_blob)
    git(path, "symbolic-ref", "HEAD", "refs/heads/main")
    names = {
        "root": root, "second": second, "feature": feature, "renamed": renamed,
        "latin1": latin1, "merge": merge, "submodule": submodule,
    }  # fmt: skip
    return {name: marks[mark] for name, mark in names.items()}


# -- random histories for hypothesis ---------------------------------------------------

_names = st.binary(min_size=1, max_size=12).filter(
    lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b"..") and b"\n" not in b
)
_paths = st.lists(_names, min_size=1, max_size=3).map(lambda parts: b"/".join(parts))
_contents = st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode))


@st.composite
def histories(
    draw: st.DrawFn, max_commits: int = 8
) -> list[tuple[str, bytes, dict[bytes, bytes | None], int | None]]:
    """A random history: (branch, message, file changes, index of a second parent or None)."""
    commits = []
    for index in range(draw(st.integers(min_value=1, max_value=max_commits))):
        branch = draw(st.sampled_from(["main", "topic", "release/1.x"]))
        message = draw(st.binary(min_size=1, max_size=80).filter(lambda m: b"\x00" not in m))
        files = draw(st.dictionaries(_paths, st.one_of(_contents, st.none()), max_size=4))
        merge_from = draw(st.none() | st.integers(0, index - 1)) if index else None
        commits.append((branch, message, files, merge_from))
    return commits


def build_history(
    path: str,
    history: list[tuple[str, bytes, dict[bytes, bytes | None], int | None]],
    object_format: str = "sha1",
) -> dict[int, str]:
    """Import a `histories()` example; returns commit index → oid."""
    build = FastImport(object_format=object_format)
    marks: list[str] = []
    tips: dict[str, str] = {}
    for branch, message, files, merge_from in history:
        ref = f"refs/heads/{branch}"
        # A new branch starts from the previous commit (or as a root); others continue.
        parents = [tips[ref]] if ref in tips else [marks[-1]] if marks else []
        if merge_from is not None and marks[merge_from] not in parents:
            parents.append(marks[merge_from])
        # Conflicting paths (a file where a directory is wanted) are git's problem to
        # refuse; start each commit from an empty tree to keep every example importable.
        mark = build.commit(ref, message, dict(_flatten(files)), parents=parents, deleteall=True)
        tips[ref] = mark
        marks.append(mark)
    result = build.run(path)
    git(path, "symbolic-ref", "HEAD", f"refs/heads/{history[0][0]}")
    return {index: result[mark] for index, mark in enumerate(marks)}


def _flatten(files: dict[bytes, bytes | None]) -> list[tuple[bytes, bytes | None]]:
    """Drop paths that would be both a file and a directory in one tree."""
    kept: dict[bytes, bytes | None] = {}
    for path, content in sorted(files.items()):
        if content is None:
            continue
        if any(path.startswith(other + b"/") or other.startswith(path + b"/") for other in kept):
            continue
        kept[path] = content
    return list(kept.items())
