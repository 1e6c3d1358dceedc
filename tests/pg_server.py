"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl in a temporary directory.

The cluster listens on a Unix socket in its own directory (and on no TCP interface), on a free
port number (the socket's name carries it). ``initdb`` refuses to run as root, so under root the
server runs as the ``postgres`` system user (or ``nobody``) through ``runuser``. Tests that need
it are skipped, with the reason, only when the PostgreSQL binaries are absent.

Fixtures: ``pg_server`` (session) and ``pg_url`` (a fresh, empty database per test).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "graphrisk"


def _bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: ``$PG_BIN``, ``PATH``, or Debian's versioned folders."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> list[str]:
    """A command prefix running the server as a non-root user when we are root."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"]
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@dataclass
class PgServer:
    """A running cluster: connect through ``socket_dir`` and ``port`` as ``SUPERUSER``."""

    root: Path
    socket_dir: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL (psycopg 3) for ``database`` over the Unix socket."""
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def conninfo(self, database: str = "postgres") -> str:
        """A libpq connection string for ``database`` (psycopg.connect)."""
        return f"host={self.socket_dir} port={self.port} user={SUPERUSER} dbname={database}"

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name


def start_server(durable: bool = False) -> PgServer:
    """Initialise and start a cluster in a new temporary directory.

    Tests run it without fsync (fast); ``durable=True`` keeps PostgreSQL's defaults (benchmarks).

    Raises:
        FileNotFoundError: no PostgreSQL binaries here.
        subprocess.CalledProcessError: initdb or pg_ctl failed (its output is in the error).
    """
    bindir = _bin_dir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found; set PG_BIN")
    # Not under pytest's tmp dirs: those are private to root, and the server may run as postgres.
    root = Path(tempfile.mkdtemp(prefix="graphrisk-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    prefix = _run_as()
    if prefix:
        user = prefix[2]
        for path in (root, sockets):
            shutil.chown(path, user=user)
    port = _free_port()
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", "--no-sync",
         "-E", "UTF8", "--locale", "C"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    options = f"-k {sockets} -p {port} -c listen_addresses=''"
    if not durable:
        options += " -c fsync=off -c full_page_writes=off"
    subprocess.run(
        [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "server.log"),
         "-w", "-t", "60", "start"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return PgServer(root=root, socket_dir=sockets, port=port)


def stop_server(server: PgServer) -> None:
    """Stop the cluster at once and remove its directory."""
    bindir = _bin_dir()
    assert bindir is not None
    subprocess.run(
        [*_run_as(), str(bindir / "pg_ctl"), "-D", str(server.root / "data"), "-m", "immediate", "stop"],
        check=False, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL cluster for the session; skipped when PostgreSQL is not installed."""
    if _bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (no initdb; apt-get install postgresql or set PG_BIN)")
    try:
        server = start_server()
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr or exc.stdout}") from exc
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A SQLAlchemy URL to a fresh, empty database on the session's cluster."""
    return pg_server.url(pg_server.create_database())
