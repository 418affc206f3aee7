"""Git's hooks, served by trio-gitaly: the payload, the hooks directory and the entry point.

git never runs a repository's own hooks: receive-pack gets `core.hooksPath` pointing at
our hooks directory, whose entries run the entry point (`python -m trio_gitaly.hooks`),
which calls HookService over the internal socket with `GITALY_HOOKS_PAYLOAD`. The
server's side of each hook (GitLab's API, custom hooks) is in `manager` and `custom`.
Keep this package's import light: every hook run imports it.
"""
