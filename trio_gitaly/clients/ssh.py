"""`trio-gitaly ssh`: the program git runs as GIT_SSH_COMMAND to reach trio-gitaly.

git runs `<command> [-o SendEnv=GIT_PROTOCOL] [-p PORT] [-4|-6] HOST "git-upload-pack
'/<storage>/<relative path>'"` and talks the pack protocol on our stdin and stdout. We
turn the remote command into the matching SSHService call and relay bytes both ways;
the host is ignored. Before that, git probes its ssh program with `-G HOST`: answering
it (exit 0) makes git treat us as OpenSSH, the variant it hands protocol v2 to (in the
GIT_PROTOCOL environment variable, which we forward as `git_protocol`).

The process lives for one git session: imports of grpc and the generated messages are
deferred to the call, and the process ends with os._exit (grpcio's request thread may
still be blocked reading our stdin).
"""

from __future__ import annotations

import argparse
import os
import select
import shlex
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn

from trio_gitaly.clients.channel import TOKEN_ENV, client_token
from trio_gitaly.defaults import EMBEDDED_LISTEN_ADDR

if TYPE_CHECKING:
    import grpc

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
_READER_GONE: Final = select.POLLERR | select.POLLHUP | select.POLLNVAL
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
    from trio_gitaly.clients.channel import AddressError, open_channel
    from trio_gitaly.malloc import tune_for_streaming

    tune_for_streaming()

    try:
        token = client_token(args.token_file)
        channel = open_channel(address, ca_file=args.ca_file)
    except (AddressError, OSError) as exc:
        _say(str(exc))
        return EXIT_SSH_ERROR
    return _call(channel, remote, _first_request(args, remote), token)


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


def _call(channel: grpc.Channel, remote: RemoteCommand, first: Any, token: str) -> int:
    import grpc

    from trio_gitaly.clients.channel import auth_metadata
    from trio_gitaly.rpc.gen.gitaly import ssh_pb2

    request_type = type(first)
    response_type = getattr(ssh_pb2, f"{remote.rpc}Response")
    method = channel.stream_stream(
        f"/gitaly.SSHService/{remote.rpc}",
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    responses = method(_requests(first, request_type), metadata=auth_metadata(token))
    git_gone = threading.Event()
    finished = threading.Event()

    def on_git_gone() -> None:
        git_gone.set()
        responses.cancel()

    _watch_git(finished, on_git_gone)
    exit_status: int | None = None
    try:
        for response in responses:
            if response.stdout:
                _write_all(1, response.stdout)
            if response.stderr:
                _write_stderr(response.stderr)
            if response.HasField("exit_status"):
                exit_status = response.exit_status.value
    except BrokenPipeError:
        # git is gone: end the call now, so that the server kills its git at once.
        responses.cancel()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        responses.cancel()
        raise
    except grpc.RpcError as error:
        if git_gone.is_set():
            return EXIT_BROKEN_PIPE
        # The failed call is the error: it has the status code and details.
        code = error.code()
        _say(f"{error.details()} ({code.name})")
        if exit_status:
            return exit_status
        return EXIT_FATAL if code.name in _FATAL_CODES else EXIT_FAILURE
    finally:
        finished.set()
    return EXIT_OK if exit_status is None else exit_status


def _requests(first: Any, request_type: Any) -> Iterator[Any]:
    # grpcio consumes this in a thread of its own; when it ends, the request stream is
    # half-closed, which is how git's "I have nothing more to say" reaches the server.
    yield first
    while True:
        try:
            chunk = os.read(0, STDIN_CHUNK_BYTES)
        except OSError:
            return
        if not chunk:
            return
        yield request_type(stdin=chunk)


def _watch_git(finished: threading.Event, on_gone: Callable[[], None]) -> None:
    """Call `on_gone` (from a thread) if git dies before the call has `finished`.

    git killed mid-clone may leave us waiting for the server with nothing to write, so
    a failed write cannot be the only sign. Once nobody reads our stdout (the kernel
    flags the write end of a pipe, POLLERR, or socket, POLLHUP), git either died or
    finished and waits for our exit status: only the first reparents its children.
    So we then watch our parent, and its parent (git runs us through `sh -c` when
    GIT_SSH_COMMAND has arguments). A stdout that is no pipe or socket is not watched.
    """
    try:
        mode = os.fstat(1).st_mode
    except OSError:  # not open: nothing to watch
        return
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return
    parent = os.getppid()
    grandparent = _parent_of(parent)

    def lineage_broken() -> bool:
        return os.getppid() != parent or (
            grandparent is not None and _parent_of(parent) != grandparent
        )

    def watch() -> None:
        poller = select.poll()
        poller.register(1, 0)  # no events asked for: errors and hang-ups still come
        while not any(events & _READER_GONE for _, events in poller.poll()):
            pass
        while not finished.wait(GIT_WATCH_INTERVAL_S):
            if lineage_broken():
                on_gone()
                return

    threading.Thread(target=watch, name="watch-git", daemon=True).start()


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
