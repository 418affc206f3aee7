"""What the DiffService RPCs share: request validation, the object format, Gitaly's
error texts for git's exit status and refused arguments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.diff import OBJECT_HEX_LENGTHS
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.repo import Repo, open_repo

if TYPE_CHECKING:
    from trio_gitaly.git.command import CommandFactory
    from trio_gitaly.rpc.gen.gitaly import shared_pb2
    from trio_gitaly.storage.locator import Locator

# Go's names for the signals a git process may die of, as `exec.ExitError` prints them.
_SIGNAL_NAMES: Final = {
    1: "hangup",
    2: "interrupt",
    6: "aborted",
    9: "killed",
    11: "segmentation fault",
    13: "broken pipe",
    15: "terminated",
}


class LeftRightRequest(Protocol):
    """A request comparing two commits (CommitDiff, CommitDelta, RawDiff, ...)."""

    @property
    def repository(self) -> shared_pb2.Repository: ...
    @property
    def left_commit_id(self) -> str: ...
    @property
    def right_commit_id(self) -> str: ...


def validate_left_right(locator: Locator, request: LeftRightRequest) -> Repo:
    """The request's repository, after Gitaly's checks of it and of both commit ids.

    Raises:
        GitalyError: INVALID_ARGUMENT ("empty LeftCommitId", "empty RightCommitId", a bad
            repository), NOT_FOUND for a missing repository.
    """
    repo = open_repo(locator, request.repository)
    if not request.left_commit_id:
        raise invalid_argument("empty LeftCommitId")
    if not request.right_commit_id:
        raise invalid_argument("empty RightCommitId")
    return repo


def check_positional(*args: str) -> None:
    """Refuse what Gitaly's command builder refuses in a positional argument, with its
    code (INTERNAL: the RPCs wrap the builder's error as a command failure) and text."""
    for arg in args:
        if arg.startswith("-"):
            raise internal(
                f"cmd: positional arg {go_quote(arg)} cannot start with dash '-': invalid argument"
            )


async def object_format(git: CommandFactory, repo: Repo) -> str:
    """The repository's object format, "sha1" or "sha256".

    Raises:
        GitalyError: INTERNAL "detecting object format: ..." when git cannot say.

    Cancellation:
        git is killed; nothing else to undo.
    """
    result = await git.run(
        GitCommand("rev-parse", flags=["--show-object-format"]),
        repo_path=repo.path,
        env=repo.env(),
        check=False,
    )
    name = result.stdout.decode("ascii", "replace").strip()
    if result.returncode != 0 or name not in OBJECT_HEX_LENGTHS:
        raise internal(
            f"detecting object format: {exit_status(result.returncode)}"
            if result.returncode
            else f"detecting object format: unknown object format {name!r}"
        )
    return name


def exit_status(returncode: int) -> str:
    """How Go prints a failed process's status: "exit status 128", "signal: killed"."""
    if returncode < 0:
        return f"signal: {_SIGNAL_NAMES.get(-returncode, f'signal {-returncode}')}"
    return f"exit status {returncode}"


def wait_error(
    code: StatusCode, returncode: int, prefix: str = "", *, stderr: bytes = b""
) -> GitalyError:
    """The error for a git that exited non-zero, `prefix: exit status N` as Gitaly words it;
    git's stderr goes to the log only."""
    status = exit_status(returncode)
    return GitalyError(
        code,
        f"{prefix}: {status}" if prefix else status,
        metadata={"stderr": stderr.decode("utf-8", "replace")} if stderr else None,
    )
