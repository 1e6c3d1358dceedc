"""The one configuration object: environment variables (``GRAPHRISK_*``) over an optional TOML file.

Precedence, highest first: explicit keyword arguments, environment variables, the TOML file
named by ``GRAPHRISK_CONFIG`` (or passed to :func:`load_settings`), defaults. Settings are
validated once at start; development defaults for secrets are refused in production.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from graphrisk.errors import ConfigError

_DEV_PASSWORD = "graphrisk-dev-password"
_DEV_KEY = "graphrisk-development-only-pseudonymisation-key"

_DEV_API_KEYS = {
    "dev-onboarding-key": "onboarding",
    "dev-investigator-key": "investigator",
    "dev-admin-key": "admin",
}

# Static reference rates to the base currency. Production deployments override these with
# their treasury's daily rates; a currency missing here sends the payment to the dead letters.
_DEFAULT_FX = {
    "EUR": 1.0, "USD": 0.92, "GBP": 1.17, "CHF": 1.04, "PLN": 0.23, "SEK": 0.087,
    "NOK": 0.085, "DKK": 0.134, "CZK": 0.040, "JPY": 0.0061, "CAD": 0.68, "AUD": 0.61,
}  # fmt: skip


ApiRole = Literal["onboarding", "investigator", "admin"]


class ApiKey(BaseModel):
    """An API key's holder: its role and the person or service it was issued to.

    ``[api_keys]`` takes either a bare role (``"key" = "investigator"``, the earlier format,
    still accepted) or this table (``"key" = {role = "investigator", name = "Ada Okafor"}``),
    so that decisions and the audit trail name the investigator, not only a key hash.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: ApiRole
    name: str | None = Field(None, min_length=1, max_length=128)


class Settings(BaseSettings):
    """Every setting graphrisk reads, validated."""

    model_config = SettingsConfigDict(
        env_prefix="GRAPHRISK_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    environment: Literal["development", "test", "production"] = "development"

    # Graph store (Neo4j in production, the local ArcadeDB over Bolt here).
    store_uri: str = "bolt://127.0.0.1:7687"
    store_user: str = "root"
    store_password: SecretStr = SecretStr(_DEV_PASSWORD)
    store_database: str = "graphrisk"
    write_batch_size: int = Field(5000, ge=1, le=50_000)
    write_retries: int = Field(5, ge=0, le=20)

    # Which Cypher dialect the store speaks: picks per-engine statements in cypher/ (see
    # docs/stores.md) and the server `graphrisk server` starts.
    store_engine: Literal["arcadedb", "neo4j"] = "arcadedb"

    # Local ArcadeDB server (development and tests only).
    arcadedb_root: Path = Path("var/arcadedb")
    arcadedb_http_port: int = 2480
    # Local Neo4j server (`make neo4j`; development and tests only).
    neo4j_root: Path = Path("var/neo4j")

    # Pseudonymisation.
    pseudonymisation_key: SecretStr = SecretStr(_DEV_KEY)
    default_phone_region: str | None = Field(None, pattern=r"^[A-Z]{2}$")

    # Money.
    base_currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    fx_rates: dict[str, float] = Field(default_factory=lambda: dict(_DEFAULT_FX))

    # Where runs keep their snapshot, dead letters and reports.
    data_dir: Path = Path("var")
    # One refresh at a time (a file lock in data_dir and a lock in the store's ledger): a second
    # run waits this long for them, then exits non-zero. A store lock whose holder has not
    # heartbeated for refresh_lock_stale_s is taken over (a run that died), with a warning.
    refresh_lock_wait_s: float = Field(0.0, ge=0)
    refresh_lock_stale_s: float = Field(900.0, ge=10)

    # API: key -> role (onboarding | investigator | admin). Development gets one key per role.
    # A key maps to a role, or to {role, name}: the holder's name goes with their decisions.
    api_keys: dict[str, ApiRole | ApiKey] = Field(default_factory=lambda: dict(_DEV_API_KEYS))
    # The audit trail's database (also served rows and recent applications); default
    # data_dir/audit.db, so that runs with their own data_dir never share, and break, one chain.
    audit_url: str | None = None
    # Investigators' decisions (api.decisions); default: the audit database. `graphrisk train`
    # reads decided labels from here, so it must be the database the API writes.
    decisions_url: str | None = None
    # Explanations: a feature is given as a reason only when it pushes the score up by at least
    # this much (log-odds), and users scored under explain_min_score get no reasons at all (a
    # score of 0.0003 has nothing to explain, whatever nudged it up from 0.0002).
    explain_min_contribution: float = Field(0.1, ge=0)
    explain_min_score: float = Field(0.01, ge=0, le=1)
    # The API re-reads published scores, rings and the production model when they change:
    # checked every this many seconds (0: only on POST /v1/admin/reload).
    reload_check_s: float = Field(5.0, ge=0)
    # The audit chain is keyed (HMAC-SHA256) with a key kept out of the audit database: this, or
    # a file holding it. Required in production; elsewhere a key file is generated under data_dir.
    audit_hmac_key: SecretStr | None = None
    audit_hmac_key_file: Path | None = None
    # Signed checkpoints of the chain's head (JSON lines), outside the database; default
    # data_dir/audit/anchors-<hash of audit_url>.jsonl. Written every anchor interval; the chain is verified against
    # them and its key at start and every verify interval.
    audit_anchor_path: Path | None = None
    audit_anchor_interval_s: float = Field(60.0, gt=0)
    audit_verify_interval_s: float = Field(300.0, gt=0)
    # An audited request waits at most this long for its entry to be committed (else 503), and the
    # audited routes answer 503 while an entry has waited longer than this.
    audit_max_lag_s: float = Field(2.0, gt=0)
    # Retention (api/privacy.py, `graphrisk retention`, run at the end of every refresh).
    # Dead letters hold raw rejected records: kept long enough to fix and replay them. Audit
    # entries: five years, as AML record keeping asks of the decisions they record; pruned behind
    # a signed checkpoint. Shadow logs (a challenger's unserved scores): long enough to compare.
    dead_letter_retention_days: int = Field(30, ge=1)
    audit_retention_days: int = Field(1826, ge=1)
    shadow_log_retention_days: int = Field(90, ge=1)
    # Served feature rows (api/served_rows.py): the model-input row the API scored each new
    # applicant from (derived counts keyed by the pseudonymous user id), kept until the monitoring
    # run compares it with the batch row of the same user; deleted after this many days.
    served_rows_retention_days: int = Field(30, ge=1)
    served_rows_log: bool = True
    rate_limit_per_minute: int = Field(6000, ge=1)
    max_request_bytes: int = Field(64 * 1024, ge=1024)
    # Threads scoring new applicants. Each request is mostly Python holding the GIL: with four
    # at once they slowed each other (p99 334 ms at 100 req/s), one at a time p99 was 10 ms.
    scoring_threads: int = Field(1, ge=1, le=32)
    new_applicant_timeout_s: float = Field(2.0, gt=0)
    # The API bounds every graph-store call by this (driver connect and pool timeouts, a query
    # timeout, and a client-side wait: a frozen server never answers, so the driver would wait
    # forever). Store calls run on store_threads threads of their own, apart from the threads of
    # other routes; past the timeout a store-backed route answers 503 with Retry-After.
    store_timeout_s: float = Field(5.0, gt=0, le=300)
    store_threads: int = Field(8, ge=1, le=64)
    # Failed authentications allowed per client address and minute; past it, 429 with Retry-After.
    auth_failures_per_minute: int = Field(30, ge=1)

    # Rings: candidate clusters whose collusion score is below this are neither kept in the ring
    # registry nor written as Ring nodes (most candidates are households and friend groups).
    ring_min_score: float = Field(0.1, ge=0.0, le=1.0)
    # How a ring model is trained (gnn.rings.model.fit_ring_model): ``trees`` (LightGBM over the
    # cluster features), ``combined`` (the ring subgraph GNN's out-of-fold logit as one more tree
    # column) or ``auto`` (both; the higher out-of-fold AUPRC is kept). ``trees`` by default:
    # ``auto`` trains the GNN too, and made the ring tests about twice as slow. Scoring follows
    # the saved model, whatever this says.
    ring_method: Literal["trees", "combined", "auto"] = "trees"
    # A ring model trained with the event history (``graphrisk rings --labels L --events DIR``)
    # also learns from the clusters of the graph every ``ring_sample_every_h`` hours before now,
    # as the refreshes saw them: rings are first scored young, and at the cut-off every ring it
    # knows is grown (gnn.rings.moments). Each past moment keeps ``ring_negative_share`` of its
    # honest clusters (they barely change from one moment to the next).
    ring_sample_every_h: int = Field(6, ge=1, le=24 * 7)
    ring_negative_share: float = Field(0.2, gt=0.0, le=1.0)

    # Monitoring (gnn/monitor): alert thresholds against the production model's training
    # reference. PSI over decile bins (0.1 moderate, 0.2 significant shift, the usual reading);
    # KS for continuous features; score PSI; a band's share moving by more than this (absolute);
    # a labelled cohort's fraud rate this many standard errors from training's; served rows that
    # differ from batch rows of the same users in more than this share of users per feature; an
    # identifier with more users than ``monitor_hub_users`` is a hub. The ring model refuses to
    # store rings when more than ``ring_input_outside_max`` of its inputs lie outside the training
    # p0.5-p99.5 range (about 1 % do on a graph like the training one).
    drift_psi_alert: float = Field(0.2, gt=0)
    drift_ks_alert: float = Field(0.1, gt=0, le=1)
    drift_score_psi_alert: float = Field(0.2, gt=0)
    drift_band_shift_alert: float = Field(0.05, gt=0, le=1)
    drift_label_z_alert: float = Field(4.0, gt=0)
    skew_mismatch_alert: float = Field(0.01, ge=0, le=1)
    # Training-serving skew of the monitoring run: served applicant rows of the last
    # ``skew_window_h`` hours compared with their batch as-of rows; up to ``skew_known_users``
    # known users re-built online from the store and compared with their published rows.
    skew_window_h: float = Field(48.0, gt=0)
    skew_known_users: int = Field(200, ge=0)
    monitor_hub_users: int = Field(50, ge=2)
    ring_input_outside_max: float = Field(0.1, gt=0, le=1)

    # Events dated later than a batch's ingestion time plus this go to the dead letters: one event
    # from a producer whose clock says 2099 would otherwise move every user's account age.
    future_event_tolerance_s: int = Field(300, ge=0)

    # Event ids are remembered this many days back from the newest day ingested, so an event
    # replayed in a later file counts once; older events are dead-lettered (pipelines/seen_ids.py).
    replay_horizon_days: int = Field(30, ge=1)

    # Fraud labels arrive days after the fact: training at a cut-off reads only the labels of users
    # onboarded at least this many hours before it (the backtest's default too).
    label_delay_h: float = Field(72.0, ge=0)

    # Retraining with champion and challenger (gnn/retrain.py, gnn/promotion.py; `graphrisk retrain`,
    # run at the end of `graphrisk refresh` when due). A challenger is trained every
    # ``retrain_every_h`` hours, or sooner when the last monitoring run raised drift alarms
    # (``retrain_on_drift``), from ``retrain_labels`` (user_id, is_fraud) merged with the
    # investigators' decisions. It is fitted at a cut-off ``retrain_holdout_h`` hours (plus the
    # label delay) before the history's end, and it and the champion are scored on that same
    # latest period, which neither trained on. The gate lets it through only if it is no worse than
    # the champion on every gated metric, within these tolerances (absolute: AUPRC points, hours,
    # shares of users, calibration error, importance-weighted skew). It then scores in shadow
    # (logged under data_dir/shadow/, never served) for ``shadow_h`` hours before promotion. A
    # promoted model is rolled back automatically if, within ``probation_h`` hours of its promotion,
    # monitoring sees its score PSI reach ``rollback_score_psi`` or a band's share move by
    # ``rollback_band_shift`` against its training reference.
    retrain_every_h: float = Field(168.0, gt=0)
    retrain_on_drift: bool = True
    retrain_labels: Path | None = None
    retrain_holdout_h: int = Field(48, ge=1)
    shadow_h: float = Field(24.0, ge=0)
    probation_h: float = Field(72.0, ge=0)
    gate_auprc_tolerance: float = Field(0.02, ge=0)
    gate_ring_detection_tolerance_h: float = Field(6.0, ge=0)
    gate_review_load_tolerance: float = Field(0.01, ge=0)
    gate_ece_tolerance: float = Field(0.02, ge=0)
    gate_skew_tolerance: float = Field(0.01, ge=0)
    rollback_score_psi: float = Field(0.25, gt=0)
    rollback_band_shift: float = Field(0.05, gt=0, le=1)

    # The API remembers the identifiers (keyed hashes) of applicants it scored for this long, so a
    # second applicant on the same device within the hour sees the first before the refresh does.
    # Longer than the refresh interval plus a refresh's run time.
    recent_applications_h: float = Field(3.0, gt=0)

    # Beam.
    beam_runner: str = "DirectRunner"
    beam_workers: int = Field(1, ge=1, le=64)
    # Workers on a cluster do not share this disk: they write a batch's snapshot delta and dead
    # letters under this URI (any scheme Beam's FileSystems writes: gs://, s3://, hdfs://), and the
    # refresh copies them into data_dir. Unset: workers write into data_dir directly.
    staging_uri: str | None = None
    # Where Beam workers read each secret (pseudonymisation_key, store_password): "env:NAME" or
    # "file:PATH". Secrets are never pickled into the pipeline (graphrisk.secrets). Unset:
    # in-process workers read the launcher's memory, others GRAPHRISK_<NAME> from their environment.
    secret_sources: dict[Literal["pseudonymisation_key", "store_password"], str] = Field(default_factory=dict)

    @field_validator("fx_rates")
    @classmethod
    def _rates_positive(cls, rates: dict[str, float]) -> dict[str, float]:
        bad = [c for c, r in rates.items() if not r > 0]
        if bad:
            raise ValueError(f"fx rates must be positive: {bad}")
        return {c.upper(): r for c, r in rates.items()}

    @model_validator(mode="after")
    def _no_dev_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            if self.store_password.get_secret_value() == _DEV_PASSWORD:
                raise ValueError("store_password is the development default; set GRAPHRISK_STORE_PASSWORD")
            if self.pseudonymisation_key.get_secret_value() == _DEV_KEY:
                raise ValueError(
                    "pseudonymisation_key is the development default; set GRAPHRISK_PSEUDONYMISATION_KEY"
                )
            dev_keys = set(_DEV_API_KEYS) & set(self.api_keys)
            if dev_keys:
                raise ValueError("api_keys contains development keys; set GRAPHRISK_API_KEYS")
            if self.audit_hmac_key is None and self.audit_hmac_key_file is None:
                raise ValueError(
                    "no audit chain key; set GRAPHRISK_AUDIT_HMAC_KEY or GRAPHRISK_AUDIT_HMAC_KEY_FILE"
                )
        if len(self.pseudonymisation_key.get_secret_value()) < 16:
            raise ValueError("pseudonymisation_key must be at least 16 characters")
        if self.base_currency not in self.fx_rates:
            raise ValueError(f"base_currency {self.base_currency} has no fx rate")
        return self

    @property
    def audit_db_url(self) -> str:
        """The audit database: ``audit_url``, else SQLite at ``data_dir/audit.db``."""
        return self.audit_url or f"sqlite:///{self.data_dir / 'audit.db'}"

    @property
    def decision_store_url(self) -> str:
        """Where investigators' decisions are kept (``decisions_url``, else the audit database)."""
        return self.decisions_url or self.audit_db_url

    @property
    def snapshot_dir(self) -> Path:
        """Parquet node and edge tables (what training reads)."""
        return self.data_dir / "snapshot"

    @property
    def seen_ids_dir(self) -> Path:
        """Event ids each batch accepted, by day: the record that makes replays count once."""
        return self.data_dir / "seen_ids"

    @property
    def dead_letter_dir(self) -> Path:
        """Rejected records, one JSONL file per run."""
        return self.data_dir / "dead_letters"

    @property
    def reports_dir(self) -> Path:
        """JSON run reports."""
        return self.data_dir / "reports"

    def public_view(self) -> dict[str, Any]:
        """The effective settings with secrets hidden, for ``graphrisk config``."""
        view = self.model_dump(mode="json")
        view["api_keys"] = {
            f"sha256:{hashlib.sha256(k.encode()).hexdigest()[:12]}": r
            if isinstance(r, str)
            else r.model_dump()
            for k, r in self.api_keys.items()
        }
        return view

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = os.environ.get("GRAPHRISK_CONFIG")
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build and validate settings; errors name the file and the field.

    Raises:
        ConfigError: the TOML file is missing or a setting is invalid.
    """
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file not found: {config_file}")
        os.environ["GRAPHRISK_CONFIG"] = str(config_file)
    where = os.environ.get("GRAPHRISK_CONFIG") or "environment"
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid configuration ({where}): {problems}") from None
