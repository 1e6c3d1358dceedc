"""Beam pipeline options for the graph build.

graphrisk's own settings come from :mod:`graphrisk.config`; these options only choose where
and how Beam runs. The runner is always named: Beam 2.77's default first tries to download
the Prism binary, which fails offline.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions


def pipeline_options(runner: str, workers: int = 1, extra_args: list[str] | None = None) -> PipelineOptions:
    """Options for ``runner``; ``extra_args`` pass through (e.g. ``--project`` for Dataflow).

    With the DirectRunner and more than one worker, bundles run in separate processes.
    """
    opts = PipelineOptions(list(extra_args or []), save_main_session=False)
    opts.view_as(StandardOptions).runner = runner
    if runner == "DirectRunner":
        direct = opts.view_as(DirectOptions)
        direct.direct_num_workers = workers
        direct.direct_running_mode = "multi_processing" if workers > 1 else "in_memory"
    return opts
