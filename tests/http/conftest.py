"""Fixtures of the HTTP tests: a server with the gateway on (tests/http/gateway_support.py)."""

from __future__ import annotations

import pytest
import trio

from tests.http.gateway_support import Gateway, start_gateway


@pytest.fixture
async def gateway(nursery: trio.Nursery, short_dir: str) -> Gateway:
    """A running server whose gateway serves without authentication."""
    return await start_gateway(nursery, short_dir)
