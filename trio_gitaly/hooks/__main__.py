"""`python -m trio_gitaly.hooks <hook-name> [args...]`: what the hooks directory runs."""

from __future__ import annotations

import sys

from trio_gitaly.hooks.entry import main

sys.exit(main(sys.argv[1:]))
