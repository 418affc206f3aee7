"""Sending large answers: bytes in bounded chunks, lists in messages under 1 MiB.

Gitaly's clients expect many items per message (one message per branch would cost a
frame and a parse each) but no message near gRPC's 4 MiB receive limit; these helpers
keep both, and never hold more than one message's worth of an answer in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from google.protobuf.message import Message

from trio_gitaly.rpc.call import ServerCall

# Largest data payload per message for blob and diff bytes (Gitaly's streamio size).
CHUNK_BYTES = 128 * 1024
# A list message is sent once adding the next item would reach this (Gitaly's chunker).
MESSAGE_BUDGET_BYTES = 1024 * 1024
# What embedding an item in the response adds: its field tag and length prefix.
_ITEM_FRAMING_BYTES = 8
# What PaginationParameter.limit < 0 normalises to (Gitaly's rule).
UNLIMITED = 2**31 - 1

Item = TypeVar("Item", bound=Message)


class Batcher(Generic[Item]):
    """Collects list items and sends them as messages under MESSAGE_BUDGET_BYTES.

    Example: `batch = Batcher(call, lambda items: ListRefsResponse(references=items))`,
    then `await batch.add(ref)` per item and `await batch.flush()` at the end.
    """

    def __init__(self, call: ServerCall, make: Callable[[Sequence[Item]], Message]) -> None:
        self._call = call
        self._make = make
        self._items: list[Item] = []
        self._size = 0
        self.sent_items = 0

    async def add(self, item: Item) -> None:
        """Queue one item, sending the pending ones first if the message would get too big.

        Cancellation: raises Cancelled while a full message waits for the client.
        """
        size = item.ByteSize() + _ITEM_FRAMING_BYTES
        if self._items and self._size + size >= MESSAGE_BUDGET_BYTES:
            await self.flush()
        self._items.append(item)
        self._size += size

    async def flush(self, *, always: bool = False) -> None:
        """Send what is pending (with `always`, an empty message when nothing is)."""
        if not self._items and not always:
            return
        items, self._items, self._size = self._items, [], 0
        self.sent_items += len(items)
        await self._call.send(self._make(items))


def page_limit(limit: int) -> int:
    """PaginationParameter.limit as Gitaly reads it: < 0 is unlimited, 0 is nothing."""
    return UNLIMITED if limit < 0 else limit


def chunks(data: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    """`data` split into pieces of at most `size` bytes (one empty piece for b"")."""
    if not data:
        return [b""]
    return [data[offset : offset + size] for offset in range(0, len(data), size)]
