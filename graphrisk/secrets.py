"""Secrets for pipeline workers, passed by reference: never pickled into the pipeline graph.

A Beam pipeline is serialised whole and shipped to a runner (a Flink or Spark job server, a
Dataflow job), which keeps it in its job store and logs. A key captured by a DoFn would travel
in clear. Instead a DoFn holds a :class:`SecretRef`, which says where a worker reads the value,
and a fingerprint of it, so a worker holding a different key fails loudly instead of writing
pseudonyms nobody can join.

Sources:

- ``env:NAME``: the worker's environment variable ``NAME``;
- ``file:PATH``: a file (a mounted Kubernetes or Docker secret), surrounding whitespace stripped;
- ``process:``: the launching process's memory, for runners whose workers run in that process
  (DirectRunner, and Prism, Flink and Spark with the LOOPBACK environment).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from graphrisk.errors import GraphRiskError

_PROCESS_SECRETS: dict[str, str] = {}
_LOCK = threading.Lock()


class SecretUnavailableError(GraphRiskError):
    """A worker cannot read a secret, or reads one that is not the launcher's."""


def fingerprint(value: str) -> str:
    """A short, one-way digest of a secret: tells two keys apart without revealing either."""
    return hashlib.sha256(b"graphrisk-secret-fingerprint\x00" + value.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SecretRef:
    """Where a worker reads one secret, and the fingerprint the value must have."""

    name: str
    source: str
    fingerprint: str

    def resolve(self) -> str:
        """The secret's value, read from its source and checked against the fingerprint.

        Raises:
            SecretUnavailableError: the source is missing or holds another value.
        """
        kind, _, where = self.source.partition(":")
        if kind == "env":
            value = os.environ.get(where)
            if value is None:
                raise SecretUnavailableError(
                    f"{self.name}: environment variable {where} is not set on this worker;"
                    f" set it there, or point secret_sources.{self.name} at a file"
                )
        elif kind == "file":
            try:
                value = Path(where).read_text().strip()
            except OSError as exc:
                raise SecretUnavailableError(f"{self.name}: cannot read secret file {where}: {exc}") from exc
        elif kind == "process":
            with _LOCK:
                value = _PROCESS_SECRETS.get(self.fingerprint)
            if value is None:
                raise SecretUnavailableError(
                    f"{self.name}: the secret is held by the launching process only, and this worker"
                    f" runs elsewhere; set secret_sources.{self.name} to env:NAME or file:PATH"
                )
        else:
            raise SecretUnavailableError(f"{self.name}: unknown secret source {self.source!r}")
        if fingerprint(value) != self.fingerprint:
            raise SecretUnavailableError(
                f"{self.name}: the value at {self.source} is not the launcher's (fingerprints differ);"
                " workers and launcher must share one key"
            )
        return value

    def resolve_secret(self) -> SecretStr:
        """:meth:`resolve`, wrapped so that it does not print."""
        return SecretStr(self.resolve())


def secret_ref(name: str, value: str, source: str | None, *, in_process: bool) -> SecretRef:
    """A reference to ``value`` for workers.

    ``source`` is the configured ``env:``/``file:`` source, or None: then in-process workers
    read the launcher's memory, and other workers ``GRAPHRISK_<NAME>`` from their environment.

    Raises:
        SecretUnavailableError: ``source`` names an unknown kind of source.
    """
    fp = fingerprint(value)
    if source is None:
        if in_process:
            with _LOCK:
                _PROCESS_SECRETS[fp] = value
            source = "process:"
        else:
            source = f"env:GRAPHRISK_{name.upper()}"
    if source.partition(":")[0] not in ("env", "file", "process"):
        raise SecretUnavailableError(f"{name}: secret source {source!r} is not env:NAME or file:PATH")
    return SecretRef(name, source, fp)
