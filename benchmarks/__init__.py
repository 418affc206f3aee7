"""The benchmark harness: `./dev bench [--quick|--full] [--repo PATH]` (python -m benchmarks).

Every figure is a ratio (memory: a difference in MB) against a baseline measured in the
same run, interleaved, as medians with their spread; never a timed assertion in a test
(tests/test_benchmarks.py only runs the harness in its tiny mode and checks the shape of
what it writes).

    __main__.py      the CLI: modes, repositories, suites in order, outputs
    core.py          settings per mode, Context, Metric (+ statistics), Suite, rotation
    repos.py         deterministic generated repositories (git fast-import), cached
    servers.py       the processes under test: trio-gitaly, echo_ours, echo_purerpc
    echo_ours.py     an echo route on trio-gitaly's own gRPC layer and middleware
    echo_purerpc.py  the same echo on a bare purerpc 0.8 Server
    load.py          the grpcio client, a process of its own, driven over a pipe
    measure.py       variants measured round by round, paired into metrics
    report.py        the terminal table, latest.json, latest.md, latest.png
    transfer.py      what clone, push and memory share: remotes, timed git commands
    suites/          one module per suite (rpc, catfile, startup, clone, push, memory)
"""
