"""The local Bolt servers: ArcadeDB (embedded, from PyPI) or Neo4j 5, each in a process of its own.

Production points graphrisk at Neo4j; development and the demo default to ArcadeDB from PyPI,
which speaks Bolt and Neo4j-5 Cypher and needs no JDK build. :class:`Neo4jServer` runs the real
Neo4j 5 LTS from the Maven project in ``neo4j-local/`` (``make neo4j``); the tests run on both.
ArcadeDB runs inside a JVM hosted by Python (JPype), so it gets its own process: the JVM must
not share a process with the API or the tests, and it crashes at interpreter exit unless we
leave with ``os._exit``.

Run ``python -m graphrisk.local_server --root DIR --bolt-port P --http-port Q --database NAME``;
it prints ``READY`` once the database accepts connections and stops cleanly on SIGTERM/SIGINT.
:class:`LocalServer` starts and stops that process from Python; :class:`Neo4jServer` does the same
for the Neo4j launcher, and :func:`local_server` picks one from the settings.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal, Self

from graphrisk.errors import ServerStartError

if TYPE_CHECKING:
    from graphrisk.config import Settings

READY_LINE = "READY"
# The password travels in the environment, never in argv where `ps` shows it.
PASSWORD_ENV = "GRAPHRISK_LOCAL_SERVER_PASSWORD"
# The Maven project that runs Neo4j in one JVM (see its pom.xml).
NEO4J_LOCAL_DIR = Path(__file__).resolve().parent.parent / "neo4j-local"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(root: Path, bolt_port: int, http_port: int, database: str, password: str) -> None:
    import arcadedb_embedded as arcadedb  # the JVM starts here, in this process only

    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)  # ArcadeDB writes log/ into the working directory
    server = arcadedb.create_server(
        str(root / "server"),
        root_password=password,
        config={
            "host": "127.0.0.1",
            "http_port": http_port,
            "bolt_port": bolt_port,
            "server_plugins": "Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
        },
    )
    server.start()
    if not (root / "server" / "databases" / database).exists():
        server.create_database(database)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(READY_LINE, flush=True)
    stop.wait()
    try:
        server.stop()
    finally:
        sys.stdout.flush()
        os._exit(0)


@dataclass
class _ServerProcess:
    """The lifecycle both local servers share: a child process that prints a ready line.

    Subclasses say what to run (:meth:`_command`); starting, waiting for ``READY``, logging to
    ``<root>/launcher.log`` and stopping (SIGTERM, then SIGKILL) live here once.
    """

    root: Path
    password: str
    database: str = "graphrisk"
    bolt_port: int = field(default_factory=free_port)
    user: str = "root"
    start_timeout_s: float = 90.0
    _proc: subprocess.Popen[str] | None = field(default=None, init=False, repr=False)

    engine: ClassVar[str]

    @property
    def uri(self) -> str:
        """The Bolt URI clients connect to."""
        return f"bolt://127.0.0.1:{self.bolt_port}"

    def _command(self) -> list[str]:
        """The child's argv (never the password: that goes in its environment)."""
        raise NotImplementedError

    def database_server(self, name: str) -> _ServerProcess:
        """A running server on which database ``name`` is new and apart from this one's."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start the server and wait until it accepts connections.

        Raises:
            ServerStartError: the process could not be run, exited, or did not report ready in time.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        command = self._command()
        env = {**os.environ, PASSWORD_ENV: self.password}
        with (self.root / "launcher.log").open("a") as log:
            try:
                self._proc = subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, start_new_session=True
                )
            except OSError as exc:
                raise ServerStartError(f"{self.engine}: cannot run {command[0]}: {exc}") from exc
        deadline = time.monotonic() + self.start_timeout_s
        assert self._proc.stdout is not None
        while (left := deadline - time.monotonic()) > 0:
            # Wait with a bound: a child that hangs before printing anything must not hang us.
            if not select.select([self._proc.stdout], [], [], left)[0]:
                break
            line = self._proc.stdout.readline()
            if line.split()[:1] == [READY_LINE]:
                # Keep reading what the child prints later, or a full pipe would block it.
                threading.Thread(target=self._drain, args=(self._proc.stdout,), daemon=True).start()
                return self
            if not line and self._proc.poll() is not None:
                break
        self.stop()
        raise ServerStartError(f"{self.engine} did not start; see {self.root / 'launcher.log'}")

    def _drain(self, stdout: IO[str]) -> None:
        """Copy the child's later output to ``launcher.log`` until it closes."""
        with (self.root / "launcher.log").open("a") as log:
            try:
                for line in stdout:
                    log.write(line)
                    log.flush()
            except (OSError, ValueError):  # the pipe was closed by stop()
                pass

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 20 s)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LocalServer(_ServerProcess):
    """Starts the ArcadeDB Bolt server as a child process and stops it again.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    http_port: int = field(default_factory=free_port)

    engine: ClassVar[str] = "arcadedb"

    def _command(self) -> list[str]:
        return [sys.executable, "-u", "-m", "graphrisk.local_server", "--root", str(self.root.resolve()),
                "--bolt-port", str(self.bolt_port), "--http-port", str(self.http_port),
                "--database", self.database]  # fmt: skip

    def database_server(self, name: str) -> LocalServer:
        """This server seen through another, new database ``name`` (see :meth:`Neo4jServer.database_server`).

        Raises:
            ServerStartError: the server refused to create it.
        """
        self.create_database(name)
        return dataclasses.replace(self, database=name)

    def create_database(self, name: str) -> None:
        """Create another database over ArcadeDB's HTTP API (Bolt refuses ``CREATE DATABASE``).

        Raises:
            ServerStartError: the server refused.
        """
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/api/v1/server",
            data=json.dumps({"command": f"create database {name}"}).encode(),
            headers={"Authorization": "Basic " + base64.b64encode(f"root:{self.password}".encode()).decode()},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        except OSError as exc:
            raise ServerStartError(f"could not create database {name!r}: {exc}") from exc


ArcadeDBServer = LocalServer


# Flags Neo4j's own start script passes: its page cache and Netty reach into NIO internals.
_NEO4J_JVM_FLAGS = [
    "--add-opens=java.base/java.nio=ALL-UNNAMED", "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED", "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true", "-XX:+UseG1GC", "-XX:-OmitStackTraceInFastThrow",
]  # fmt: skip


@dataclass
class Neo4jServer(_ServerProcess):
    """Starts Neo4j 5 (community, with APOC) as a child JVM: the launcher in ``neo4j-local/``.

    Build the launcher first (``make neo4j``). Data lives in ``<root>/neo4j``, so a restart on the
    same root keeps the graph. With an empty password the server runs without authentication.
    """

    launcher_dir: Path = NEO4J_LOCAL_DIR
    java: str = "java"
    heap: str = "1g"
    pagecache: str = "256m"
    # A cold JVM loads Neo4j's ~240 jars and compiles APOC's procedures: a minute on a busy laptop.
    start_timeout_s: float = 300.0
    _siblings: list[Neo4jServer] = field(default_factory=list, init=False, repr=False)

    engine: ClassVar[str] = "neo4j"

    @staticmethod
    def launcher_built(launcher_dir: Path = NEO4J_LOCAL_DIR) -> bool:
        """Whether ``mvn package`` has produced the launcher's classes and classpath."""
        target = launcher_dir / "target"
        return (target / "classes" / "graphrisk" / "neo4jlocal" / "Main.class").is_file() and any(
            (target / "lib").glob("neo4j-*.jar")
        )

    def _command(self) -> list[str]:
        if not self.launcher_built(self.launcher_dir):
            raise ServerStartError(
                f"the Neo4j launcher in {self.launcher_dir} is not built; run `make neo4j`"
            )
        target = self.launcher_dir / "target"
        # APOC goes on the classpath too: its extension (which procedures need injected) is
        # found by ServiceLoader there, while procedures are registered from the plugin folder.
        classpath = os.pathsep.join(
            [str(target / "classes"), str(target / "lib" / "*"), str(target / "plugins" / "*")]
        )
        return [self.java, f"-Xmx{self.heap}", *_NEO4J_JVM_FLAGS, "-cp", classpath, "graphrisk.neo4jlocal.Main",
                "--home", str((self.root / "neo4j").resolve()), "--bolt-port", str(self.bolt_port),
                "--database", self.database, "--user", self.user, "--auth", "password" if self.password else "none",
                "--plugins", str(target / "plugins"), "--pagecache", self.pagecache]  # fmt: skip

    def database_server(self, name: str) -> Neo4jServer:
        """A running server whose (only) database is ``name``, apart from this one's.

        Community edition serves one user database per DBMS, so another database is another
        server: a sibling JVM on its own port, stopped with this one. Callers use its ``uri``
        and ``database`` (as with ArcadeDB, where it is the same server and a new database).

        Raises:
            ServerStartError: the sibling did not start.
        """
        sibling = dataclasses.replace(
            self, root=self.root / f"database-{name}", database=name, bolt_port=free_port()
        )
        self._siblings.append(sibling.start())
        return sibling

    def stop(self) -> None:
        """Stop this server and any :meth:`database_server` siblings."""
        while self._siblings:
            self._siblings.pop().stop()
        super().stop()

    def create_database(self, name: str) -> None:
        """Community edition serves a single user database, so there is no second one to create.

        Use :meth:`database_server` for a database apart from this one's.

        Raises:
            ServerStartError: always.
        """
        raise ServerStartError(
            f"Neo4j community edition serves one user database ({self.database!r}); cannot create {name!r}"
        )


StoreEngine = Literal["arcadedb", "neo4j"]
ENGINES: dict[str, type[LocalServer] | type[Neo4jServer]] = {"arcadedb": LocalServer, "neo4j": Neo4jServer}


def local_server(settings: Settings, root: Path | None = None) -> LocalServer | Neo4jServer:
    """The local server for ``settings.store_engine``, on the port of ``settings.store_uri``.

    Its data lives under ``root`` (default: the engine's folder in the settings).
    """
    port = int(settings.store_uri.rsplit(":", 1)[1])
    common: dict[str, Any] = {
        "password": settings.store_password.get_secret_value(),
        "database": settings.store_database,
        "user": settings.store_user,
        "bolt_port": port,
    }
    if settings.store_engine == "neo4j":
        return Neo4jServer(root=(root or settings.neo4j_root).resolve(), **common)
    return LocalServer(
        root=(root or settings.arcadedb_root).resolve(), http_port=settings.arcadedb_http_port, **common
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the server process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--bolt-port", type=int, default=7687)
    parser.add_argument("--http-port", type=int, default=2480)
    parser.add_argument("--database", default="graphrisk")
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        parser.error("set GRAPHRISK_LOCAL_SERVER_PASSWORD (kept out of argv so it is not in ps)")
    _serve(args.root, args.bolt_port, args.http_port, args.database, password)


if __name__ == "__main__":
    main()
