"""Issue 12, item 5 (last bullet): CLI error messages are printed as they are.

Rich took ``[r:USED_DEVICE]`` in a printed Cypher statement for markup and dropped it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest
from typer.testing import CliRunner

import pipelines.refresh
from graphrisk.cli import app
from graphrisk.config import Settings
from graphrisk.errors import StoreError
from tests.faults.refresh_helpers import cli_env

STATEMENT = "MATCH (a:User {id: row.src}) MERGE (a)-[r:USED_DEVICE]->(b) [bold]x[/bold]"


def test_error_text_with_brackets_is_printed_verbatim(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> NoReturn:
        raise StoreError(f"upsert/rels_used_device: {STATEMENT}: constraint violated")

    monkeypatch.setattr(pipelines.refresh, "refresh", fail)
    res = CliRunner().invoke(
        app, ["refresh", "--input", str(tmp_path), "--no-score"], env=cli_env(settings, tmp_path / "var")
    )
    assert res.exit_code == 1
    assert STATEMENT in " ".join(res.stderr.split())
