"""The process as one nursery tree: start-up in Gitaly's order, then serve until stopped.

    root
    ├── signals       (signals.py)               SIGTERM/SIGINT: drain; again: stop now
    ├── upgrade       (upgrade.py)               SIGHUP: a successor takes the sockets over
    ├── workers       (workers/)                 background jobs, one child each
    ├── listeners     (rpc/server.py)            one child per gRPC listener
    │   unix · internal unix · tcp · tls          each: accept loop + connection nursery
    ├── gateway       (http/gateway.py)          hypercorn: git's smart HTTP protocol
    │   └── request   (http/gateway_io.py)       its git command, killed with the request
    └── http          (http/serve.py)            /metrics /healthz /readyz /-/events

Start-up, each step logged with duration_ms: runtime directory → git → storages →
sockets bound (sockets.py) → children started → "Started trio-gitaly". Stopping:
readiness flips, the gRPC listeners and the gateway drain until the grace deadline,
then http and workers stop; the runtime directory is removed by the `with` block that
created it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from trio_gitaly import __version__, tree_state
from trio_gitaly.assembly import assemble
from trio_gitaly.config import Config
from trio_gitaly.git.version import GitSetupError, detect
from trio_gitaly.hooks.install import HookSetup, install_hooks
from trio_gitaly.http.app import build_app
from trio_gitaly.http.events import events_app
from trio_gitaly.http.gateway import Gateway
from trio_gitaly.http.serve import serve_http
from trio_gitaly.lifecycle import Lifecycle
from trio_gitaly.limits.cgroups import cgroup_manager
from trio_gitaly.metrics import Metrics
from trio_gitaly.rpc import listeners as bind
from trio_gitaly.rpc.server import GrpcServer, serve_listener
from trio_gitaly.runtime import RuntimeDirError, runtime_directory
from trio_gitaly.signals import watch_signals
from trio_gitaly.sockets import GrpcListeners, bound_sockets
from trio_gitaly.storage.locator import Locator, Storage
from trio_gitaly.storage.metadata import ensure_metadata
from trio_gitaly.upgrade import Handover, Upgrader
from trio_gitaly.workers import Worker

LOG = logging.getLogger("trio_gitaly.server")


class StartupError(Exception):
    """Start-up failed for a reason an operator can fix; the message says which."""


@dataclass
class RunningServer:
    """What a started tree hands back: where it listens and how to stop it."""

    lifecycle: Lifecycle
    metrics: Metrics
    runtime_dir: str
    grace_s: float
    # listener kind ("unix", "internal", "tcp", "tls", "http", "gateway") -> addresses
    addresses: dict[str, list[str]] = field(default_factory=dict)
    exit_code: int = 0
    tree: tree_state.TreeState = field(default_factory=tree_state.TreeState)
    _root: trio.CancelScope | None = None

    def stop(self) -> None:
        """Start a graceful stop (what the first SIGTERM does)."""
        self.lifecycle.begin_stop(self.grace_s)

    def force_stop(self) -> None:
        """Cancel everything now (what the second signal does); the exit code is 1."""
        self.exit_code = 1
        if self._root is not None:
            self._root.cancel()


_REPORTED_NOTE = "(reported by the nursery tree)"


def _reported(exc: BaseException) -> bool:
    if _REPORTED_NOTE in getattr(exc, "__notes__", ()):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_reported(inner) for inner in exc.exceptions)
    return False


@contextlib.contextmanager
def _step(message: str, **extra: Any) -> Iterator[None]:
    start = time.perf_counter()
    yield
    duration_ms = round((time.perf_counter() - start) * 1000, 3)
    LOG.info(message, extra={"fields": {"duration_ms": duration_ms, **extra}})


def _node(
    name: str, fn: Callable[..., Awaitable[None]], kind: str = tree_state.NODE
) -> Callable[..., Awaitable[None]]:
    """Wrap a child: it is in the live tree while it runs (tree_state.py), and its crash
    is logged with its name before the tree stops."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> None:
        with tree_state.node(name.rpartition("/")[2], kind=kind) as node:
            try:
                await fn(*args, **node.watch_started(kwargs))
            except Exception as exc:
                # Nodes nest (workers/x inside workers): the innermost one reports it.
                if not _reported(exc):
                    LOG.error(
                        "nursery tree node crashed, stopping the server",
                        exc_info=exc,
                        extra={"fields": {"node": name}},
                    )
                    exc.add_note(_REPORTED_NOTE)
                raise

    return run


async def serve(
    cfg: Config,
    *,
    handle_signals: bool = False,
    handover: Handover | None = None,
    workers: Sequence[tuple[str, Worker]] = (),
    task_status: trio.TaskStatus[RunningServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Start the tree, report the RunningServer once ready, serve until stopped.

    Raises StartupError before reporting started when a step fails; `handover` makes
    SIGHUP upgrade (upgrade.py). Cancellation: everything stops at once; the runtime
    directory is still removed.
    """
    process_start = _process_start()
    lifecycle = Lifecycle()
    metrics = Metrics()
    with _step("finished creating runtime directory"), _startup_errors():
        runtime = contextlib.ExitStack()
        rt = runtime.enter_context(runtime_directory(cfg.runtime_dir))
    with runtime:
        with _step("finished installing hooks"), _startup_errors():
            hooks = HookSetup(
                install_hooks(rt.path),
                rt.path,
                rt.internal_socket,
                cfg.auth.token,
                custom_hooks_dir=cfg.hooks.custom_hooks_dir,
                gitlab_configured=bool(cfg.gitlab.url),
            )
        with _step("finished detecting git version"), _startup_errors():
            git_binary = await detect(cfg.git.bin_path)
        LOG.info(
            "using Git version",
            extra={"fields": {"version": str(git_binary.version), "binary_path": git_binary.path}},
        )
        metrics.build_info.labels(__version__, str(git_binary.version)).set(1)
        with _step("finished initializing storages"):
            locator = Locator([Storage(s.name, s.path) for s in cfg.storage])
            for storage in locator.storages:
                _write_metadata(storage.path)
        # Left (and removed) after the tree, so after every git process it placed is gone.
        cgroups = runtime.enter_context(
            cgroup_manager(cfg.cgroups, [(s.name, s.path) for s in cfg.storage], metrics.registry)
        )
        parts = assemble(
            cfg,
            metrics=metrics,
            lifecycle=lifecycle,
            git_binary=git_binary,
            locator=locator,
            hooks=hooks,
            cgroups=cgroups,
        )
        running = RunningServer(
            lifecycle=lifecycle,
            metrics=metrics,
            runtime_dir=rt.path,
            grace_s=cfg.graceful_restart_timeout.seconds,
        )
        runtime.enter_context(running.tree.entered())
        async with contextlib.AsyncExitStack() as sockets:
            with _startup_errors():
                bound = await sockets.enter_async_context(
                    bound_sockets(cfg, rt.internal_socket, handover)
                )
            running.addresses = bound.addresses()
            upgrader = Upgrader(handover, bound.inheritable, lifecycle, running.grace_s)
            http_shutdown, listeners_done, gateway_done = trio.Event(), trio.Event(), trio.Event()
            async with trio.open_nursery() as root:
                running._root = root.cancel_scope
                if handle_signals:
                    hangup = upgrader.request if upgrader.enabled else None
                    signals = (running.stop, running.force_stop, hangup)
                    await root.start(_node("signals", watch_signals), *signals)
                jobs = [*parts.workers, *workers]
                await root.start(_node("workers", _run_workers), jobs, lifecycle)
                async with trio.open_nursery() as serving:
                    await serving.start(_node("upgrade", upgrader.serve))
                    await serving.start(
                        _node("listeners", _serve_listeners),
                        parts.server,
                        bound.grpc,
                        lifecycle,
                        cfg.grpc.tls_handshake_timeout.seconds,
                        gateway_done,
                        listeners_done,
                    )
                    if bound.gateway is not None and parts.gateway is not None:
                        await serving.start(
                            _serve_gateway,
                            parts.gateway,
                            bound.gateway,
                            lifecycle,
                            running.grace_s,
                            gateway_done,
                        )
                    else:
                        gateway_done.set()
                    if bound.http is not None:
                        events = events_app(
                            running, parts.limits, parts.catfile, cfg.auth, http_shutdown
                        )
                        app = build_app(metrics, lifecycle, events=events)
                        await serving.start(
                            functools.partial(
                                _node("http", serve_http), app, bound.http, shutdown=http_shutdown
                            )
                        )
                    _log_started(running, process_start)
                    task_status.started(running)
                    await lifecycle.stopping.wait()
                    LOG.warning(
                        "starting grace period",
                        extra={"fields": {"grace_period_s": running.grace_s}},
                    )
                    # HTTP outlives the drain (/readyz: 503), unless a successor serves it.
                    if upgrader.handed_over:
                        http_shutdown.set()
                    await listeners_done.wait()
                    await gateway_done.wait()
                    http_shutdown.set()
                # Served and drained: what is left (signal handling) has nothing to do.
                root.cancel_scope.cancel()
    LOG.info("trio-gitaly shutdown", extra={"fields": {"exit_code": running.exit_code}})


def _log_started(running: RunningServer, process_start: float) -> None:
    for kind, addresses in running.addresses.items():
        for address in addresses:
            LOG.info("listening at address", extra={"fields": {"address": address, "schema": kind}})
    running.lifecycle.ready = True
    duration_ms = round((time.time() - process_start) * 1000, 3)
    LOG.info("Started trio-gitaly", extra={"fields": {"duration_ms": duration_ms}})


async def _serve_listeners(
    server: GrpcServer,
    grpc_listeners: GrpcListeners,
    lifecycle: Lifecycle,
    tls_handshake_timeout_s: float,
    gateway_done: trio.Event,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    # The hooks of pushes still draining call back over the internal socket: it stops
    # accepting only once the other listeners and the gateway have drained.
    internal_stop = trio.Event()
    async with trio.open_nursery() as internal:
        async with trio.open_nursery() as external:
            for kind, listeners in grpc_listeners:
                is_internal = kind == "internal"
                await (internal if is_internal else external).start(
                    functools.partial(
                        _node(f"listener {kind}", serve_listener, tree_state.LISTENER),
                        server,
                        listeners,
                        transport="unix" if is_internal else kind,
                        lifecycle=lifecycle,
                        tls_handshake_timeout_s=tls_handshake_timeout_s,
                        stop_when=internal_stop if is_internal else None,
                    )
                )
            task_status.started()
        await gateway_done.wait()
        internal_stop.set()
    done.set()


async def _serve_gateway(
    gateway: Gateway,
    sock: socket.socket,
    lifecycle: Lifecycle,
    grace_s: float,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    # Like the gRPC listeners: no new request once stopping, the grace period for the
    # clones and pushes in flight.
    serve = functools.partial(
        _node("gateway", serve_http),
        gateway,
        sock,
        shutdown=lifecycle.stopping,
        grace_s=grace_s,
        request_kind=tree_state.RPC,
    )
    try:
        await serve(task_status=task_status)
    finally:
        done.set()


async def _run_workers(
    workers: Sequence[tuple[str, Worker]],
    lifecycle: Lifecycle,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with trio.open_nursery() as nursery:
        for name, worker in workers:
            await nursery.start(_node(f"workers/{name}", worker, tree_state.WORKER))
        task_status.started()
        await lifecycle.stopping.wait()
        # Background jobs hold no client's work: they stop when draining starts.
        nursery.cancel_scope.cancel()


def _write_metadata(storage_path: str) -> None:
    try:
        ensure_metadata(storage_path)
    except OSError as exc:
        # As Gitaly: a storage without its id still serves; ServerInfo reports "".
        LOG.error(
            "unable to write gitaly metadata file",
            extra={"fields": {"storage_path": storage_path, "error": str(exc)}},
        )


@contextlib.contextmanager
def _startup_errors() -> Iterator[None]:
    try:
        yield
    except (GitSetupError, bind.ListenError, RuntimeDirError, OSError) as exc:
        raise StartupError(str(exc)) from None


def _process_start() -> float:
    """Wall-clock time the process began (Linux /proc), for "Started" duration_ms."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as uptime:
            uptime_s = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return time.time()
    return time.time() - uptime_s + start_ticks / os.sysconf("SC_CLK_TCK")
