"""What a cluster would break: inputs and outputs named by URI, and secrets kept out of the pipeline.

Runs on the DirectRunner against a live store. ``graphrisktest://`` is a Beam FileSystem with
no directories (tests/uri_filesystem.py): reaching it with ``pathlib`` anywhere would fail.
"""

from __future__ import annotations

import base64
import bz2
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.portability.api import beam_runner_api_pb2
from pydantic import SecretStr

from graphrisk.config import Settings
from graphrisk.graph_schema import NodeLabel
from graphrisk.secrets import SecretRef, SecretUnavailableError, fingerprint, secret_ref
from graphrisk.store import GraphStore
from pipelines.graph_build import BatchOutputs, BuildEntityGraph, dead_letter_path
from pipelines.options import pipeline_options
from pipelines.read import ReadEvents
from pipelines.refresh import refresh
from pipelines.snapshot import delta_dir, load_snapshot
from pipelines.worker_secrets import exported, worker_settings
from tests.factories import add_bad_records, make_events
from tests.uri_filesystem import SCHEME, PrefixedLocalFileSystem


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[Path]:
    """The local folder behind ``graphrisktest://``."""
    root = tmp_path / "objects"
    root.mkdir()
    PrefixedLocalFileSystem.root = root
    yield root
    PrefixedLocalFileSystem.root = None


def test_refresh_reads_events_and_stages_outputs_through_uris(
    store: GraphStore, settings: Settings, bucket: Path
) -> None:
    events = make_events(users=20, hours=2)
    bad = add_bad_records(events, hour=1)
    events.write(bucket / "lake" / "events")
    staged = settings.model_copy(update={"staging_uri": f"{SCHEME}://lake/staging"})

    report = refresh(staged, store, f"{SCHEME}://lake/events")

    totals = report.totals()
    assert totals["read"] == events.count
    assert totals["rejected"] == len(bad)
    assert totals["read"] == totals["accepted"] + totals["rejected"] + totals["duplicates"]
    # Workers wrote the delta and dead letters to the staging URI; the refresh fetched them.
    staging = bucket / "lake" / "staging" / "batch-000001"
    assert (staging / "delta" / "nodes" / "User.parquet").exists()
    assert (staging / "dead-letters.jsonl").read_bytes() == dead_letter_path(settings, 1).read_bytes()
    assert (delta_dir(settings.snapshot_dir, 1) / "nodes" / "User.parquet").exists()
    letters = [json.loads(x) for x in dead_letter_path(settings, 1).read_text().splitlines()]
    assert {d["record"]["event_id"]: d["field"] for d in letters} == bad
    nodes, _ = load_snapshot(settings.snapshot_dir)
    assert len(nodes[NodeLabel.USER]) == 20
    assert store.node_counts()[NodeLabel.USER] == 20
    # Re-running finds every partition done: fingerprints were read through the URI too.
    again = refresh(staged, store, f"{SCHEME}://lake/events")
    assert again.batches == []


def test_an_unknown_scheme_is_a_clear_error(store: GraphStore, settings: Settings) -> None:
    from pipelines.uris import InputLocationError

    with pytest.raises(InputLocationError, match="nosuchscheme://x/events: cannot list event files"):
        refresh(settings, store, "nosuchscheme://x/events")


def _unpacked(raw: bytes) -> bytes:
    """A pickle as Beam packs it: bz2 (2.62's dill pickler), zlib, or neither."""
    if raw.startswith(b"BZh"):
        return bz2.decompress(raw)
    try:
        return zlib.decompress(raw)
    except zlib.error:
        return raw


def _pickled_payloads(pipeline: beam.Pipeline) -> list[bytes]:
    """Every DoFn and CombineFn as the runner receives it, unpacked to the pickle's bytes."""
    proto = pipeline.to_runner_api()
    out = [proto.SerializeToString()]
    for transform in proto.components.transforms.values():
        if transform.spec.urn == "beam:transform:pardo:v1":
            payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn.payload
            out.append(_unpacked(base64.b64decode(payload)))
    return out


def test_secrets_are_not_pickled_into_the_pipeline(settings: Settings, tmp_path: Path) -> None:
    key, password = "k3y-only-the-workers-should-read-7f1c", settings.store_password.get_secret_value()
    settings = settings.model_copy(update={"pseudonymisation_key": SecretStr(key)})
    marker = str(tmp_path / "a-distinctive-dead-letter-path.jsonl")
    for runner, args in [("DirectRunner", []), ("DirectRunner", ["--direct_num_workers=2"])]:
        opts = pipeline_options(runner, 2 if args else 1, [])
        view, secrets, exports = worker_settings(settings, opts)
        pipeline = beam.Pipeline(options=opts)
        records = pipeline | ReadEvents(tmp_path, ["x.jsonl"])
        outputs = BatchOutputs(str(tmp_path / "delta"), marker, str(tmp_path / "counts.json"))
        _ = records | BuildEntityGraph(view, secrets, 1, outputs, ingested_at_ms=0)
        blobs = _pickled_payloads(pipeline)
        # The scan sees pickled DoFn state: the dead-letter location is in there...
        assert any(marker.encode() in b for b in blobs)
        # ...and the key and the store password are not, in any form the runner keeps.
        for secret in (key, password):
            assert not any(secret.encode() in b for b in blobs), f"{secret[:3]}… pickled with {runner} {args}"
        with exported(exports):  # what the run sets for worker processes
            assert secrets.pseudonymisation_key.resolve() == key  # workers still get it
            assert secrets.store_password.resolve() == password


def test_a_worker_without_the_launchers_key_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPHRISK_TEST_KEY", "another-key")
    ref = secret_ref("pseudonymisation_key", "the-key", "env:GRAPHRISK_TEST_KEY", in_process=False)
    with pytest.raises(SecretUnavailableError, match="not the launcher's"):
        ref.resolve()
    monkeypatch.delenv("GRAPHRISK_TEST_KEY")
    with pytest.raises(SecretUnavailableError, match="GRAPHRISK_TEST_KEY is not set on this worker"):
        ref.resolve()
    secret_file = tmp_path / "key"
    secret_file.write_text("the-key\n")
    assert (
        secret_ref("pseudonymisation_key", "the-key", f"file:{secret_file}", in_process=False).resolve()
        == "the-key"
    )
    # A remote worker cannot read the launcher's memory, and says what to set.
    remote = SecretRef("pseudonymisation_key", "process:", fingerprint("never-registered"))
    with pytest.raises(SecretUnavailableError, match=r"secret_sources\.pseudonymisation_key"):
        remote.resolve()


def test_worker_processes_read_the_key_from_their_environment(
    store: GraphStore, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DirectRunner's multi_processing workers are other processes: no launcher memory, no pickled key."""
    for name in ("GRAPHRISK_PSEUDONYMISATION_KEY", "GRAPHRISK_STORE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)  # the launcher exports them for its children
    make_events(users=12, hours=1).write(tmp_path / "in")
    report = refresh(settings.model_copy(update={"beam_workers": 2}), store, tmp_path / "in")
    totals = report.totals()
    assert (
        totals["read"] > 0
        and totals["read"] == totals["accepted"] + totals["rejected"] + totals["duplicates"]
    )
    assert store.node_counts()[NodeLabel.USER] == 12
    # Exported for the run's worker processes only: gone from the launcher's environment after.
    assert "GRAPHRISK_PSEUDONYMISATION_KEY" not in os.environ


def test_prism_jobs_may_run_longer_than_a_minute() -> None:
    """Beam 2.62 gives the job's state stream the job-server timeout, 60 s by default, and Prism honours it."""
    from apache_beam.options.pipeline_options import PortableOptions

    from pipelines.options import PRISM_JOB_TIMEOUT_S, RunnerNotBuiltError

    try:
        opts = pipeline_options("PrismRunner")
    except RunnerNotBuiltError as exc:
        pytest.skip(str(exc))
    assert opts.view_as(PortableOptions).job_server_timeout == PRISM_JOB_TIMEOUT_S >= 3600
    given = pipeline_options("PrismRunner", extra_args=["--job_server_timeout=90"])
    assert given.view_as(PortableOptions).job_server_timeout == 90


def test_a_batch_of_empty_files_counts_zero_and_writes_its_dead_letter_file(
    store: GraphStore, settings: Settings, tmp_path: Path
) -> None:
    """The count and dead-letter writers run once even with nothing to write (no silent missing file)."""
    root = tmp_path / "in" / "dt=2026-01-05" / "hr=00"
    root.mkdir(parents=True)
    (root / "part-00000.jsonl").write_text("")
    (root / "part-00001.csv").write_text("")
    report = refresh(settings, store, tmp_path / "in")
    assert [b.partitions for b in report.batches] == [2]
    assert report.totals()["read"] == 0 and report.totals()["accepted"] == 0
    assert dead_letter_path(settings, 1).read_text() == ""
