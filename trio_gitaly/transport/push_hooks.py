"""The hooks a push runs, for any transport that serves receive-pack.

The gRPC services (through rpc/pack_streams.py) and the HTTP gateway both build the
hooks payload here, so a push behaves the same whichever way it came in.
"""

from __future__ import annotations

from trio_gitaly.git.command import CommandFactory
from trio_gitaly.git.refs import object_format
from trio_gitaly.hooks.install import HookSetup
from trio_gitaly.hooks.payload import RECEIVE_PACK_HOOKS, UserDetails
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
    config, env = setup.git_options(
        repository_json=repository_json,
        object_format=await object_format(git, repo_path),
        requested=RECEIVE_PACK_HOOKS,
        user=user,
    )
    return Hooks(config, env)
