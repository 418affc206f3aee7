"""upload-pack, receive-pack and upload-archive as a transport runs them.

`stateless` is the smart HTTP flavour: one request and one response per round, and the
ref advertisement is a request of its own. Without it (SSH), git talks with the client
for the whole session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.command import CommandFactory
from trio_gitaly.transport import pktline
from trio_gitaly.transport.options import (
    client_config,
    protocol_env,
    receive_pack_config,
    upload_pack_config,
)
from trio_gitaly.transport.session import ByteSource, Negotiation, Outcome, Sink, run_session

#: Gitaly's bound on an upload-pack negotiation: the client must say "done" by then.
UPLOAD_PACK_NEGOTIATION_TIMEOUT_S: Final = 10 * 60.0
#: Gitaly's bound on the request of an upload-archive (its arguments, up to a flush).
UPLOAD_ARCHIVE_REQUEST_TIMEOUT_S: Final = 60.0
#: How long a receive-pack whose client went away gets to remove its quarantine.
RECEIVE_PACK_TERMINATE_GRACE_S: Final = 0.5
#: core.hooksPath for commands that must run no hook at all.
NO_HOOKS_PATH: Final = "/dev/null"
#: What git says (its whole stderr) when its client went away mid-session.
HUNG_UP: Final = b"fatal: the remote end hung up unexpectedly\n"

Service = Literal["upload-pack", "receive-pack"]


@dataclass(frozen=True)
class Target:
    """The repository a transport command serves, and the client's parameters."""

    repo_path: str
    env: Mapping[str, str] = field(default_factory=dict)
    git_config_options: Sequence[str] = ()
    git_protocol: str = ""


@dataclass(frozen=True)
class Hooks:
    """How receive-pack runs our hooks: `-c` options and environment (hooks payload)."""

    config: Sequence[tuple[str, str]]
    env: Mapping[str, str]


def _env(target: Target, *extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(target.env)
    env.update(protocol_env(target.git_protocol))
    for more in extra:
        env.update(more)
    return env


async def advertise_refs(git: CommandFactory, target: Target, service: Service, out: Sink) -> None:
    """Write the body of `GET info/refs?service=git-<service>` to `out`.

    Raises:
        GitalyError: INVALID_ARGUMENT for bad config options; INTERNAL if git fails.

    Cancellation: git is killed; part of the body may have been written.
    """
    config = upload_pack_config() if service == "upload-pack" else receive_pack_config()
    if service == "receive-pack":
        # The advertisement must not run (or need) the hooks a push runs.
        config.append(("core.hooksPath", NO_HOOKS_PATH))
    config += client_config(target.git_config_options)
    await out(pktline.encode(f"# service=git-{service}\n".encode()) + pktline.flush())
    outcome = await run_session(
        git,
        GitCommand(service, flags=["--stateless-rpc", "--advertise-refs"], args=[target.repo_path]),
        repo_path=target.repo_path,
        config=config,
        env=_env(target),
        stdin=None,
        stdout=out,
    )
    _check(service, outcome)


async def upload_pack(
    git: CommandFactory,
    target: Target,
    *,
    stdin: ByteSource,
    stdout: Sink,
    stderr: Sink | None,
    stateless: bool,
) -> Outcome:
    """Serve a fetch or clone: git upload-pack fed by `stdin`, answering on `stdout`.

    Returns git's outcome; a non-zero exit is the caller's to report.

    Raises:
        GitalyError: INVALID_ARGUMENT for bad config options; DEADLINE_EXCEEDED when the
            negotiation takes longer than `UPLOAD_PACK_NEGOTIATION_TIMEOUT_S`.

    Cancellation: git and its pack-objects are killed and reaped.
    """
    config = upload_pack_config() + client_config(target.git_config_options)
    flags = ["--stateless-rpc"] if stateless else []
    return await run_session(
        git,
        GitCommand("upload-pack", flags=flags, args=[target.repo_path]),
        repo_path=target.repo_path,
        config=config,
        env=_env(target),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        negotiation=Negotiation(pktline.DONE, UPLOAD_PACK_NEGOTIATION_TIMEOUT_S, "negotiation"),
    )


async def receive_pack(
    git: CommandFactory,
    target: Target,
    hooks: Hooks,
    *,
    stdin: ByteSource,
    stdout: Sink,
    stderr: Sink | None,
    stateless: bool,
) -> Outcome:
    """Serve a push: git receive-pack with our hooks, fed by `stdin`.

    Pushed objects stay in git's quarantine directory until pre-receive accepts them.

    Returns git's outcome; a non-zero exit is the caller's to report (`HUNG_UP` as its
    stderr when the client went away mid-push).

    Raises:
        GitalyError: INVALID_ARGUMENT for bad config options.

    Cancellation: receive-pack's stdin is closed and it gets
        `RECEIVE_PACK_TERMINATE_GRACE_S` to fail the push and remove its quarantine
        directory, then its group is killed.
    """
    # Client options first: they must not be able to override where hooks come from.
    config = [*client_config(target.git_config_options), *receive_pack_config(), *hooks.config]
    flags = ["--stateless-rpc"] if stateless else []
    return await run_session(
        git,
        GitCommand("receive-pack", flags=flags, args=[target.repo_path]),
        repo_path=target.repo_path,
        config=config,
        env=_env(target, hooks.env),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        terminate_grace_s=RECEIVE_PACK_TERMINATE_GRACE_S,
    )


async def upload_archive(
    git: CommandFactory,
    target: Target,
    *,
    stdin: ByteSource,
    stdout: Sink,
    stderr: Sink | None,
) -> Outcome:
    """Serve `git archive --remote`: git upload-archive fed by `stdin`.

    Raises:
        GitalyError: DEADLINE_EXCEEDED when the client's arguments do not end (flush)
            within `UPLOAD_ARCHIVE_REQUEST_TIMEOUT_S`.

    Cancellation: git is killed and reaped.
    """
    return await run_session(
        git,
        GitCommand("upload-archive", args=[target.repo_path]),
        repo_path=target.repo_path,
        config=[],
        env=_env(target),
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        negotiation=Negotiation(
            pktline.FLUSH, UPLOAD_ARCHIVE_REQUEST_TIMEOUT_S, "upload-archive request"
        ),
    )


def _check(service: str, outcome: Outcome) -> None:
    if outcome.returncode != 0:
        message = outcome.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitalyError(
            StatusCode.INTERNAL,
            f"{service} exited with status {outcome.returncode}"
            + (f": {message[-1]}" if message else ""),
        )
