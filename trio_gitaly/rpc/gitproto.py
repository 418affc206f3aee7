"""Git objects as Gitaly's messages: GitCommit, CommitAuthor, Tag.

Every RPC that answers with commits or tags converts through here, so the details
clients depend on (the 10 KiB message cap with the full size beside it, the subject
rule, the date fallback, signature types) are decided once.
"""

from __future__ import annotations

from trio_gitaly.git.objects import Commit, Signature, Tag, signature_type
from trio_gitaly.git.trailers import commit_trailers
from trio_gitaly.rpc.gen.gitaly import shared_pb2

# Gitaly's MaxCommitOrTagMessageSize: messages are cut here; *_size says the full size.
MAX_MESSAGE_BYTES = 10 * 1024

_SIGNATURE_TYPES = {
    "": shared_pb2.NONE,
    "PGP": shared_pb2.PGP,
    "X509": shared_pb2.X509,
    "SSH": shared_pb2.SSH,
}


def fill_author(author: shared_pb2.CommitAuthor, signature: Signature) -> None:
    """Write an author, committer or tagger line into `author` (no date when it had none).

    Filled in place: building a CommitAuthor and copying it in costs twice as much, and
    every commit an RPC answers has two.
    """
    author.name = signature.name
    author.email = signature.email
    author.timezone = signature.timezone
    if signature.timestamp is not None:
        author.date.seconds = signature.timestamp


def git_commit(commit: Commit, *, with_trailers: bool = False) -> shared_pb2.GitCommit:
    """A parsed commit as GitCommit; `with_trailers` adds its trailers (requests opt in)."""
    message = commit.message
    result = shared_pb2.GitCommit(
        id=commit.oid,
        subject=commit.subject,
        body=message[:MAX_MESSAGE_BYTES],
        body_size=len(message),
        parent_ids=list(commit.parents),
        tree_id=commit.tree,
        signature_type=_SIGNATURE_TYPES.get(signature_type(commit.signature), shared_pb2.NONE)
        if commit.signature
        else shared_pb2.NONE,
        encoding=commit.encoding.decode("utf-8", "replace"),
    )
    if commit.author.name or commit.author.email or commit.author.timestamp is not None:
        fill_author(result.author, commit.author)
    if commit.committer.name or commit.committer.email or commit.committer.timestamp is not None:
        fill_author(result.committer, commit.committer)
    if with_trailers:
        result.trailers.extend(
            shared_pb2.CommitTrailer(key=key, value=value)
            for key, value in commit_trailers(message)
        )
    return result


def git_tag(
    tag: Tag, *, name: bytes | None = None, target_commit: Commit | None = None
) -> shared_pb2.Tag:
    """An annotated tag as Gitaly's Tag: message without trailing newlines, cut at 10 KiB."""
    message = tag.message.rstrip(b"\n")
    result = shared_pb2.Tag(
        name=tag.name if name is None else name,
        id=tag.oid,
        message=message[:MAX_MESSAGE_BYTES],
        message_size=len(message),
        signature_type=_SIGNATURE_TYPES.get(signature_type(tag.signature), shared_pb2.NONE)
        if tag.signature
        else shared_pb2.NONE,
    )
    if tag.tagger is not None:
        fill_author(result.tagger, tag.tagger)
    if target_commit is not None:
        result.target_commit.CopyFrom(git_commit(target_commit))
    return result
