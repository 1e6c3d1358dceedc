"""Beam pipeline options for the graph build.

graphrisk's own settings come from :mod:`graphrisk.config`; these options only choose where
and how Beam runs. The runner is always named: Beam's DirectRunner first tries to run on Prism,
and without ``--prism_location`` it tries to download the Prism binary, which fails offline.

Portable runners get their job server or binary from what ``make beam-jars`` and ``make prism``
built in the repository, never from Beam's own download:

- FlinkRunner: ``--flink_job_server_jar`` (tools/beam/flink/beam-flink-job-server.jar);
- SparkRunner: ``--spark_job_server_jar`` (tools/beam/spark/beam-spark-job-server.jar);
- PrismRunner and the DirectRunner: ``--prism_location`` (tools/bin/prism).

Each path can be overridden with ``GRAPHRISK_FLINK_JOB_SERVER_JAR``,
``GRAPHRISK_SPARK_JOB_SERVER_JAR`` or ``GRAPHRISK_PRISM_LOCATION``, or by passing the Beam
option itself (``graphrisk refresh --beam-arg=--flink_job_server_jar=...``), which always wins.
Flink and Spark run with ``--environment_type=LOOPBACK`` unless told otherwise: the SDK workers
are this process, so they see the same local paths; a real cluster needs ``PROCESS``, ``DOCKER``
or ``EXTERNAL`` and a ``--flink_master``/``--spark_master_url`` (README).
"""

from __future__ import annotations

import os
from pathlib import Path

import apache_beam
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from graphrisk.errors import GraphRiskError

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Where ``make beam-jars`` and ``make prism`` put what they build.
FLINK_JOB_SERVER_JAR = REPO_ROOT / "tools" / "beam" / "flink" / "beam-flink-job-server.jar"
SPARK_JOB_SERVER_JAR = REPO_ROOT / "tools" / "beam" / "spark" / "beam-spark-job-server.jar"
PRISM_BINARY = REPO_ROOT / "tools" / "bin" / "prism"

#: How long a Prism job may run (see :func:`pipeline_options`): a day.
PRISM_JOB_TIMEOUT_S = 86_400

#: The Python (FnApi) runner named directly: the DirectRunner without its hand-over to Prism.
FN_API_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"


class RunnerNotBuiltError(GraphRiskError):
    """A portable runner was asked for but its job server or binary is not built."""


def flink_job_server_jar() -> Path:
    return Path(os.environ.get("GRAPHRISK_FLINK_JOB_SERVER_JAR") or FLINK_JOB_SERVER_JAR)


def spark_job_server_jar() -> Path:
    return Path(os.environ.get("GRAPHRISK_SPARK_JOB_SERVER_JAR") or SPARK_JOB_SERVER_JAR)


def prism_location() -> Path:
    return Path(os.environ.get("GRAPHRISK_PRISM_LOCATION") or PRISM_BINARY)


def job_server_beam_version(jar: Path) -> str | None:
    """The Beam version of a job server built by ``make beam-jars`` (from its lib/ folder)."""
    for lib in sorted((jar.parent / "lib").glob("beam-runners-core-java-*.jar")):
        return lib.name.removeprefix("beam-runners-core-java-").removesuffix(".jar")
    return None


def prism_beam_version(binary: Path) -> str | None:
    """The Beam version ``make prism`` built ``binary`` from (tools/bin/prism.version)."""
    stamp = binary.parent / "prism.version"
    return stamp.read_text().strip() if stamp.exists() else None


def runner_missing(runner: str) -> str | None:
    """Why ``runner`` cannot run here (what to build), or None when it can.

    A job server or Prism built for another Beam version than the Python SDK's is refused: they
    speak the SDK's protocol, and a mismatch can fail late or run a pipeline differently.
    """
    need = {
        "FlinkRunner": (flink_job_server_jar(), "make beam-jars", job_server_beam_version),
        "SparkRunner": (spark_job_server_jar(), "make beam-jars", job_server_beam_version),
        "PrismRunner": (prism_location(), "make prism", prism_beam_version),
    }.get(runner)
    if need is None:
        return None
    path, target, built_version = need
    if not path.exists():
        return f"{runner} needs {path}: run `{target}`"
    version = built_version(path)
    if version is not None and version != apache_beam.__version__:
        return (
            f"{runner} was built for Beam {version}, the Python SDK is {apache_beam.__version__}: they"
            f" must match (pin apache-beam=={version}, the version `{target}` builds)"
        )
    return None


def _given(args: list[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in args)


def pipeline_options(runner: str, workers: int = 1, extra_args: list[str] | None = None) -> PipelineOptions:
    """Options for ``runner``; ``extra_args`` pass through (e.g. ``--project`` for Dataflow).

    With the DirectRunner and more than one worker, bundles run in separate processes.

    Raises:
        RunnerNotBuiltError: a Flink, Spark or Prism run has neither its job server (or binary)
            built nor a ``--job_endpoint`` (or the path option) given.
    """
    args = list(extra_args or [])
    if runner in ("FlinkRunner", "SparkRunner", "PrismRunner") and not _given(args, "--job_endpoint"):
        option, path = {
            "FlinkRunner": ("--flink_job_server_jar", flink_job_server_jar()),
            "SparkRunner": ("--spark_job_server_jar", spark_job_server_jar()),
            "PrismRunner": ("--prism_location", prism_location()),
        }[runner]
        if not _given(args, option):
            missing = runner_missing(runner)
            if missing:
                raise RunnerNotBuiltError(missing)
            args.append(f"{option}={path}")
        if runner == "PrismRunner" and not _given(args, "--job_server_timeout"):
            # Beam 2.62's portable runner opens the job's state stream with this timeout (60 s by
            # default); Prism honours it, so any job longer than a minute failed with
            # DEADLINE_EXCEEDED while its workers were still writing. (Flink's and Spark's job
            # servers refuse that early stream, and the runner reopens it without a deadline.)
            args.append(f"--job_server_timeout={PRISM_JOB_TIMEOUT_S}")
        if runner != "PrismRunner" and not _given(args, "--environment_type"):
            args.append("--environment_type=LOOPBACK")
        if runner == "FlinkRunner" and not _given(args, "--flink_master"):
            args.append("--flink_master=[local]")
        if runner == "SparkRunner" and not _given(args, "--spark_master_url"):
            args.append(f"--spark_master_url=local[{max(workers, 2)}]")
    if (
        runner == "DirectRunner"
        and not _given(args, "--prism_location")
        and prism_location().exists()
        and prism_beam_version(prism_location()) == apache_beam.__version__
    ):
        # Newer DirectRunners (2.77) hand supported pipelines to Prism first; with a binary of
        # the SDK's version built they use it instead of trying to download one.
        args.append(f"--prism_location={prism_location()}")
    opts = PipelineOptions(args, save_main_session=False)
    opts.view_as(StandardOptions).runner = runner
    if runner in ("DirectRunner", FN_API_RUNNER):
        direct = opts.view_as(DirectOptions)
        direct.direct_num_workers = workers
        direct.direct_running_mode = "multi_processing" if workers > 1 else "in_memory"
    return opts
