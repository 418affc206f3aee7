"""The upload-pack ref advertisement, served from the disk cache when it may be.

Only protocol v0/v1 advertisements without client config options are cached, as in
Gitaly: a v2 advertisement is a short capability list (the refs come in a later
request), and config options may change what git advertises. A hit streams the stored
body; a miss runs git and writes its output to the client and to a new entry, which is
published only once the whole body reached the client. Whatever goes wrong with the
cache, the client still gets git's answer.
"""

from __future__ import annotations

import logging
from typing import BinaryIO, Final

import trio

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.git.command import CommandFactory
from trio_gitaly.storage.diskcache import DiskCache, EntryWriter
from trio_gitaly.storage.diskcache_keys import CacheKey, PendingLeaseError
from trio_gitaly.transport.commands import Target, advertise_refs
from trio_gitaly.transport.session import Sink

LOG = logging.getLogger("trio_gitaly.diskcache")

#: Bytes of a cached body sent per message (Gitaly's streamio buffer size).
HIT_CHUNK_BYTES: Final = 128 * 1024


async def advertise_upload_pack(
    git: CommandFactory, cache: DiskCache, target: Target, key: CacheKey, out: Sink
) -> None:
    """Write the body of `GET info/refs?service=git-upload-pack` to `out`, cached.

    `key` names the request the body answers; `target` is where git runs.

    Raises:
        GitalyError: as `advertise_refs`; INTERNAL "cache copy: ..." when a cached body
            cannot be read after part of it was sent.

    Cancellation: git is killed, an entry being written is discarded; part of the body
        may have been written.
    """
    if target.git_config_options or target.git_protocol:
        await advertise_refs(git, target, "upload-pack", out)
        return
    metrics = cache.metrics
    metrics.inforef_attempts.inc()
    try:
        path, entry = cache.open_entry(key)
    except (PendingLeaseError, GitalyError, OSError) as exc:
        metrics.inforef_hit_miss.labels("err").inc()
        reason = exc.message if isinstance(exc, GitalyError) else str(exc)
        LOG.info("unable to fetch cached response", extra={"fields": {"error": reason}})
        await advertise_refs(git, target, "upload-pack", out)
        return
    if entry is not None:
        metrics.inforef_hit_miss.labels("hit").inc()
        LOG.info("cache hit for UploadPack response")
        with entry:
            await _send_entry(cache, entry, out)
        return
    metrics.inforef_hit_miss.labels("miss").inc()
    LOG.info("cache miss for InfoRefsUploadPack response")
    try:
        writer: EntryWriter | None = cache.new_entry(path)
    except OSError as exc:
        _store_failed(exc)
        writer = None

    async def tee(chunk: bytes) -> None:
        nonlocal writer
        await out(chunk)
        if writer is None:
            return
        try:
            await writer.write(chunk)
        except OSError as exc:
            writer.discard()
            writer = None
            _store_failed(exc)

    try:
        await advertise_refs(git, target, "upload-pack", tee)
        if writer is not None:
            try:
                writer.commit()
            except OSError as exc:
                _store_failed(exc)
    finally:
        if writer is not None:
            writer.discard()


async def _send_entry(cache: DiskCache, entry: BinaryIO, out: Sink) -> None:
    while True:
        try:
            chunk = await trio.to_thread.run_sync(entry.read, HIT_CHUNK_BYTES)
        except OSError as exc:
            raise GitalyError(StatusCode.INTERNAL, f"cache copy: {exc}") from exc
        if not chunk:
            return
        cache.metrics.bytes_fetched.inc(len(chunk))
        await out(chunk)


def _store_failed(exc: OSError) -> None:
    LOG.error(
        "unable to store InfoRefsUploadPack response in cache",
        extra={"fields": {"error": str(exc)}},
    )
