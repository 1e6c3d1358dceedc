"""The local Bolt server: ArcadeDB, embedded, in a process of its own.

Production points graphrisk at Neo4j; development, the demo and the tests use ArcadeDB from
PyPI, which speaks Bolt and Neo4j-5 Cypher. The server runs inside a JVM hosted by Python
(JPype), so it gets its own process: the JVM must not share a process with the API or the
tests, and it crashes at interpreter exit unless we leave with ``os._exit``.

Run ``python -m graphrisk.local_server --root DIR --bolt-port P --http-port Q --database NAME``;
it prints ``READY`` once the database accepts connections and stops cleanly on SIGTERM/SIGINT.
:class:`LocalServer` starts and stops that process from Python.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from graphrisk.errors import ServerStartError

READY_LINE = "READY"


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
class LocalServer:
    """Starts the ArcadeDB Bolt server as a child process and stops it again.

    Use as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    root: Path
    password: str
    database: str = "graphrisk"
    bolt_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    start_timeout_s: float = 90.0
    _proc: subprocess.Popen[str] | None = field(default=None, init=False, repr=False)

    @property
    def uri(self) -> str:
        """The Bolt URI clients connect to."""
        return f"bolt://127.0.0.1:{self.bolt_port}"

    def start(self) -> LocalServer:
        """Start the server and wait until it accepts connections.

        Raises:
            ServerStartError: the process exited or did not report ready in time.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        log = (self.root / "launcher.log").open("a")
        env = {**os.environ, "GRAPHRISK_LOCAL_SERVER_PASSWORD": self.password}
        self._proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "graphrisk.local_server", "--root", str(self.root.resolve()),
             "--bolt-port", str(self.bolt_port), "--http-port", str(self.http_port),
             "--database", self.database],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + self.start_timeout_s
        assert self._proc.stdout is not None
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            if line.strip() == READY_LINE:
                return self
            if not line and self._proc.poll() is not None:
                break
        self.stop()
        raise ServerStartError(f"ArcadeDB did not start; see {self.root / 'launcher.log'}")

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

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the server process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--bolt-port", type=int, default=7687)
    parser.add_argument("--http-port", type=int, default=2480)
    parser.add_argument("--database", default="graphrisk")
    args = parser.parse_args(argv)
    password = os.environ.get("GRAPHRISK_LOCAL_SERVER_PASSWORD")
    if not password:
        parser.error("set GRAPHRISK_LOCAL_SERVER_PASSWORD (kept out of argv so it is not in ps)")
    _serve(args.root, args.bolt_port, args.http_port, args.database, password)


if __name__ == "__main__":
    main()
