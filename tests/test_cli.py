"""The graphrisk command end to end: generate → refresh → summary, with JSON reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graphrisk.cli import app
from graphrisk.local_server import LocalServer, Neo4jServer
from graphrisk.store import GraphStore
from tests.conftest import TEST_PASSWORD


@pytest.fixture
def cli_env(bolt_server: LocalServer | Neo4jServer, store: GraphStore, tmp_path: Path) -> dict[str, str]:
    return {
        "GRAPHRISK_ENVIRONMENT": "test",
        "GRAPHRISK_STORE_ENGINE": bolt_server.engine,
        "GRAPHRISK_STORE_URI": bolt_server.uri,
        "GRAPHRISK_STORE_PASSWORD": TEST_PASSWORD,
        "GRAPHRISK_STORE_DATABASE": bolt_server.database,
        "GRAPHRISK_DATA_DIR": str(tmp_path / "var"),
    }


def _report(output: str) -> dict[str, object]:
    return json.loads(output[output.index("{") :])


def test_generate_refresh_summary(cli_env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "gen"
    res = runner.invoke(
        app, ["generate", "--users", "300", "--seed", "5", "--days", "2", "--out", str(out)], env=cli_env
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["refresh", "--input", str(out / "events")], env=cli_env)
    assert res.exit_code == 0, res.output
    report = _report(res.stdout)
    totals = report["totals"]
    assert totals["read"] == totals["accepted"] + totals["rejected"] + totals["duplicates"] > 0
    assert report["graph"]["nodes"]["User"] >= 290
    assert list((tmp_path / "var" / "reports").glob("refresh-*.json"))
    again = _report(runner.invoke(app, ["refresh", "--input", str(out / "events")], env=cli_env).stdout)
    assert again["batches"] == [] and again["graph"] == report["graph"]
    res = runner.invoke(app, ["summary"], env=cli_env)
    assert res.exit_code == 0 and "USED_DEVICE" in res.stdout


def test_config_hides_secrets_and_rejects_bad_values(cli_env: dict[str, str]) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["config"], env=cli_env)
    assert res.exit_code == 0
    assert TEST_PASSWORD not in res.stdout and "**********" in res.stdout
    res = runner.invoke(app, ["config"], env={**cli_env, "GRAPHRISK_WRITE_BATCH_SIZE": "0"})
    assert res.exit_code == 2 and "write_batch_size" in res.output
    res = runner.invoke(app, ["config"], env={**cli_env, "GRAPHRISK_ENVIRONMENT": "production"})
    assert res.exit_code == 2 and "pseudonymisation_key" in res.output


def test_unreachable_store_is_a_clear_error(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    env = {**cli_env, "GRAPHRISK_STORE_URI": "bolt://127.0.0.1:9"}
    res = CliRunner().invoke(app, ["refresh", "--input", str(tmp_path / "empty")], env=env)
    assert res.exit_code == 1 and "not usable" in res.output


def test_rings_trained_with_the_event_history_learn_from_past_moments(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    runner = CliRunner()
    out = tmp_path / "gen"
    gen = ["generate", "--users", "1500", "--seed", "8", "--days", "4", "--out", str(out)]
    assert runner.invoke(app, gen, env=cli_env).exit_code == 0
    assert runner.invoke(app, ["refresh", "--input", str(out / "events")], env=cli_env).exit_code == 0
    labels = str(out / "labels" / "users.parquet")
    res = runner.invoke(app, ["train", "--labels", labels, "--no-decisions"], env=cli_env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["rings", "--events", str(out / "events")], env=cli_env)
    assert res.exit_code == 2 and "--labels" in res.output
    combined = {**cli_env, "GRAPHRISK_RING_METHOD": "combined"}
    res = runner.invoke(app, ["rings", "--labels", labels, "--events", str(out / "events")], env=combined)
    assert res.exit_code == 2 and "'trees'" in res.output
    res = runner.invoke(app, ["rings", "--labels", labels, "--events", str(out / "events")], env=cli_env)
    assert res.exit_code == 0, res.output
    rings = _report(res.stdout)["rings"]
    # Four days sampled every 6 hours: the cut-off's clusters and about 15 past moments.
    assert rings["trained"] and rings["training_moments"] >= 12
    assert rings["training_rows"] > rings["clusters"]
