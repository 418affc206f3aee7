"""Unary RPCs against a bare gRPC echo, through the same serving layer and through purerpc.

Variants, all measured in every round:
- echo (our layer): `/bench.Echo/Echo` on trio-gitaly's GrpcServer and middleware chain
  (benchmarks/echo_ours.py);
- echo (bare purerpc): the same echo on purerpc 0.8's own Server (echo_purerpc.py);
- ServerInfo, FindCommit, TreeEntry, GetBlob, ListRefs on the real server, each request
  cycling through commits and files spread over the repository.

Per round: p50 and p99 latency at concurrency 1, calls/s at the mode's concurrency (32).
Metrics: each RPC ÷ our echo and ÷ purerpc's echo, and our echo ÷ purerpc's echo (what our
serving layer costs). Target: FindCommit calls/s at 32 ≥ 0.70 of our echo's.

An RPC the server answers UNIMPLEMENTED (being implemented elsewhere) is "unavailable";
one that answers wrongly (checked on a probe call) is an "error" and is not timed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from google.protobuf import wrappers_pb2

from benchmarks.core import Context, Metric, Suite, SuiteResult, Target
from benchmarks.load import Call, LoadClient
from benchmarks.measure import Bench, Variant, run_rounds
from benchmarks.repos import RepoInfo
from benchmarks.servers import ServerProcess, echo_ours, echo_purerpc, trio_gitaly
from trio_gitaly.rpc.gen.gitaly import blob_pb2, commit_pb2, ref_pb2, server_pb2, shared_pb2

STORAGE = "default"
FIND_COMMIT_RPS_TARGET = Target(">=", 0.70)
RPCS = ("ServerInfo", "FindCommit", "TreeEntry", "GetBlob", "ListRefs")
ECHO_PAYLOAD = wrappers_pb2.BytesValue(value=b"x" * 64).SerializeToString()


def relative_path(repo: RepoInfo) -> str:
    return f"bench/{repo.name}.git"


def repository(repo: RepoInfo) -> shared_pb2.Repository:
    return shared_pb2.Repository(storage_name=STORAGE, relative_path=relative_path(repo))


def echo_variants(ours: ServerProcess, purerpc: ServerProcess) -> tuple[Variant, Variant]:
    call = Call("/bench.Echo/Echo", False, (ECHO_PAYLOAD,))

    def check(responses: list[bytes]) -> str | None:
        return None if responses == [ECHO_PAYLOAD] else "the echo differs from the request"

    return (
        Variant("echo_ours", "echo (our layer)", ours, call, check=check),
        Variant("echo_purerpc", "echo (bare purerpc)", purerpc, call, check=check),
    )


def rpc_variants(server: ServerProcess, repo: RepoInfo) -> list[Variant]:
    """The RPCs, each with requests spread over the repository and a check of its answer."""
    target = repository(repo)
    head = repo.default_branch.encode()
    oids = repo.commit_oids
    blobs = repo.blobs

    def server_info(responses: list[bytes]) -> str | None:
        answer = server_pb2.ServerInfoResponse.FromString(responses[0])
        return None if answer.storage_statuses else "no storage statuses"

    def find_commit(responses: list[bytes]) -> str | None:
        commit = commit_pb2.FindCommitResponse.FromString(responses[0]).commit
        return None if commit.id == oids[0] else f"commit {commit.id!r}, expected {oids[0]}"

    def blob_check(parse: Callable[[bytes], tuple[str, bytes]]) -> Callable[..., str | None]:
        def check(responses: list[bytes]) -> str | None:
            chunks = [parse(r) for r in responses]
            oid = chunks[0][0] if chunks else ""
            size = sum(len(data) for _, data in chunks)
            _, expected_oid, expected_size = blobs[0]
            if oid != expected_oid or size != expected_size:
                return f"{oid} of {size} bytes, expected {expected_oid} of {expected_size}"
            return None

        return check

    def tree_entry(raw: bytes) -> tuple[str, bytes]:
        entry = commit_pb2.TreeEntryResponse.FromString(raw)
        return entry.oid, entry.data

    def get_blob(raw: bytes) -> tuple[str, bytes]:
        blob = blob_pb2.GetBlobResponse.FromString(raw)
        return blob.oid, blob.data

    def list_refs(responses: list[bytes]) -> str | None:
        count = sum(len(ref_pb2.ListRefsResponse.FromString(r).references) for r in responses)
        return None if count == repo.branches else f"{count} refs, expected {repo.branches}"

    path = "/gitaly.{}/{}".format
    return [
        Variant(
            "ServerInfo", "ServerInfo", server,
            Call(path("ServerService", "ServerInfo"), False,
                 (server_pb2.ServerInfoRequest().SerializeToString(),)),
            check=server_info,
        ),
        Variant(
            "FindCommit", "FindCommit", server,
            Call(path("CommitService", "FindCommit"), False, tuple(
                commit_pb2.FindCommitRequest(repository=target, revision=oid.encode())
                .SerializeToString() for oid in oids
            )),
            check=find_commit,
        ),
        Variant(
            "TreeEntry", "TreeEntry", server,
            Call(path("CommitService", "TreeEntry"), True, tuple(
                commit_pb2.TreeEntryRequest(
                    repository=target, revision=head,
                    path=name.encode(errors="surrogateescape"),
                ).SerializeToString() for name, _, _ in blobs
            )),
            check=blob_check(tree_entry),
        ),
        Variant(
            "GetBlob", "GetBlob", server,
            Call(path("BlobService", "GetBlob"), True, tuple(
                blob_pb2.GetBlobRequest(repository=target, oid=oid, limit=-1)
                .SerializeToString() for _, oid, _ in blobs
            )),
            check=blob_check(get_blob),
        ),
        Variant(
            "ListRefs", "ListRefs", server,
            Call(path("RefService", "ListRefs"), True, (
                ref_pb2.ListRefsRequest(repository=target, patterns=[b"refs/heads/"])
                .SerializeToString(),
            )),
            check=list_refs,
        ),
    ]  # fmt: skip


def metrics(bench: Bench, ours: Variant, purerpc: Variant, rpcs: list[Variant]) -> list[Metric]:
    concurrency = bench.ctx.settings.concurrency
    out: list[Metric] = []

    def three(candidate: Variant, baseline: Variant, short: str, suffix: str) -> None:
        target = (
            FIND_COMMIT_RPS_TARGET
            if candidate.key == "FindCommit" and baseline.key == "echo_ours"
            else None
        )
        out.extend(
            [
                bench.metric(
                    "p50_us", name=f"{candidate.label} p50 @1 ÷ {short}",
                    candidate=candidate, baseline=baseline, id_suffix=suffix,
                ),
                bench.metric(
                    "p99_us", name=f"{candidate.label} p99 @1 ÷ {short}",
                    candidate=candidate, baseline=baseline, id_suffix=suffix,
                ),
                bench.metric(
                    "rps", name=f"{candidate.label} calls/s @{concurrency} ÷ {short}",
                    candidate=candidate, baseline=baseline, better="higher", target=target,
                    id_suffix=suffix,
                ),
            ]
        )  # fmt: skip

    three(ours, purerpc, "purerpc echo", "")
    for rpc in rpcs:
        three(rpc, ours, "our echo", "echo_ours")
    for rpc in rpcs:
        three(rpc, purerpc, "purerpc echo", "echo_purerpc")
    return out


def run(ctx: Context) -> SuiteResult:
    result = SuiteResult()
    repositories = {relative_path(repo): repo.path for repo in ctx.repos}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            trio_gitaly(ctx.workdir, repositories, log_level=ctx.log_level)
        )
        ours_server = stack.enter_context(echo_ours(ctx.workdir, log_level=ctx.log_level))
        purerpc_server = stack.enter_context(echo_purerpc(ctx.workdir))
        client = stack.enter_context(LoadClient(ctx.workdir))
        for repo in ctx.repos:
            bench = Bench(ctx, client, "rpc", repo.name)
            ours, purerpc = echo_variants(ours_server, purerpc_server)
            rpcs = rpc_variants(server, repo)
            for variant in (ours, purerpc, *rpcs):
                bench.probe(variant)
                if not variant.available:
                    ctx.progress(
                        f"[rpc/{repo.name}] {variant.label}: {variant.status}: {variant.note}"
                    )
            run_rounds(bench, [ours, purerpc, *rpcs], label=f"rpc/{repo.name}")
            for process in (server, ours_server, purerpc_server):
                process.check_alive()
            result.metrics += metrics(bench, ours, purerpc, rpcs)
            result.samples += bench.samples
        for process in (server, ours_server, purerpc_server):
            errors = process.logged_errors()
            if errors:
                result.notes.append(f"{process.name} logged {errors} error lines")
    result.notes.append(
        f"servers logged at level {ctx.log_level!r} (an access-log line per call at 'info')"
    )
    return result


SUITE = Suite(
    name="rpc",
    summary="FindCommit, TreeEntry, GetBlob, ListRefs, ServerInfo ÷ gRPC echo (ours, purerpc)",
    run=run,
)
