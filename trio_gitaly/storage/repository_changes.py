"""How RPCs that create or remove repositories report it, so that counts stay right.

The repository counter (a worker) implements `RepositoryTracker`; services depend on
this protocol only, never on the worker.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass
class RepositoryChange:
    """What a create or remove did to the count; set by the RPC once its rename is done."""

    delta: int = 0

    def record(self, delta: int) -> None:
        """The repository appeared (+1) or disappeared (-1)."""
        self.delta = delta


class RepositoryTracker(Protocol):
    """Told about every repository an RPC creates or removes."""

    def tracking(
        self, storage_name: str, repo_path: str
    ) -> AbstractContextManager[RepositoryChange]:
        """Bracket the change of `repo_path`; record the outcome on what it yields."""
        ...
