"""The graph store client: runs the named statements in ``cypher/`` over Bolt.

One :class:`GraphStore` (one driver) per process, closed on shutdown. Reads go through
``execute_query`` with read routing; writes through ``execute_write`` with a unit of work that
consumes its results, because the driver may run it more than once. The database is passed on
every call: a pooled connection otherwise uses whichever database it used last.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any, LiteralString, cast

import neo4j
from neo4j.exceptions import (
    ConstraintError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from graphrisk.config import Settings
from graphrisk.errors import StoreError, UnknownStatementError
from graphrisk.graph_schema import EDGE_TYPES, NodeLabel, RelType

CYPHER_DIR = Path(__file__).resolve().parent.parent / "cypher"

# A concurrent MERGE of the same new key can raise ConstraintError (the driver only retries
# TransientError); a lost connection surfaces as ServiceUnavailable / SessionExpired.
_RETRYABLE = (ConstraintError, ServiceUnavailable, SessionExpired, TransientError)


class CypherLibrary:
    """Loads ``cypher/<group>/<name>.cypher`` files by name (``"upsert/nodes_user"``).

    Where the stores' Cypher differs, ``<name>.<engine>.cypher`` (``constraint_user_id.neo4j.cypher``)
    holds the statement for that engine and wins over ``<name>.cypher`` when the library is made
    for it; docs/stores.md lists the differences.
    """

    def __init__(self, root: Path = CYPHER_DIR, engine: str | None = None) -> None:
        self.root = root
        self.engine = engine

    def names(self) -> list[str]:
        """Every statement name, sorted (an engine's variant is not a name of its own)."""
        return sorted(
            p.relative_to(self.root).with_suffix("").as_posix()
            for p in self.root.rglob("*.cypher")
            if "." not in p.stem
        )

    def get(self, name: str) -> LiteralString:
        """The text of one statement, the engine's variant where there is one.

        Raises:
            UnknownStatementError: no such file.
        """
        return _read_statement(self.root, name, self.engine)


@cache
def _read_statement(root: Path, name: str, engine: str | None = None) -> LiteralString:
    variant = root / f"{name}.{engine}.cypher"
    path = variant if engine and variant.is_file() else root / f"{name}.cypher"
    if not path.is_file():
        raise UnknownStatementError(f"no Cypher statement {name!r} (looked for {path})")
    # Statements are files in the repository, never user input: that is what LiteralString vouches.
    return cast(LiteralString, path.read_text())


def node_upsert_statement(label: NodeLabel) -> str:
    """Name of the statement that upserts ``label`` nodes."""
    return f"upsert/nodes_{label.value.lower()}"


def rel_upsert_statement(rel: RelType) -> str:
    """Name of the statement that upserts ``rel`` relationships."""
    return f"upsert/rels_{rel.value.lower()}"


def batched(rows: Sequence[Any] | Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` items."""
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class GraphStore:
    """A Bolt connection to the graph store, with graphrisk's statements by name.

    Connecting and taking a pooled connection are bounded by ``settings.store_timeout_s``
    everywhere. ``query_timeout_s`` (the API sets it) also asks the server to end each read
    transaction after that long; a server that ignores it, or is frozen, is bounded by the
    caller (:class:`api.store_calls.StoreCalls`): the driver sets no timeout on socket reads.
    """

    def __init__(
        self, settings: Settings, library: CypherLibrary | None = None, query_timeout_s: float | None = None
    ) -> None:
        self.settings = settings
        self.database = settings.store_database
        self.library = library or CypherLibrary(engine=settings.store_engine)
        self.query_timeout_s = query_timeout_s
        self._driver = neo4j.GraphDatabase.driver(
            settings.store_uri,
            auth=(settings.store_user, settings.store_password.get_secret_value()),
            connection_timeout=settings.store_timeout_s,
            # Taking a connection may open one, so it gets the connect timeout twice over.
            connection_acquisition_timeout=2 * settings.store_timeout_s,
        )
        self._retrying = Retrying(
            retry=retry_if_exception_type(_RETRYABLE),
            stop=stop_after_attempt(settings.write_retries + 1),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        )

    def close(self) -> None:
        """Close the driver and its connection pool."""
        self._driver.close()

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verify(self) -> None:
        """Check the server is reachable and the database answers.

        Raises:
            StoreError: it is not.
        """
        try:
            self._driver.verify_connectivity()
            self.read("ledger/last_batch_seq")
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError) as exc:
            raise StoreError(f"graph store at {self.settings.store_uri} is not usable: {exc}") from exc

    def read(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """Run a read statement; rows as plain dicts.

        An auto-commit query: one round trip fewer than a managed transaction, which is a
        third of an online applicant lookup.

        Raises:
            StoreError: the store failed or is unreachable (names the statement).
        """
        query = neo4j.Query(self.library.get(name), timeout=self.query_timeout_s)
        try:
            with self._driver.session(
                database=self.database, default_access_mode=neo4j.READ_ACCESS
            ) as session:
                return [r.data() for r in session.run(query, params)]
        except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError) as exc:
            raise StoreError(f"{name}: {exc}") from exc

    def write(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """Run a write statement in a managed transaction, retried on transient failures."""
        query = self.library.get(name)

        def work(tx: neo4j.ManagedTransaction) -> list[dict[str, Any]]:
            return [r.data() for r in tx.run(query, params)]

        try:
            for attempt in self._retrying:
                with attempt, self._driver.session(database=self.database) as session:
                    return session.execute_write(work)
        except neo4j.exceptions.Neo4jError as exc:
            raise StoreError(f"{name}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def write_rows(self, name: str, rows: Sequence[dict[str, Any]], **params: Any) -> int:
        """Write rows in ``UNWIND`` batches of the configured size; returns rows applied."""
        applied = 0
        for chunk in batched(rows, self.settings.write_batch_size):
            out = self.write(name, rows=chunk, **params)
            applied += int(out[0]["applied"]) if out else 0
        return applied

    def ensure_schema(self) -> list[str]:
        """Create every constraint (and its index) if missing; returns the statements run."""
        names = [n for n in self.library.names() if n.rsplit("/", 1)[-1].startswith("constraint_")]
        for name in names:
            # Schema statements must run in an auto-commit transaction of their own.
            self._driver.execute_query(self.library.get(name), database_=self.database)
        return names

    def node_counts(self) -> dict[str, int]:
        """Nodes per label."""
        return {r["label"]: int(r["nodes"]) for r in self.read("stats/node_counts")}

    def rel_counts(self) -> dict[str, dict[str, float]]:
        """Relationships per type, with events and amount folded into them."""
        return {
            r["type"]: {"rels": int(r["rels"]), "events": int(r["events"] or 0), "amount": float(r["amount"])}
            for r in self.read("stats/rel_counts")
        }

    def delete_all(self, chunk: int = 20_000) -> int:
        """Delete every node and relationship; returns nodes deleted."""
        total = 0
        while True:
            out = self.write("admin/delete_all", limit=chunk)
            deleted = int(out[0]["deleted"]) if out else 0
            total += deleted
            if deleted == 0:
                return total


__all__ = [
    "EDGE_TYPES",
    "CypherLibrary",
    "GraphStore",
    "batched",
    "node_upsert_statement",
    "rel_upsert_statement",
]
