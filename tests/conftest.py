"""Shared fixtures: a live ArcadeDB Bolt server on free ports, and a store client on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from graphrisk.config import Settings, load_settings
from graphrisk.local_server import LocalServer
from graphrisk.store import GraphStore

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
TEST_PASSWORD = "graphrisk-test-password"


@pytest.fixture(scope="session")
def bolt_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """One ArcadeDB server for the whole test session (it takes seconds to start)."""
    server = LocalServer(
        root=tmp_path_factory.mktemp("arcadedb"), password=TEST_PASSWORD, database="graphrisk"
    )
    with server:
        yield server


def make_settings(server: LocalServer, data_dir: Path, **overrides: object) -> Settings:
    """Settings pointing at the test server, with data written under ``data_dir``."""
    return load_settings(
        environment="test",
        store_uri=server.uri,
        store_password=TEST_PASSWORD,
        store_database=server.database,
        data_dir=data_dir,
        **overrides,
    )


@pytest.fixture
def settings(bolt_server: LocalServer, tmp_path: Path) -> Settings:
    """Test settings; every test gets its own data directory."""
    return make_settings(bolt_server, tmp_path / "var", write_batch_size=500)


@pytest.fixture
def store(settings: Settings) -> Iterator[GraphStore]:
    """A store client on an emptied database with the schema in place."""
    with GraphStore(settings) as client:
        client.delete_all()
        client.ensure_schema()
        yield client
