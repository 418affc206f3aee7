"""The hooks a push runs, for any transport that serves receive-pack.

The gRPC services (through rpc/pack_streams.py) and the HTTP gateway both build the
hooks payload here, so a push behaves the same whichever way it came in.

Only hooks with work are requested, and git only finds those (each hook is a Python
process, several per push): pre-receive always (the access check), post-receive when
GitLab's API or a custom post-receive hook waits for it, update when a custom update
hook exists. reference-transaction has nothing to do until the server records ref
updates itself (Gitaly votes with Praefect there); HookService still accepts it.
"""

from __future__ import annotations

import trio

from trio_gitaly.git.command import CommandFactory
from trio_gitaly.git.refs import object_format
from trio_gitaly.hooks.custom import CustomHookError, find_hooks
from trio_gitaly.hooks.install import HookSetup
from trio_gitaly.hooks.payload import Hook, UserDetails
from trio_gitaly.transport.commands import Hooks


async def push_hooks(
    setup: HookSetup,
    git: CommandFactory,
    *,
    repository_json: str,
    repo_path: str,
    user: UserDetails,
) -> Hooks:
    """The hooks receive-pack runs for this push, with the pusher's identity.

    Args:
        setup: where the hooks are and how they call back into the server.
        git: runs `rev-parse` for the repository's object format.
        repository_json: the gitaly.Repository message as protojson text.
        repo_path: the repository's directory.
        user: who pushes (gl_id, username, protocol, remote IP).

    Cancellation: raises Cancelled; nothing was changed.
    """
    requested = await trio.to_thread.run_sync(requested_hooks, setup, repo_path)
    config, env = setup.git_options(
        repository_json=repository_json,
        object_format=await object_format(git, repo_path),
        requested=requested,
        user=user,
    )
    return Hooks(config, env)


def requested_hooks(setup: HookSetup, repo_path: str) -> Hook:
    """The hooks a push to `repo_path` needs. Blocking (lists hook directories)."""
    requested = Hook.PRE_RECEIVE
    if setup.gitlab_configured or _has_custom(setup, repo_path, "post-receive"):
        requested |= Hook.POST_RECEIVE
    if _has_custom(setup, repo_path, "update"):
        requested |= Hook.UPDATE
    return requested


def _has_custom(setup: HookSetup, repo_path: str, name: str) -> bool:
    try:
        return bool(find_hooks(repo_path, name, setup.custom_hooks_dir))
    except CustomHookError:
        # Unlistable: let the hook run, so that its RPC reports the problem.
        return True
