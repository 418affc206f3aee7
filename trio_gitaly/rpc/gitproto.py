"""Git objects as Gitaly's messages: GitCommit, CommitAuthor, Tag.

Every RPC that answers with commits or tags converts through here, so the details
clients depend on (the 10 KiB message cap with the full size beside it, the subject
rule, the date fallback, signature types) are decided once.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

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


def commit_author(signature: Signature) -> shared_pb2.CommitAuthor:
    """An author, committer or tagger line as a CommitAuthor (no date when it had none)."""
    author = shared_pb2.CommitAuthor(
        name=signature.name, email=signature.email, timezone=signature.timezone
    )
    if signature.timestamp is not None:
        author.date.CopyFrom(Timestamp(seconds=signature.timestamp))
    return author


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
        result.author.CopyFrom(commit_author(commit.author))
    if commit.committer.name or commit.committer.email or commit.committer.timestamp is not None:
        result.committer.CopyFrom(commit_author(commit.committer))
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
        result.tagger.CopyFrom(commit_author(tag.tagger))
    if target_commit is not None:
        result.target_commit.CopyFrom(git_commit(target_commit))
    return result
