"""Exceptions raised across graphrisk. Each names what went wrong and where."""

from __future__ import annotations


class GraphRiskError(Exception):
    """Base class for every error graphrisk raises on purpose."""


class ConfigError(GraphRiskError):
    """The configuration is missing, malformed or unsafe."""


class InvalidRecordError(GraphRiskError):
    """An input record failed validation.

    Carries the record's origin and the offending field so that the dead-letter output and
    log lines can point a user at the exact place to fix.
    """

    def __init__(self, source: str, line: int, field: str, reason: str) -> None:
        super().__init__(f"{source}:{line}: field {field!r}: {reason}")
        self.source = source
        self.line = line
        self.field = field
        self.reason = reason


class NormalisationError(GraphRiskError):
    """A sensitive value could not be normalised (e.g. an unparseable phone number)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownStatementError(GraphRiskError):
    """A Cypher statement was requested by a name that has no file in ``cypher/``."""


class StoreError(GraphRiskError):
    """The graph store refused or failed an operation after retries."""


class StoreTimeoutError(StoreError):
    """The graph store did not answer within the configured timeout (it may be hung)."""


class ServerStartError(GraphRiskError):
    """The local ArcadeDB Bolt server did not come up."""


class UnsupportedInputError(GraphRiskError):
    """An input file has a format graphrisk cannot read."""


class AuditUnavailableError(GraphRiskError):
    """The audit trail cannot record an entry now (its database is locked or down, or it is
    closed); the action it would record must not proceed."""
