"""The secrets a graph build's workers need, as references (see :mod:`graphrisk.secrets`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
)
from pydantic import SecretStr

from graphrisk.config import Settings
from graphrisk.secrets import SecretRef, secret_ref

_IN_PROCESS_DIRECT = ("DirectRunner", "apache_beam.runners.portability.fn_api_runner.FnApiRunner")


@dataclass(frozen=True)
class WorkerSecrets:
    """Where workers read the pseudonymisation key and the store password."""

    pseudonymisation_key: SecretRef
    store_password: SecretRef


def workers_in_process(opts: PipelineOptions) -> bool:
    """Whether the pipeline's SDK workers run inside this process (and can read its memory)."""
    runner = opts.view_as(StandardOptions).runner
    if runner in _IN_PROCESS_DIRECT:
        return opts.view_as(DirectOptions).direct_running_mode == "in_memory"
    env = opts.view_as(PortableOptions).environment_type
    # Prism's Python runner defaults to LOOPBACK when no environment is given.
    return env == "LOOPBACK" or (runner == "PrismRunner" and not env)


def workers_on_this_host(opts: PipelineOptions) -> bool:
    """Whether the workers are this process or its child processes (the DirectRunner's multi_processing)."""
    runner = opts.view_as(StandardOptions).runner
    return workers_in_process(opts) or runner in _IN_PROCESS_DIRECT


def worker_settings(
    settings: Settings, opts: PipelineOptions
) -> tuple[Settings, WorkerSecrets, dict[str, str]]:
    """Settings safe to pickle into a pipeline (secrets blanked), and references to the secrets.

    Workers that are child processes of this one inherit its environment: when a secret's
    ``GRAPHRISK_<NAME>`` variable is absent (it came from a TOML file), it is returned in the
    third element, for :func:`exported` to set while the pipeline runs (and only then). Remote workers read the configured source (``settings.secret_sources``) or their own
    environment, and fail loudly with what to set when it is missing or holds another value.
    """
    in_process = workers_in_process(opts)
    refs = {}
    exports: dict[str, str] = {}
    for name in ("pseudonymisation_key", "store_password"):
        value = getattr(settings, name).get_secret_value()
        source = settings.secret_sources.get(name)
        variable = f"GRAPHRISK_{name.upper()}"
        if source is None and not in_process and workers_on_this_host(opts) and variable not in os.environ:
            exports[variable] = value
        refs[name] = secret_ref(name, value, source, in_process=in_process)
    # API keys and database URLs (which may carry passwords) are no business of the workers'.
    blank = settings.model_copy(
        update={
            "pseudonymisation_key": SecretStr(""), "store_password": SecretStr(""), "audit_hmac_key": None,
            "api_keys": {}, "audit_url": "sqlite://", "decisions_url": None,
        }
    )  # fmt: skip
    return blank, WorkerSecrets(**refs), exports


@contextmanager
def exported(variables: dict[str, str]) -> Iterator[None]:
    """Set ``variables`` in this process's environment for the block (child workers inherit
    them), then remove them: a key must not outlive the run in the launcher's environment."""
    os.environ.update(variables)
    try:
        yield
    finally:
        for name in variables:
            os.environ.pop(name, None)
