"""Shared fixtures: live Bolt servers on free ports (ArcadeDB and Neo4j), and a store client on them.

``bolt_server`` (and so ``settings`` and ``store``) is parametrised over the engines: every test
that touches the store runs on ArcadeDB and on Neo4j. Neo4j's parameter skips, saying why, when
its launcher is not built (``make neo4j``). ``GRAPHRISK_TEST_ENGINES=arcadedb`` (a comma list)
runs only the engines named.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graphrisk.config import Settings, load_settings
from graphrisk.local_server import LocalServer, Neo4jServer
from graphrisk.store import GraphStore

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
TEST_PASSWORD = "graphrisk-test-password"
ENGINES = [e for e in os.environ.get("GRAPHRISK_TEST_ENGINES", "arcadedb,neo4j").split(",") if e]


@pytest.fixture(scope="session")
def world(bolt_server: LocalServer | Neo4jServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The API's scored synthetic graph (tests/api_fixtures.py), built once per session and engine.

    In a database of its own (on Neo4j community, which serves one database per server, a
    sibling server), apart from the one the ``store`` fixture empties."""
    from tests.api_fixtures import build_world

    return build_world(bolt_server, tmp_path_factory)


@pytest.fixture(scope="session")
def arcadedb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """One ArcadeDB server for the whole test session (it takes seconds to start)."""
    server = LocalServer(
        root=tmp_path_factory.mktemp("arcadedb"), password=TEST_PASSWORD, database="graphrisk"
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Neo4jServer]:
    """One Neo4j server for the whole test session (a JVM: up to a minute to start)."""
    if not Neo4jServer.launcher_built():
        pytest.skip("Neo4j launcher not built: run `make neo4j` (needs JDK 17 and Maven)")
    server = Neo4jServer(root=tmp_path_factory.mktemp("neo4j"), password=TEST_PASSWORD, database="graphrisk")
    with server:
        yield server


@pytest.fixture(scope="session", params=ENGINES)
def bolt_server(request: pytest.FixtureRequest) -> LocalServer | Neo4jServer:
    """The server of one engine; tests that use it (or ``settings``/``store``) run once per engine."""
    server: LocalServer | Neo4jServer = request.getfixturevalue(f"{request.param}_server")
    return server


def make_settings(server: LocalServer | Neo4jServer, data_dir: Path, **overrides: object) -> Settings:
    """Settings pointing at the test server, with data written under ``data_dir``."""
    return load_settings(
        environment="test",
        store_engine=server.engine,
        store_uri=server.uri,
        store_password=TEST_PASSWORD,
        store_database=server.database,
        data_dir=data_dir,
        **overrides,
    )


@pytest.fixture
def settings(bolt_server: LocalServer | Neo4jServer, tmp_path: Path) -> Settings:
    """Test settings; every test gets its own data directory."""
    return make_settings(bolt_server, tmp_path / "var", write_batch_size=500)


@pytest.fixture
def store(settings: Settings) -> Iterator[GraphStore]:
    """A store client on an emptied database with the schema in place."""
    with GraphStore(settings) as client:
        client.delete_all()
        client.ensure_schema()
        yield client
