"""Fixtures of the fault suite: a PostgreSQL cluster (tests/pg_server.py) and audit databases.

``audit_db_url`` runs a test once on SQLite and once on PostgreSQL (the production database);
the PostgreSQL run is skipped, with the reason, only where PostgreSQL is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pg_server import PgServer, pg_server, pg_url

__all__ = ["audit_db_url", "pg_server", "pg_url"]


@pytest.fixture(params=["sqlite", "postgresql"])
def audit_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLAlchemy URL of an empty audit database: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.url(server.create_database())
