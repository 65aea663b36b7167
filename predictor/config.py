"""The one settings object, and the only module that reads CLI flags and the environment.

Every field of ``Settings`` is declared once with its flag, environment variable, default and help; the
``--help`` text, the README's configuration table (``python -m predictor.config --markdown``) and the
parser are all generated from that declaration. KServe's own server flags (``--http_port``,
``--grpc_port``, ``--workers``, …) are accepted too: their parser is a parent of ours.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_MODEL_NAME = "predictive_maintenance"
# Set by the --workers supervisor for each worker (serving/workers.py).
WORKER_STATE_ENV = "PREDICTOR_WORKER_STATE_DIR"
WORKER_INDEX_ENV = "PREDICTOR_WORKER_INDEX"
WORKER_COUNT_ENV = "PREDICTOR_WORKER_COUNT"


def _opt(
    default: Any,
    help: str,
    env: str | None = None,
    choices: Sequence[str] | None = None,
    flag: bool = True,
    internal: bool = False,
    repeat: str | None = None,
) -> Any:
    """``flag=False``: environment only (secrets: a flag would show in ``ps`` and in the pod spec).
    ``internal``: set by the worker supervisor for its children; not a user setting.
    ``repeat``: a repeatable flag of this name gives the values, joined by commas as the environment gives them."""
    metadata = {"help": help, "env": env, "choices": choices, "flag": flag and not internal, "internal": internal}
    return field(default=default, metadata={**metadata, "repeat": repeat})


@dataclass(frozen=True)
class ModelSpec:
    """One model to serve: its name in URLs and metric labels, and where it comes from."""

    name: str
    uri: str


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


@dataclass(frozen=True)
class Settings:
    # --- what to serve -------------------------------------------------------------------------
    model_name: str = _opt(
        DEFAULT_MODEL_NAME, "Name in the URL (/v1/models/NAME) and in metric labels. Alias: --model-name."
    )
    model_uri: str | None = _opt(
        None,
        "MLflow model to serve: models:/NAME@alias, models:/NAME/Stage, models:/NAME/3, runs:/RUN/model or a "
        "local path. Default: models:/MODEL_NAME@production. Alias: --model-uri.",
        env="PREDICTOR_MODEL_URI",
    )
    model_version: str | None = _opt(
        None,
        "Accepted for the seed's Flask server (--model-version): a whole number pins that registry version "
        "(models:/MODEL_NAME/N) when --model_uri is not given; any other value (e.g. 1.0) is only a deployment "
        "label, logged at start. The version reported everywhere is the registry version actually served.",
        env="PREDICTOR_MODEL_VERSION",
    )
    models: str | None = _opt(
        None,
        "Serve several models in one process: NAME=URI (any URI form of --model_uri), the flag repeated once per "
        "model (--model pumps=models:/pumps@production --model fans=models:/fans@production). Each has its own "
        "batcher, registry follower, drift baseline, metric series and readiness. Replaces --model_name/--model_uri.",
        env="PREDICTOR_MODELS",
        repeat="--model",
    )
    registry_alias: str | None = _opt(
        None,
        "The registry is the deployment: serve every registered model that holds this alias (e.g. production), "
        "each under its registered name, re-checked every --poll_interval_s (at least 1 s): a model that gains the "
        "alias is served, one that loses it is unloaded once its requests in flight finish. Beside any --model.",
        env="PREDICTOR_REGISTRY_ALIAS",
    )
    registry_filter: str | None = _opt(
        None,
        "With --registry_alias: only the registered models this MLflow search filter selects, e.g. "
        "\"name LIKE 'pm_%'\".",
        env="PREDICTOR_REGISTRY_FILTER",
    )
    max_loaded_models: int = _opt(
        0,
        "Most models loaded at once (0: no limit). Past it the least recently used is unloaded; a request for a "
        "model that is not loaded loads it (from the local model cache when it is there) and waits for it, "
        "concurrent requests sharing one load. The repository index shows which models are loaded.",
        env="PREDICTOR_MAX_LOADED_MODELS",
    )
    model_dir: str | None = _opt(
        None,
        "An MLflow model directory to serve, as KServe's runtimes are run (--model_dir=/mnt/models, where its storage "
        "initializer downloaded a storageUri). Used when --model_uri is not given.",
        env="PREDICTOR_MODEL_DIR",
    )
    tracking_uri: str = _opt(
        "sqlite:///.data/mlflow.db",
        "MLflow tracking/registry URI (http://mlflow:5000 in a cluster). The default is the local registry "
        "that `make serve` creates.",
        env="MLFLOW_TRACKING_URI",
    )
    registry_timeout_s: float = _opt(
        10.0,
        "Timeout of one registry call. We retry failed loads ourselves (backoff up to 10 s), so MLflow's "
        "own retries are limited to one.",
        env="PREDICTOR_REGISTRY_TIMEOUT_S",
    )
    model_cache_dir: Path | None = _opt(
        Path(".data/model-cache"),
        "Keep the last model served here; a restart serves it at once and then checks "
        "the registry (stale-while-revalidate). Empty: off.",
        env="PREDICTOR_MODEL_CACHE_DIR",
    )
    # --- serving ---------------------------------------------------------------------------------
    host: str = _opt("0.0.0.0", "Address the HTTP port binds to.", env="PREDICTOR_HOST")
    http_port: int = _opt(8080, "HTTP port (v1, v2 REST, probes, /metrics). Alias: --port.")
    grpc_port: int = _opt(8081, "gRPC port (v2 / Open Inference Protocol).")
    workers: int = _opt(
        1,
        "Worker processes, each with its own copy of the model, sharing the ports (SO_REUSEPORT), "
        "metrics and readiness.",
    )
    enable_grpc: bool = _opt(True, "Serve gRPC on --grpc_port.")
    ssl_certfile: str | None = _opt(None, "TLS certificate (PEM) for HTTPS.", env="KSERVE_TLS_CERT_FILE")
    ssl_keyfile: str | None = _opt(None, "TLS private key (PEM) for HTTPS.", env="KSERVE_TLS_KEY_FILE")
    ssl_ca_certs: str | None = _opt(
        None,
        "CA bundle (PEM): when set, both ports require a client certificate signed by it (mutual TLS).",
        env="PREDICTOR_SSL_CA_CERTS",
    )
    # --- micro-batching ---------------------------------------------------------------------------
    max_batch_size: int = _opt(
        64,
        "Most rows one model call may take; concurrent requests are merged up to this.",
        env="PREDICTOR_MAX_BATCH_SIZE",
    )
    max_batch_wait_ms: float = _opt(
        1.0,
        "How long the first request of a batch may wait for company, in milliseconds. 0 turns batching off.",
        env="PREDICTOR_MAX_BATCH_WAIT_MS",
    )
    compile_forest: bool = _opt(
        True,
        "Evaluate random/extra-trees forests with NumPy over all trees at once, and a Pipeline's ColumnTransformer "
        "(OneHotEncoder, StandardScaler, passthrough) before one (checked at load to give scikit-learn's exact "
        "probabilities; ~50x less CPU per call). false: scikit-learn's predict_proba.",
        env="PREDICTOR_COMPILE_FOREST",
    )
    allow_pickle: bool = _opt(
        True,
        "Load models stored as pickle or cloudpickle (loading one runs any code it names). false: only skops, "
        "native booster formats and other non-pickle formats load; the refusal says how to re-log with skops.",
        env="PREDICTOR_ALLOW_PICKLE",
    )
    # --- request limits ---------------------------------------------------------------------------
    max_instances: int = _opt(10_000, "Most rows accepted in one request (413 above).", env="PREDICTOR_MAX_INSTANCES")
    max_body_bytes: int = _opt(
        8 * 1024 * 1024, "Largest request body accepted, in bytes (413 above).", env="PREDICTOR_MAX_BODY_BYTES"
    )
    max_concurrency: int = _opt(
        0,
        "Inference calls in flight per worker; past it, 503 with Retry-After at once (gRPC RESOURCE_EXHAUSTED), so "
        "the calls admitted keep their latency. 0: no limit.",
        env="PREDICTOR_MAX_CONCURRENCY",
    )
    request_timeout_s: float = _opt(
        0.0,
        "Deadline of every inference call, in seconds; a caller may ask for less with the X-Request-Timeout header "
        "(seconds) or a gRPC deadline. Past it: 504 (gRPC DEADLINE_EXCEEDED), and its work not yet started is "
        "dropped. 0: none.",
        env="PREDICTOR_REQUEST_TIMEOUT_S",
    )
    # --- features from Feast ----------------------------------------------------------------------
    feature_store: Path | None = _opt(
        None,
        "Path of a Feast feature repository (with feature_store.yaml). When set, requests may carry entity "
        "ids instead of features.",
        env="PREDICTOR_FEATURE_STORE",
    )
    feature_view: str = _opt(
        "equipment_telemetry",
        "The Feast feature view requests are filled from (its entity is the id a request may carry instead of "
        "features). The default is the demo's.",
        env="PREDICTOR_FEATURE_VIEW",
    )
    missing_feature_policy: str = _opt(
        "reject",
        "What to do when a stored feature is null or stale: reject (400) or fill it from the training means "
        "logged with the model (the response lists what was filled).",
        env="PREDICTOR_MISSING_FEATURE_POLICY",
        choices=("reject", "fill"),
    )
    feature_cache_s: float = _opt(
        0.0,
        "Keep each id's stored features in memory for at most this many seconds (0: off, every request reads the "
        "store). Never past the feature view's TTL. Safe when features change slower than this (materialized "
        "every 15 minutes: seconds of caching change nothing a caller could see).",
        env="PREDICTOR_FEATURE_CACHE_S",
    )
    # --- model updates and shutdown ---------------------------------------------------------------
    poll_interval_s: float = _opt(
        30.0,
        "How often to ask the registry whether the alias/stage now names another version (hot swap). "
        "0 turns polling off (POST /admin/reload still checks).",
        env="PREDICTOR_POLL_INTERVAL_S",
    )
    webhook_secret: str | None = _opt(
        None,
        "Secret of an MLflow 3 registry webhook pointed at POST /admin/webhook/mlflow: a verified alias "
        "event makes the server check the registry at once (environment only).",
        env="PREDICTOR_WEBHOOK_SECRET",
        flag=False,
    )
    drain_delay_s: float = _opt(
        3.0,
        "On SIGTERM: seconds to keep serving with readiness off, so load balancers stop sending first.",
        env="PREDICTOR_DRAIN_DELAY_S",
    )
    grace_period_s: float = _opt(
        20.0, "On shutdown: longest wait for requests in flight to finish.", env="PREDICTOR_GRACE_PERIOD_S"
    )
    # --- security ---------------------------------------------------------------------------------
    auth_token_file: Path | None = _opt(
        None,
        "File of accepted bearer tokens, one per line; re-read when it changes (rotation without restart). "
        "Protects inference and /admin routes; probes stay open.",
        env="PREDICTOR_AUTH_TOKEN_FILE",
    )
    auth_tokens: str | None = _opt(
        None,
        "Comma-separated accepted bearer tokens (environment only, never a flag).",
        env="PREDICTOR_AUTH_TOKENS",
        flag=False,
    )
    protect_metrics: bool = _opt(False, "Require a bearer token on /metrics too.", env="PREDICTOR_PROTECT_METRICS")
    rate_limit_rps: float = _opt(
        0.0,
        "Requests per second allowed per client (token, else address); 0 turns rate limiting off.",
        env="PREDICTOR_RATE_LIMIT_RPS",
    )
    rate_limit_burst: int = _opt(
        100, "Requests a client may send at once above the rate.", env="PREDICTOR_RATE_LIMIT_BURST"
    )
    trust_forwarded_for: bool = _opt(
        False,
        "Identify clients by the first X-Forwarded-For hop (only behind a proxy that sets it).",
        env="PREDICTOR_TRUST_FORWARDED_FOR",
    )
    # --- prediction log ---------------------------------------------------------------------------
    prediction_log: str | None = _opt(
        None,
        "Write every prediction as JSON Lines to this file, or - for stdout (drift monitoring).",
        env="PREDICTOR_PREDICTION_LOG",
    )
    prediction_log_sample_rate: float = _opt(
        1.0, "Share of requests written to the prediction log (0..1).", env="PREDICTOR_PREDICTION_LOG_SAMPLE_RATE"
    )
    payload_log_url: str | None = _opt(
        None,
        "Send each inference call's request and response as CloudEvents (binary mode, like KServe's payload "
        "logger) to this HTTP sink, off the request path.",
        env="PREDICTOR_PAYLOAD_LOG_URL",
    )
    payload_log_mode: str = _opt(
        "all",
        "Which payload events to send: all (request and response), request or response.",
        env="PREDICTOR_PAYLOAD_LOG_MODE",
        choices=("all", "request", "response"),
    )
    payload_log_spool: Path | None = _opt(
        None,
        "A directory where payload events wait while the sink is down or slow (sent in order when it answers "
        "again, also after a restart; with --workers N, one sub-directory worker-I each); without it they wait in "
        "memory, and past 10,000 are dropped (counted).",
        env="PREDICTOR_PAYLOAD_LOG_SPOOL",
    )
    drift_window_rows: int = _opt(
        2000,
        "Live rows each worker compares with the model's training baseline (drift_baseline.json) for the "
        "model_feature_drift_psi / model_prediction_drift_psi gauges and GET /admin/drift. 0 turns drift off.",
        env="PREDICTOR_DRIFT_WINDOW_ROWS",
    )
    # --- shadow scoring -------------------------------------------------------------------------------
    shadow_model_uri: str | None = _opt(
        None,
        "A challenger to score live requests beside the served model, after each response is sent, in a child "
        "process at nice 19 that takes only the CPU the live path leaves (e.g. models:/NAME@challenger; it follows "
        "its alias like the served model; at saturation requests are dropped and counted). Its answers never "
        "reach clients: model_shadow_* metrics, GET /admin/shadow and the prediction log compare them.",
        env="PREDICTOR_SHADOW_MODEL_URI",
    )
    shadow_alias: str | None = _opt(
        None,
        "Shadow-score each served registry model (models:/NAME… URIs, --registry_alias) by the version of the same "
        "registered model that holds this alias (e.g. challenger), as --shadow_model_uri does for one model; "
        "followed like the served model: gaining the alias starts it, losing it stops it.",
        env="PREDICTOR_SHADOW_ALIAS",
    )
    shadow_sample_rate: float = _opt(
        1.0, "Share of live requests the shadow model scores (0..1).", env="PREDICTOR_SHADOW_SAMPLE_RATE"
    )
    shadow_busy_share: float = _opt(
        0.5,
        "CPU seconds per second of this process above which live traffic counts as saturating it, and the shadow "
        "scores only one request in 20 (the rest counted as shed); 0: never shed (every sampled request is scored, "
        "whatever it costs the live path).",
        env="PREDICTOR_SHADOW_BUSY_SHARE",
    )
    # --- multi-worker (set by the supervisor for its workers) --------------------------------------
    worker_state_dir: Path | None = _opt(None, "Shared state of --workers N.", env=WORKER_STATE_ENV, internal=True)
    worker_index: int = _opt(0, "This worker's number.", env=WORKER_INDEX_ENV, internal=True)
    worker_count: int = _opt(1, "How many workers share the state.", env=WORKER_COUNT_ENV, internal=True)
    # --- operations -------------------------------------------------------------------------------
    log_level: str = _opt(
        "INFO", "Log level.", env="PREDICTOR_LOG_LEVEL", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    log_format: str = _opt(
        "text",
        "text: one readable line per event; json: one JSON object per line (time, level, logger, message, "
        "request_id) for cluster log pipelines.",
        env="PREDICTOR_LOG_FORMAT",
        choices=("text", "json"),
    )
    access_log: bool = _opt(
        False,
        "Log one line per HTTP request (off by default: under load it is noise, and it costs CPU on the hot path).",
        env="PREDICTOR_ACCESS_LOG",
    )
    access_log_format: str | None = _opt(
        None, "asgi-logger format of the access log (KServe's flag); implies one line per request."
    )

    @property
    def model_specs(self) -> tuple[ModelSpec, ...]:
        """The models to serve: ``--model`` entries, or the one of ``--model_name`` and ``--model_uri``.

        Raises ``ValueError`` naming the entry that is not NAME=URI, or a name given twice."""
        if not self.models:
            if self.registry_alias:
                return ()  # the registry names them (models/discovery.py)
            return (ModelSpec(self.model_name, self.resolved_model_uri),)
        specs: list[ModelSpec] = []
        for entry in (part.strip() for part in self.models.split(",")):
            name, separator, uri = entry.partition("=")
            if not separator or not name.strip() or not uri.strip() or "/" in name:
                raise ValueError(
                    f"--model {entry!r:.120} is not NAME=URI: give each model as e.g. "
                    "--model pumps=models:/pumps@production (NAME is its URL name, without '/')"
                )
            specs.append(ModelSpec(name.strip(), uri.strip()))
        names = [spec.name for spec in specs]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"--model names {twice} more than once: each model needs a name of its own")
        return tuple(specs)

    @property
    def resolved_model_uri(self) -> str:
        if self.model_uri:
            return self.model_uri
        if self.model_dir:
            return self.model_dir
        if self.model_version is not None and self.model_version.isdigit():
            return f"models:/{self.model_name}/{self.model_version}"
        return f"models:/{self.model_name}@production"

    @property
    def mlflow_request_timeout_s(self) -> int:
        """``registry_timeout_s`` as MLflow's ``MLFLOW_HTTP_REQUEST_TIMEOUT`` wants it: whole seconds.

        Rounded up and at least 1: truncating would turn 0.5 into 0, which MLflow hands to requests as a
        zero timeout (every registry call then fails at once).
        """
        return max(1, math.ceil(self.registry_timeout_s))


# Fields whose flag KServe's parser already defines: we read the value, but must not add the flag again.
_KSERVE_OWNED = {
    "model_name",
    "http_port",
    "grpc_port",
    "workers",
    "enable_grpc",
    "ssl_certfile",
    "ssl_keyfile",
    "access_log_format",
}
# The seed's Flask server spelled its flags with dashes; they are accepted as aliases (flag → field).
SEED_ALIASES = {
    "--model-uri": "model_uri",
    "--model-name": "model_name",
    "--model-version": "model_version",
    "--port": "http_port",
}


class _Off:
    """An empty path given on purpose (``--model_cache_dir ""``): the feature is off, not "use the default"."""

    def __repr__(self) -> str:
        return "OFF"


OFF = _Off()


def _path_or_off(value: str) -> Path | _Off:
    return Path(value) if value else OFF


_PARSERS: dict[type, Callable[[str], Any]] = {bool: _bool, int: int, float: float, Path: _path_or_off, str: str}


def _flag_type(name: str) -> Callable[[str], Any]:
    """How a field's flag or environment value is parsed: from its resolved type (``X | None`` → ``X``)."""
    hint = _hints()[name]
    kinds = [kind for kind in typing.get_args(hint) or (hint,) if kind is not type(None)]
    if len(kinds) != 1 or kinds[0] not in _PARSERS:
        raise TypeError(f"Settings.{name}: no parser for {hint!r}; use one of {sorted(k.__name__ for k in _PARSERS)}")
    return _PARSERS[kinds[0]]


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def build_parser() -> argparse.ArgumentParser:
    from kserve.model_server import parser as kserve_parser  # importing kserve parses sys.argv; harmless

    parser = argparse.ArgumentParser(
        prog="python -m predictor",
        description="Serve an MLflow registry model over KServe v1 and v2 (REST and gRPC). Each flag of ours "
        "may also be given by the environment variable shown; a flag wins over the environment.",
        parents=[kserve_parser],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_ours(parser)
    return parser


def _add_ours(parser: argparse.ArgumentParser) -> None:
    ours = parser.add_argument_group("predictor options")
    for spec in fields(Settings):
        if spec.name in _KSERVE_OWNED or not spec.metadata["flag"]:
            continue
        env = spec.metadata["env"]
        help_text = spec.metadata["help"] + (f" [env {env}]" if env else "") + f" (default: {spec.default})"
        repeat = spec.metadata["repeat"]
        if repeat:
            ours.add_argument(repeat, dest=spec.name, action="append", default=None, help=help_text)
            continue
        ours.add_argument(
            f"--{spec.name}",
            type=_flag_type(spec.name),
            default=None,
            choices=spec.metadata["choices"],
            help=help_text,
        )
    aliases = parser.add_argument_group("aliases (the flags of the seed's Flask server)")
    for alias, name in SEED_ALIASES.items():
        aliases.add_argument(alias, dest=name, type=_flag_type(name), default=None, help=f"same as --{name}")


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """CLI flags, then environment variables, then defaults."""
    # KServe's parser has defaults of its own (--model_name "model"): pre-setting its fields to None in the
    # namespace keeps argparse from filling them in, so None means "not given" for every flag alike.
    namespace = build_parser().parse_args(
        sys.argv[1:] if argv is None else argv, namespace=argparse.Namespace(**dict.fromkeys(_KSERVE_OWNED))
    )
    return _settings_from(namespace, os.environ if environ is None else environ)


def peek_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings | None:
    """The settings as far as they can be read without importing KServe (whose parser defines ``--model_name``
    and its other flags): ours, and ``--model_name`` as text; None when that does not parse. A guess, for choices
    that cost only time when wrong (which modules a start imports first); ``load_settings`` is the answer."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--model_name", default=None)
    _add_ours(parser)
    try:
        namespace, _ = parser.parse_known_args(
            sys.argv[1:] if argv is None else argv, namespace=argparse.Namespace(**dict.fromkeys(_KSERVE_OWNED))
        )
        return _settings_from(namespace, os.environ if environ is None else environ)
    except (SystemExit, ValueError, TypeError):  # argparse exits on a bad value: load_settings will say so
        return None


def _settings_from(namespace: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    values: dict[str, Any] = {}
    for spec in fields(Settings):
        given = getattr(namespace, spec.name, None)
        env = spec.metadata["env"]
        if given is not None:
            values[spec.name] = ",".join(given) if isinstance(given, list) else given
        elif env and environ.get(env):
            values[spec.name] = _flag_type(spec.name)(environ[env])
        elif env and env in environ and _flag_type(spec.name) is _path_or_off:
            values[spec.name] = OFF  # set but empty: a path setting turned off
    off: Any = None
    return Settings(**{name: off if value is OFF else value for name, value in values.items()})


def markdown_table() -> str:
    """The README's configuration table, generated from ``Settings``."""
    rows = ["| flag | environment | default | what it does |", "|---|---|---|---|"]
    for spec in fields(Settings):
        if spec.metadata["internal"]:
            continue
        default = spec.default if spec.default is not MISSING else ""
        env = spec.metadata["env"] or ""
        choices = spec.metadata["choices"]
        help_text = spec.metadata["help"] + (f" One of: {', '.join(choices)}." if choices else "")
        flag = spec.metadata["repeat"] or f"--{spec.name}"
        name = f"`{flag}`" if spec.metadata["flag"] else "(environment only)"
        rows.append(f"| {name} | {f'`{env}`' if env else ''} | `{default}` | {help_text} |")
    return "\n".join(rows)


README_MARKERS = ("<!-- settings:begin -->", "<!-- settings:end -->")


def replace_between(text: str, markers: tuple[str, str], content: str) -> str:
    """``text`` with what stands between the two markers replaced by ``content``."""
    begin, end = markers
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return f"{head}{begin}\n{content}\n{end}{tail}"


def with_settings_table(readme: str) -> str:
    """``readme`` with the text between the settings markers replaced by ``markdown_table()``."""
    return replace_between(readme, README_MARKERS, markdown_table())
