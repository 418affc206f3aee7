"""Graceful restart: on SIGHUP a successor process takes over the listening sockets.

    old process (serving)                            successor (same argv and env)
    SIGHUP: start the successor with the listening   re-reads the config; adopts the
      sockets' fds and a pipe's write end        →     inherited fds whose kind and address
    keeps serving meanwhile                            match, binds the rest, starts its tree
    one byte on the pipe: "Upgrade succeeded"    ←   writes the pid file, then the byte
    stops accepting, drains until
      graceful_restart_timeout, exits 0

The listening sockets are the same kernel objects in both processes, so the accept queue
never closes: a client connecting during the switch waits in it, whichever process takes
it. The internal socket is not handed over (it lives in the per-process runtime
directory), nor is anything that serves a client: in-flight RPCs and clones finish in the
old process. A successor that fails (exits, closes the pipe, is not ready within
READY_TIMEOUT_S) is stopped and the old process keeps serving.

The successor is started in its own process group and never waited for once it is
ready: the old process exiting, or a signal to the old process's group, leaves it be.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Final, final

import trio

from trio_gitaly.lifecycle import Lifecycle

LOG = logging.getLogger("trio_gitaly.upgrade")

#: The variable that tells a successor what it inherits (JSON: the ready pipe's fd and
#: the listeners' fds by kind and configured address).
HANDOVER_ENV: Final = "TRIO_GITALY_HANDOVER"
#: How long a successor may take to become ready (tableflip's default, which Gitaly
#: uses). Start-up is normally well under a second; git detection and storages set the pace.
READY_TIMEOUT_S: Final = 60.0
#: After a successor closed its pipe without "ready", how long it gets to exit before it
#: is killed (it is on its way out: its start-up failed).
EXIT_WAIT_S: Final = 5.0
#: Waiting for a killed (SIGKILL) successor to be reaped: immediate unless the kernel
#: is stuck, and then we would rather leave a zombie than hang.
KILL_WAIT_S: Final = 5.0
_READY: Final = b"R"

# (kind, configured address) -> the fds of its listening sockets
Listeners = Mapping[tuple[str, str], Sequence[int]]


class HandoverError(Exception):
    """HANDOVER_ENV is malformed: this process cannot tell what it inherited."""


@final
class Handover:
    """This process's side of graceful restarts.

    What it inherited from a predecessor (until adopted or closed), whether it still owes
    that predecessor its "ready", and whether it handed its own sockets to a successor.
    `argv` is how a successor is started; empty means this process does not upgrade.
    """

    def __init__(
        self,
        argv: Sequence[str] = (),
        *,
        inherited: Listeners | None = None,
        ready_fd: int | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self._inherited = {key: list(fds) for key, fds in (inherited or {}).items()}
        self._ready_fd = ready_fd
        self.handed_over = False

    @classmethod
    def from_environ(cls, argv: Sequence[str], environ: MutableMapping[str, str]) -> Handover:
        """What a predecessor passed in `environ` (the variable is removed, so that no
        child of ours sees it); no variable means a first start.

        Raises:
            HandoverError: the variable is not what a predecessor writes.
        """
        raw = environ.pop(HANDOVER_ENV, None)
        if raw is None:
            return cls(argv)
        try:
            data = json.loads(raw)
            ready_fd = int(data["ready_fd"])
            inherited = {
                (str(kind), str(address)): [int(fd) for fd in fds]
                for kind, address, fds in data["listeners"]
            }
        except (ValueError, TypeError, KeyError) as exc:
            raise HandoverError(f"malformed {HANDOVER_ENV}: {exc}") from None
        return cls(argv, inherited=inherited, ready_fd=ready_fd)

    @property
    def awaiting_ready(self) -> bool:
        """Whether a predecessor still serves, waiting for our "ready"."""
        return self._ready_fd is not None

    @property
    def owns_listeners(self) -> bool:
        """Whether this process alone serves its listeners, so that stopping may remove
        what they leave behind (the unix socket file)."""
        return not self.handed_over and self._ready_fd is None

    def take(self, kind: str, address: str) -> list[socket.socket] | None:
        """The inherited listening sockets of (kind, configured address), or None.

        Raises:
            OSError: an inherited fd is not a socket.
        """
        fds = self._inherited.pop((kind, address), None)
        if fds is None:
            return None
        sockets = []
        for fd in fds:
            sock = socket.socket(fileno=fd)
            # Ours now; a successor gets it through pass_fds, nothing else we start.
            sock.set_inheritable(False)
            sock.setblocking(False)
            sockets.append(sock)
        LOG.info(
            "adopted inherited listener", extra={"fields": {"schema": kind, "address": address}}
        )
        return sockets

    def close_unused(self) -> None:
        """Close inherited sockets the config no longer names (e.g. a removed listener)."""
        for (kind, address), fds in self._inherited.items():
            LOG.info(
                "closing inherited listener the config no longer has",
                extra={"fields": {"schema": kind, "address": address}},
            )
            for fd in fds:
                os.close(fd)
        self._inherited.clear()

    def signal_ready(self) -> None:
        """Tell the predecessor we serve: it stops accepting and drains."""
        if self._ready_fd is None:
            return
        try:
            os.write(self._ready_fd, _READY)
        except OSError as exc:
            # It gave up on us (timeout) or died; either way we are the server now.
            LOG.warning(
                "could not tell the old process we are ready", extra={"fields": {"error": str(exc)}}
            )
        finally:
            os.close(self._ready_fd)
            self._ready_fd = None


@final
class Upgrader:
    """The upgrade node: runs the upgrades SIGHUP asks for, one at a time.

    The signals node calls `request` on SIGHUP (it traps signals until the process
    ends, so a SIGHUP while stopping is refused, not fatal); `serve` is the node the
    upgrades run in. Without `handover.argv` it does nothing and SIGHUP stays untrapped.
    """

    def __init__(
        self, handover: Handover | None, listeners: Listeners, lifecycle: Lifecycle, grace_s: float
    ) -> None:
        self._handover = handover or Handover()
        self._listeners = listeners
        self._lifecycle = lifecycle
        self._grace_s = grace_s
        self._upgrades: trio.Nursery | None = None
        self._in_progress = False

    @property
    def enabled(self) -> bool:
        """Whether SIGHUP upgrades (this process knows how to start a successor)."""
        return bool(self._handover.argv)

    @property
    def handed_over(self) -> bool:
        """Whether a successor serves our listeners now."""
        return self._handover.handed_over

    def request(self) -> None:
        """Start an upgrade, or log why not (one in progress, not ready, stopping)."""
        refusal = self._refusal()
        if refusal:
            LOG.warning("upgrade refused", extra={"fields": {"reason": refusal}})
            return
        assert self._upgrades is not None
        self._in_progress = True
        self._upgrades.start_soon(self._upgrade_once)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run requested upgrades until the server stops.

        Returns once stopping and no upgrade is in progress: one in progress when the
        stop begins has its successor stopped within the grace period (SIGTERM, then
        SIGKILL at the deadline). Cancellation: that successor is killed at once.
        """
        async with trio.open_nursery() as upgrades:
            if self.enabled:
                self._upgrades = upgrades
            task_status.started()
            await self._lifecycle.stopping.wait()
            self._upgrades = None

    def _refusal(self) -> str:
        if self._handover.handed_over:
            return "already upgraded, this process is stopping"
        if self._lifecycle.stopping.is_set():
            return "this process is stopping"
        if self._in_progress:
            return "an upgrade is already in progress"
        if not self._lifecycle.ready or self._handover.awaiting_ready or self._upgrades is None:
            return "this process is not ready yet"
        return ""

    async def _upgrade_once(self) -> None:
        try:
            await self._upgrade()
        finally:
            self._in_progress = False

    async def _upgrade(self) -> None:
        read_fd, write_fd = os.pipe()
        async with trio.lowlevel.FdStream(read_fd) as ready:
            try:
                successor = _Successor.spawn(self._handover.argv, self._listeners, write_fd)
            except OSError as exc:
                _failed(f"cannot start the new process: {exc}")
                return
            finally:
                # The successor holds the only write end: its exit is our EOF.
                os.close(write_fd)
            LOG.info("starting upgrade", extra={"fields": {"new_pid": successor.pid}})
            succeeded = False
            try:
                succeeded = await self._supervise(successor, ready)
            finally:
                if not succeeded:
                    with trio.CancelScope(shield=True):
                        await successor.kill()
                # Never waited for once it serves: it outlives us.
                successor.release()

    async def _supervise(self, successor: _Successor, ready: trio.lowlevel.FdStream) -> bool:
        outcome = "timeout"
        with trio.move_on_after(READY_TIMEOUT_S):
            outcome = await _first_of(ready, self._lifecycle)
        if outcome == "ready" and not self._lifecycle.stopping.is_set():
            self._handover.handed_over = True
            LOG.info("Upgrade succeeded", extra={"fields": {"new_pid": successor.pid}})
            LOG.info("[graceful upgrade] stopping old trio-gitaly")
            self._lifecycle.begin_stop(self._grace_s)
            return True
        if outcome == "exited":
            with trio.move_on_after(EXIT_WAIT_S):
                await successor.wait()
            if successor.returncode is None:
                _failed("the new process closed its readiness pipe")
            else:
                _failed(f"the new process exited with status {successor.returncode}")
            return False
        if outcome == "timeout":
            _failed(f"the new process was not ready within {READY_TIMEOUT_S:g}s")
            deadline = trio.current_time() + self._grace_s
        else:
            # SIGTERM or SIGINT during the upgrade: the operator wants this server gone,
            # not replaced; the successor gets the same grace period as our RPCs.
            _failed("stopping: the new process is stopped as well")
            deadline = self._lifecycle.grace_deadline
        # It may have accepted clients already: let it drain them as we do ours.
        successor.send_signal(signal.SIGTERM)
        with trio.move_on_at(deadline):
            await successor.wait()
        return False


@final
class _Successor:
    """The new process, ours to wait for until it is ready, then left to itself.

    Not a trio.Process (nor a subprocess.Popen): those expect to be waited for, and
    warn when dropped while the process runs, which is the point of a successor.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except OSError:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise

    @classmethod
    def spawn(cls, argv: Sequence[str], listeners: Listeners, ready_fd: int) -> _Successor:
        """Start `argv` with `ready_fd` and the listeners' fds, in its own process group.

        Its own group: a signal to ours (a terminal's ^C, a supervisor's kill of the
        group) must not reach the process meant to outlive us. Only the fds named here
        are inherited (ours are close-on-exec), as inheritable duplicates.
        """
        duplicates: list[int] = []

        def inheritable(fd: int) -> int:
            duplicate = os.dup(fd)
            os.set_inheritable(duplicate, True)
            duplicates.append(duplicate)
            return duplicate

        try:
            passed = {key: [inheritable(fd) for fd in fds] for key, fds in listeners.items()}
            environ = {**os.environ, HANDOVER_ENV: _describe(passed, inheritable(ready_fd))}
            stdin = (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
            pid = os.posix_spawn(argv[0], list(argv), environ, file_actions=[stdin], setpgroup=0)
        finally:
            for duplicate in duplicates:
                os.close(duplicate)
        return cls(pid)

    def send_signal(self, signum: int) -> None:
        if self._pidfd is not None and self.returncode is None:
            signal.pidfd_send_signal(self._pidfd, signum)

    async def wait(self) -> None:
        """Wait for the exit and reap; sets `returncode`. Cancellation: stops waiting."""
        if self._pidfd is None or self.returncode is not None:
            return
        await trio.lowlevel.wait_readable(self._pidfd)
        self.returncode = _reap(self.pid)

    async def kill(self) -> None:
        """SIGKILL and reap, bounded by KILL_WAIT_S."""
        self.send_signal(signal.SIGKILL)
        with trio.move_on_after(KILL_WAIT_S):
            await self.wait()

    def release(self) -> None:
        """Stop watching the process (it may still run)."""
        if self._pidfd is not None:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


async def _first_of(ready: trio.lowlevel.FdStream, lifecycle: Lifecycle) -> str:
    """Whichever comes first: "ready" (the successor's byte), "exited" (EOF), "stopping"."""
    outcome = "stopping"
    async with trio.open_nursery() as race:

        async def read() -> None:
            nonlocal outcome
            outcome = "ready" if await ready.receive_some(1) == _READY else "exited"
            race.cancel_scope.cancel()

        race.start_soon(read)
        await lifecycle.stopping.wait()
        race.cancel_scope.cancel()
    return outcome


def _reap(pid: int) -> int:
    # Called once its pidfd is readable: the process exited, so this does not block.
    _, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status)


def _failed(reason: str) -> None:
    LOG.error("Upgrade failed", extra={"fields": {"error": reason}})


def _describe(listeners: Listeners, ready_fd: int) -> str:
    entries = [[kind, address, list(fds)] for (kind, address), fds in listeners.items()]
    return json.dumps({"ready_fd": ready_fd, "listeners": entries})
