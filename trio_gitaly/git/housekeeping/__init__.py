"""Repository housekeeping: decide from a repository's state what to optimise, and do it.

`HousekeepingManager.optimize(repo_path, strategy=...)` is the entry point, for the
OptimizeRepository RPC and the daily maintenance alike: it cleans stale files (with
Gitaly's grace periods), repacks objects when loose objects or packs pass the
thresholds, prunes stale objects, packs references and writes the commit-graph, never
while another run holds the same repository. `prune_unreachable` backs
PruneUnreachableObjects.

Layers: `_info` reads the state, `_strategy` decides, `_stale` and `_tasks` act,
`_metrics` counts, `_manager` runs it all. Facts: behaviour spec §15.
"""

from trio_gitaly.git.housekeeping._info import RepositoryInfo as RepositoryInfo
from trio_gitaly.git.housekeeping._info import repository_info as repository_info
from trio_gitaly.git.housekeeping._manager import HousekeepingManager as HousekeepingManager
from trio_gitaly.git.housekeeping._manager import OptimizeResult as OptimizeResult
from trio_gitaly.git.housekeeping._stale import clean_stale_files as clean_stale_files
from trio_gitaly.git.housekeeping._strategy import EagerStrategy as EagerStrategy
from trio_gitaly.git.housekeeping._strategy import HeuristicalStrategy as HeuristicalStrategy
from trio_gitaly.git.housekeeping._strategy import RepackConfig as RepackConfig
from trio_gitaly.git.housekeeping._strategy import RepackStrategy as RepackStrategy
from trio_gitaly.git.housekeeping._strategy import Strategy as Strategy
from trio_gitaly.git.housekeeping._tasks import repack_flags as repack_flags

__all__ = [
    "EagerStrategy",
    "HeuristicalStrategy",
    "HousekeepingManager",
    "OptimizeResult",
    "RepackConfig",
    "RepackStrategy",
    "RepositoryInfo",
    "Strategy",
    "clean_stale_files",
    "repack_flags",
    "repository_info",
]
