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


def test_a_runner_that_is_not_built_is_refused_before_any_batch_starts(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--runner FlinkRunner`` without its job server says what to build, and records no batch."""
    monkeypatch.setenv("GRAPHRISK_FLINK_JOB_SERVER_JAR", str(tmp_path / "absent.jar"))
    started: list[object] = []
    monkeypatch.setattr(pipelines.refresh, "refresh", lambda *a, **k: started.append(a))
    res = CliRunner().invoke(
        app,
        ["refresh", "--input", str(tmp_path), "--no-score", "--runner", "FlinkRunner"],
        env=cli_env(settings, tmp_path / "var"),
    )
    assert res.exit_code == 1
    assert "make beam-jars" in " ".join(res.stderr.split())
    assert started == []


def test_a_job_server_of_another_beam_version_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job server speaks its own Beam version's protocol: a mismatch is refused, not run."""
    import apache_beam

    from pipelines.options import RunnerNotBuiltError, pipeline_options

    jar = tmp_path / "flink" / "beam-flink-job-server.jar"
    (jar.parent / "lib").mkdir(parents=True)
    jar.write_bytes(b"")
    (jar.parent / "lib" / "beam-runners-core-java-2.1.0.jar").write_bytes(b"")
    monkeypatch.setenv("GRAPHRISK_FLINK_JOB_SERVER_JAR", str(jar))
    with pytest.raises(
        RunnerNotBuiltError, match=rf"built for Beam 2\.1\.0, the Python SDK is {apache_beam.__version__}"
    ):
        pipeline_options("FlinkRunner")
    # Named explicitly, the user's job server is theirs to vouch for.
    assert pipeline_options("FlinkRunner", extra_args=[f"--flink_job_server_jar={jar}"])
