"""`trio-gitaly ssh`: the program git runs as GIT_SSH_COMMAND to reach trio-gitaly.

git runs `<command> [-o SendEnv=GIT_PROTOCOL] [-p PORT] [-4|-6] HOST "git-upload-pack
'/<storage>/<relative path>'"` and talks the pack protocol on our stdin and stdout. We
turn the remote command into the matching SSHService call and relay bytes both ways;
the host is ignored. Before that, git probes its ssh program with `-G HOST`: answering
it (exit 0) makes git treat us as OpenSSH, the variant it hands protocol v2 to (in the
GIT_PROTOCOL environment variable, which we forward as `git_protocol`).

The process lives for one git session: the imports of the call's machinery are deferred
to the call (git's probe never pays for them), and the process ends with os._exit.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn

from trio_gitaly.clients.channel import TOKEN_ENV, client_token
from trio_gitaly.defaults import EMBEDDED_LISTEN_ADDR

if TYPE_CHECKING:
    from trio_gitaly.clients.channel import Dialled

ADDRESS_ENV: Final = "TRIO_GITALY_ADDRESS"
#: Where the server listens when neither --address nor the environment says: the TCP
#: listener of the embedded default config (its socket is relative to the server's cwd).
DEFAULT_ADDRESS: Final = f"tcp://{EMBEDDED_LISTEN_ADDR}"
#: How much of git's output to the server one request message carries at most.
STDIN_CHUNK_BYTES: Final = 64 * 1024

#: How often to check whether git is still alive, once it stopped reading.
GIT_WATCH_INTERVAL_S: Final = 0.05

EXIT_OK: Final = 0
#: A failed call without an exit status from git.
EXIT_FAILURE: Final = 1
#: git's (and ssh servers') status for a repository or command that cannot be served.
EXIT_FATAL: Final = 128
#: A client-side error before any call (bad address, unreadable file), as ssh's own.
EXIT_SSH_ERROR: Final = 255
#: git went away while we relayed its output (the status a SIGPIPE death would give).
EXIT_BROKEN_PIPE: Final = 128 + signal.SIGPIPE
EXIT_INTERRUPTED: Final = 128 + signal.SIGINT

# The remote commands git runs over ssh, and the RPC serving each.
RPCS: Final = {
    "git-upload-pack": "SSHUploadPack",
    "git-receive-pack": "SSHReceivePack",
    "git-upload-archive": "SSHUploadArchive",
}
# Codes that mean "this repository cannot be served", which ssh servers report as 128.
_FATAL_CODES: Final = ("NOT_FOUND", "INVALID_ARGUMENT")

_DESCRIPTION: Final = f"""\
Connect git to a trio-gitaly server: use as GIT_SSH_COMMAND, e.g.
  GIT_SSH_COMMAND="trio-gitaly ssh --address unix:///run/trio-gitaly.sock" \\
    git clone ssh://trio-gitaly/default/group/project.git
The URL's path is /<storage>/<relative path>; its host is ignored.

The address is --address, else ${ADDRESS_ENV}, else {DEFAULT_ADDRESS}
(the embedded default config's TCP listener). The token is read from --token-file,
else ${TOKEN_ENV}. tls:// servers are verified against --ca-file, else the system's roots.
Pushes name the pushing user with --gl-id (default $GL_ID, else user-<uid>),
--gl-username (default $GL_USERNAME, else the login name) and --gl-repository
(default $GL_REPOSITORY).

Exit status: git's on the server; 128 when the repository or command cannot be
served; 1 for other failed calls; 255 for errors before the call (as ssh's own)."""


class CommandError(ValueError):
    """A remote command trio-gitaly does not serve; the message says why."""


@dataclass(frozen=True)
class RemoteCommand:
    """What git asked the remote side to run: an RPC on a repository."""

    rpc: str  # "SSHUploadPack", "SSHReceivePack" or "SSHUploadArchive"
    storage: str
    relative_path: str


def parse_remote_command(command: str) -> RemoteCommand:
    """The RPC and repository of git's remote command (`git-upload-pack '/default/x.git'`).

    The path may start with "/" or not; its first component is the storage. The
    two-word form (`git upload-pack ...`) is accepted too.

    Raises:
        CommandError: not one of the three git commands, or no storage and path.
    """
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise CommandError(f"cannot parse remote command {command!r}: {exc}") from None
    if len(words) == 3 and words[0] == "git":
        words = [f"git-{words[1]}", words[2]]
    if len(words) != 2 or words[0] not in RPCS:
        served = ", ".join(RPCS)
        raise CommandError(f"unsupported remote command {command!r}: only {served} are served")
    storage, _, relative_path = words[1].lstrip("/").partition("/")
    if not storage or not relative_path.strip("/"):
        raise CommandError(
            f"invalid repository path {words[1]!r}: expected /<storage>/<relative path>"
        )
    return RemoteCommand(RPCS[words[0]], storage, relative_path)


def add_parser(commands: Any) -> None:
    """Register the `ssh` subcommand on `commands` (the CLI's subparsers)."""
    ssh = commands.add_parser(
        "ssh",
        help="connect git to a server (use as GIT_SSH_COMMAND)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssh.set_defaults(handler=run)
    ssh.add_argument("--address", metavar="URL", help="unix:///path, tcp://host:port, tls://...")
    ssh.add_argument("--token-file", metavar="PATH", help="file holding the server's token")
    ssh.add_argument("--ca-file", metavar="PATH", help="PEM roots to verify a tls:// server")
    ssh.add_argument("--gl-id", metavar="ID", help="pushing user's GitLab id (user-<n>)")
    ssh.add_argument("--gl-username", metavar="NAME", help="pushing user's name")
    ssh.add_argument("--gl-repository", metavar="ID", help="GitLab repository id (project-<n>)")
    # What git passes to an OpenSSH-like program: accepted, and meaningless here.
    ssh.add_argument("-o", dest="ssh_options", action="append", metavar="OPTION", help="ignored")
    ssh.add_argument("-p", dest="port", metavar="PORT", help="ignored")
    ssh.add_argument("-4", dest="ipv4", action="store_true", help="ignored")
    ssh.add_argument("-6", dest="ipv6", action="store_true", help="ignored")
    ssh.add_argument(
        "-G", dest="probe", action="store_true", help="git's probe for OpenSSH: exit 0"
    )
    ssh.add_argument("host", nargs="?", help="ignored")
    ssh.add_argument("command", nargs="*", help="git's remote command")


def run(args: argparse.Namespace) -> NoReturn:
    """Serve git's session and end the process with the session's exit status."""
    try:
        status = _session(args)
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    sys.stderr.flush()
    os._exit(status)


def _session(args: argparse.Namespace) -> int:
    if args.probe:
        return EXIT_OK
    if not args.command:
        _say("no remote command: git runs this as GIT_SSH_COMMAND (see --help)")
        return EXIT_FATAL
    try:
        remote = parse_remote_command(" ".join(args.command))
    except CommandError as exc:
        _say(str(exc))
        return EXIT_FATAL
    address = args.address or os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS
    from trio_gitaly.clients.channel import AddressError, dial, parse_address
    from trio_gitaly.malloc import tune_for_streaming

    tune_for_streaming()

    try:
        token = client_token(args.token_file)
        scheme, target = parse_address(address)
    except (AddressError, OSError) as exc:
        _say(str(exc))
        return EXIT_SSH_ERROR
    try:
        dialled = dial(scheme, target, ca_file=args.ca_file)
    except AddressError as exc:
        _say(str(exc))
        return EXIT_SSH_ERROR
    except OSError as exc:
        # UNAVAILABLE, as gRPC clients report a server they cannot reach.
        _say(f"failed to connect to {address}: {exc} (UNAVAILABLE)")
        return EXIT_FAILURE
    with dialled.sock:
        return _call(dialled, remote, _first_request(args, remote), token)


def _first_request(args: argparse.Namespace, remote: RemoteCommand) -> Any:
    from trio_gitaly.rpc.gen.gitaly import shared_pb2, ssh_pb2

    gl_repository = _default(args.gl_repository, "GL_REPOSITORY", "")
    repository = shared_pb2.Repository(
        storage_name=remote.storage,
        relative_path=remote.relative_path,
        gl_repository=gl_repository,
    )
    if remote.rpc == "SSHUploadArchive":
        return ssh_pb2.SSHUploadArchiveRequest(repository=repository)
    git_protocol = os.environ.get("GIT_PROTOCOL", "")
    if remote.rpc == "SSHUploadPack":
        return ssh_pb2.SSHUploadPackRequest(repository=repository, git_protocol=git_protocol)
    return ssh_pb2.SSHReceivePackRequest(
        repository=repository,
        git_protocol=git_protocol,
        gl_id=_default(args.gl_id, "GL_ID", f"user-{os.getuid()}"),
        gl_username=_default(args.gl_username, "GL_USERNAME", _login()),
        gl_repository=gl_repository,
    )


def _default(given: str | None, env: str, fallback: str) -> str:
    return given if given is not None else os.environ.get(env, fallback)


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, no LOGNAME
        return ""


def _call(dialled: Dialled, remote: RemoteCommand, first: Any, token: str) -> int:
    from trio_gitaly.clients.channel import auth_metadata
    from trio_gitaly.clients.relay_call import PeerGone, Relay, call
    from trio_gitaly.rpc.gen.gitaly import ssh_pb2

    request_type = type(first)
    parse_response = getattr(ssh_pb2, f"{remote.rpc}Response").FromString
    exit_status: int | None = None

    def on_message(data: bytes) -> None:
        nonlocal exit_status
        response = parse_response(data)
        if response.stdout:
            _write_all(1, response.stdout)
        if response.stderr:
            _write_stderr(response.stderr)
        if response.HasField("exit_status"):
            exit_status = response.exit_status.value

    relay = Relay(
        input_fd=0,
        wrap_input=lambda chunk: request_type(stdin=chunk).SerializeToString(),
        on_message=on_message,
        input_chunk_bytes=STDIN_CHUNK_BYTES,
        watch_fd=_watchable_stdout(),
        peer_gone=_lineage_check(),
        watch_interval_s=GIT_WATCH_INTERVAL_S,
    )
    try:
        status = call(
            dialled.sock,
            f"/gitaly.SSHService/{remote.rpc}",
            first=first.SerializeToString(),
            relay=relay,
            metadata=auth_metadata(token),
            authority=dialled.authority,
            scheme=dialled.scheme,
        )
    except (BrokenPipeError, PeerGone):
        # git is gone: the stream was reset, so the server kills its git at once.
        return EXIT_BROKEN_PIPE
    if status.code != 0:
        # The failed call is the error: it has the status code and details.
        _say(f"{status.message} ({status.code_name})")
        if exit_status:
            return exit_status
        return EXIT_FATAL if status.code_name in _FATAL_CODES else EXIT_FAILURE
    return EXIT_OK if exit_status is None else exit_status


def _watchable_stdout() -> int | None:
    """Our stdout when git's death can show on it (a pipe or socket), else None.

    git killed mid-clone may leave us waiting for the server with nothing to write, so
    a failed write cannot be the only sign. Once nobody reads our stdout (the kernel
    flags the write end of a pipe, POLLERR, or socket, POLLHUP), git either died or
    finished and waits for our exit status: `_lineage_check` tells which.
    """
    try:
        mode = os.fstat(1).st_mode
    except OSError:  # not open: nothing to watch
        return None
    return 1 if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else None


def _lineage_check() -> Callable[[], bool]:
    """A test of whether git died: only a dead git reparents its children.

    It watches our parent, and its parent (git runs us through `sh -c` when
    GIT_SSH_COMMAND has arguments).
    """
    parent = os.getppid()
    grandparent = _parent_of(parent)

    def lineage_broken() -> bool:
        return os.getppid() != parent or (
            grandparent is not None and _parent_of(parent) != grandparent
        )

    return lineage_broken


def _parent_of(pid: int) -> int | None:
    """The parent of process `pid` (Linux /proc), None when unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold anything, so split after its ")".
    fields = stat_line[stat_line.rindex(b")") + 2 :].split()
    return int(fields[1])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_stderr(data: bytes) -> None:
    # Progress and messages for the user: losing them must not end the session.
    try:
        _write_all(2, data)
    except OSError:
        return


def _say(message: str) -> None:
    print(f"trio-gitaly ssh: {message}", file=sys.stderr)
