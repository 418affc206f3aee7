"""A FIFO semaphore whose size can change while tasks hold and wait for it.

trio's own Semaphore has a fixed size and no non-blocking "try" that says no. A limit
that shrinks never takes a token back from a running call: the holders finish, and no
one new gets in until fewer than the new size hold one.
"""

from __future__ import annotations

import trio


class ResizableSemaphore:
    """Tokens handed out first come, first served; `resize` takes effect at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.held = 0
        self._waiters = trio.lowlevel.ParkingLot()

    @property
    def waiting(self) -> int:
        """Tasks parked in `acquire`."""
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a token if one is free and nobody is ahead in the queue."""
        if self.held < self.size and not self._waiters:
            self.held += 1
            return True
        return False

    async def acquire(self) -> None:
        """Wait in line for a token.

        Cancellation: a task cancelled while waiting leaves the line without a token; one
        that was handed a token keeps it (the hand-over happens before it resumes).
        """
        if self.try_acquire():
            await trio.lowlevel.checkpoint()
            return
        # `release` and `resize` count the token as held when they wake us.
        await self._waiters.park()

    def release(self) -> None:
        """Give a token back: to the first waiter if the size allows, else to the pool."""
        if self.held <= self.size and self._waiters:
            self._waiters.unpark()
        else:
            self.held -= 1

    def resize(self, size: int) -> None:
        """Change the number of tokens; growing admits waiters at once."""
        self.size = size
        free = self.size - self.held
        if free > 0 and self._waiters:
            self.held += len(self._waiters.unpark(count=free))
