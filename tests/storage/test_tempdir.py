"""Per-RPC temporary directories: made under `+gitaly/tmp`, gone when the block ends,
however it ends, including an RPC cancelled by its client."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import grpc
import msgspec
import pytest
import trio

from tests.helpers import Client, make_config, storage_path
from tests.helpers import repository as repo
from trio_gitaly.errors import GitalyError
from trio_gitaly.nursery_tree import serve
from trio_gitaly.rpc.gen.gitaly import repository_pb2 as pb
from trio_gitaly.storage.locator import Locator, Storage
from trio_gitaly.storage.tempdir import new_tempdir, remove_tree


@pytest.fixture
def locator(tmp_path: Path) -> Locator:
    (tmp_path / "storage").mkdir()
    return Locator([Storage("default", str(tmp_path / "storage"))])


def tmp_entries(locator: Locator) -> list[str]:
    return os.listdir(os.path.join(locator.storage_path("default"), "+gitaly/tmp"))


def fill(path: str) -> None:
    """Some content, including a directory its owner cannot write or list."""
    locked = os.path.join(path, "a/locked")
    os.makedirs(os.path.join(locked, "inner"))
    Path(locked, "inner/file").write_text("x")
    os.chmod(os.path.join(locked, "inner"), 0)
    os.chmod(locked, stat.S_IRUSR | stat.S_IXUSR)


async def test_made_under_the_storage_tmp_and_removed_after_the_block(locator: Locator) -> None:
    async with new_tempdir(locator, "default") as path:
        assert os.path.dirname(path) == os.path.join(locator.storage_path("default"), "+gitaly/tmp")
        assert os.path.basename(path).startswith("repo")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
        fill(path)
    assert not os.path.exists(path)
    assert tmp_entries(locator) == []


async def test_removed_after_an_error(locator: Locator) -> None:
    made: list[str] = []

    async def fail() -> None:
        async with new_tempdir(locator, "default", prefix="custom-") as path:
            made.append(path)
            fill(path)
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await fail()
    assert os.path.basename(made[0]).startswith("custom-")
    assert tmp_entries(locator) == []


async def test_removed_after_cancellation(locator: Locator) -> None:
    made: list[str] = []
    with trio.CancelScope() as scope:
        async with new_tempdir(locator, "default") as path:
            made.append(path)
            fill(path)
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert made and not os.path.exists(made[0])
    assert tmp_entries(locator) == []


async def test_unknown_storage_makes_nothing(locator: Locator) -> None:
    with pytest.raises(GitalyError, match="no such storage"):
        async with new_tempdir(locator, "nope"):
            pass  # pragma: no cover


def test_remove_tree_takes_files_links_and_missing_paths(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(target)
    for name in ("file", "link", "missing"):
        remove_tree(str(tmp_path / name))
    assert sorted(os.listdir(tmp_path)) == ["target"]


async def test_cancelled_create_repository_leaves_no_temporary_directory(
    nursery: trio.Nursery, short_dir: str, connect: Callable[..., Client]
) -> None:
    # A git whose `init` never ends: the RPC is cancelled while its staging dir exists.
    marker = os.path.join(short_dir, "init-started")
    wrapper = os.path.join(short_dir, "git-wrapper")
    Path(wrapper).write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do\n'
        f'  if [ "$arg" = init ]; then touch {marker}; exec sleep 600; fi\n'
        "done\n"
        'exec git "$@"\n'
    )
    os.chmod(wrapper, 0o755)
    config = make_config(short_dir)
    config = msgspec.structs.replace(
        config, git=msgspec.structs.replace(config.git, bin_path=wrapper)
    )
    running = await nursery.start(serve, config)
    client = connect(running.addresses["tcp"][0])
    tmp = os.path.join(storage_path(config), "+gitaly", "tmp")
    create = client.channel.unary_unary(
        "/gitaly.RepositoryService/CreateRepository",
        request_serializer=pb.CreateRepositoryRequest.SerializeToString,
        response_deserializer=pb.CreateRepositoryResponse.FromString,
    )

    call = create.future(pb.CreateRepositoryRequest(repository=repo("group/slow.git")))
    with trio.fail_after(30):
        while not os.path.exists(marker):
            await trio.sleep(0.01)
    [staging] = os.listdir(tmp)
    assert staging.startswith("repo-create-")
    call.cancel()
    with trio.fail_after(30):
        while os.listdir(tmp):
            await trio.sleep(0.01)

    assert call.cancelled()
    with pytest.raises(grpc.FutureCancelledError):
        call.result()
    assert not os.path.exists(os.path.join(storage_path(config), "group/slow.git"))
