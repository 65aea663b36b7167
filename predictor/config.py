"""The one settings object, and the only module that reads CLI flags and the environment.

Every field of ``Settings`` is declared once with its flag, environment variable, default and help; the
``--help`` text, the README's configuration table (``python -m predictor.config --markdown``) and the
parser are all generated from that declaration. KServe's own server flags (``--http_port``,
``--grpc_port``, ``--workers``, …) are accepted too: their parser is a parent of ours.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path(".data")


def _opt(default: Any, help: str, env: str | None = None, choices: Sequence[str] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "env": env, "choices": choices})


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
    model_name: str = _opt("predictive_maintenance", "Name in the URL (/v1/models/NAME) and in metric labels.")
    model_uri: str | None = _opt(
        None,
        "MLflow model to serve: models:/NAME@alias, models:/NAME/Stage, models:/NAME/3, runs:/RUN/model or a "
        "local path. Default: models:/MODEL_NAME@production.",
        env="PREDICTOR_MODEL_URI",
    )
    tracking_uri: str = _opt(
        f"sqlite:///{DEFAULT_DATA_DIR}/mlflow.db",
        "MLflow tracking/registry URI (http://mlflow:5000 in a cluster). The default is the local registry "
        "that `make serve` creates.",
        env="MLFLOW_TRACKING_URI",
    )
    # --- serving ---------------------------------------------------------------------------------
    http_port: int = _opt(8080, "HTTP port (v1, v2 REST, probes, /metrics).")
    grpc_port: int = _opt(8081, "gRPC port (v2 / Open Inference Protocol).")
    workers: int = _opt(1, "Number of HTTP worker processes.")
    enable_grpc: bool = _opt(True, "Serve gRPC on --grpc_port.")
    # --- micro-batching ---------------------------------------------------------------------------
    max_batch_size: int = _opt(
        64, "Most rows one model call may take; concurrent requests are merged up to this.",
        env="PREDICTOR_MAX_BATCH_SIZE",
    )
    max_batch_wait_ms: float = _opt(
        1.0, "How long the first request of a batch may wait for company, in milliseconds. 0 turns batching off.",
        env="PREDICTOR_MAX_BATCH_WAIT_MS",
    )
    # --- request limits ---------------------------------------------------------------------------
    max_instances: int = _opt(10_000, "Most rows accepted in one request (413 above).", env="PREDICTOR_MAX_INSTANCES")
    max_body_bytes: int = _opt(
        8 * 1024 * 1024, "Largest request body accepted, in bytes (413 above).", env="PREDICTOR_MAX_BODY_BYTES"
    )
    # --- features from Feast ----------------------------------------------------------------------
    feature_store: Path | None = _opt(
        None,
        "Path of a Feast feature repository (with feature_store.yaml). When set, requests may carry entity "
        "ids instead of features.",
        env="PREDICTOR_FEATURE_STORE",
    )
    missing_feature_policy: str = _opt(
        "reject",
        "What to do when a stored feature is null or stale: reject (400) or fill it from the training means "
        "logged with the model (the response lists what was filled).",
        env="PREDICTOR_MISSING_FEATURE_POLICY",
        choices=("reject", "fill"),
    )
    # --- operations -------------------------------------------------------------------------------
    data_dir: Path = _opt(DEFAULT_DATA_DIR, "Where local state lives (registry, demo data).", env="PREDICTOR_DATA_DIR")
    log_level: str = _opt("INFO", "Log level.", env="PREDICTOR_LOG_LEVEL", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    @property
    def resolved_model_uri(self) -> str:
        return self.model_uri or f"models:/{self.model_name}@production"


# Fields whose flag KServe's parser already defines: we read the value, but must not add the flag again.
_KSERVE_OWNED = {"model_name", "http_port", "grpc_port", "workers", "enable_grpc"}


def _flag_type(kind: Any) -> Any:
    text = str(kind)
    if "bool" in text:
        return _bool
    if "int" in text:
        return int
    if "float" in text:
        return float
    if "Path" in text:
        return Path
    return str


def build_parser() -> argparse.ArgumentParser:
    from kserve.model_server import parser as kserve_parser  # importing kserve parses sys.argv; harmless

    parser = argparse.ArgumentParser(
        prog="python -m predictor",
        description="Serve an MLflow registry model over KServe v1 and v2 (REST and gRPC). Each flag of ours "
        "may also be given by the environment variable shown; a flag wins over the environment.",
        parents=[kserve_parser],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ours = parser.add_argument_group("predictor options")
    for spec in fields(Settings):
        if spec.name in _KSERVE_OWNED:
            continue
        env = spec.metadata["env"]
        help_text = spec.metadata["help"] + (f" [env {env}]" if env else "") + f" (default: {spec.default})"
        ours.add_argument(
            f"--{spec.name}", type=_flag_type(spec.type), default=None, choices=spec.metadata["choices"],
            help=help_text,
        )
    return parser


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """CLI flags, then environment variables, then defaults."""
    environ = os.environ if environ is None else environ
    namespace = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    values: dict[str, Any] = {}
    for spec in fields(Settings):
        given = getattr(namespace, spec.name, None)
        env = spec.metadata["env"]
        if given is not None and not (spec.name in _KSERVE_OWNED and given == _kserve_default(spec.name)):
            values[spec.name] = given
        elif env and environ.get(env):
            values[spec.name] = _flag_type(spec.type)(environ[env])
        elif spec.name in _KSERVE_OWNED and given is not None:
            values[spec.name] = given
    return Settings(**values)


def _kserve_default(name: str) -> Any:
    from kserve.model_server import parser as kserve_parser

    return kserve_parser.get_default(name)


def markdown_table() -> str:
    """The README's configuration table, generated from ``Settings``."""
    rows = ["| flag | environment | default | what it does |", "|---|---|---|---|"]
    for spec in fields(Settings):
        default = spec.default if spec.default is not MISSING else ""
        env = spec.metadata["env"] or ""
        choices = spec.metadata["choices"]
        help_text = spec.metadata["help"] + (f" One of: {', '.join(choices)}." if choices else "")
        rows.append(f"| `--{spec.name}` | {f'`{env}`' if env else ''} | `{default}` | {help_text} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
