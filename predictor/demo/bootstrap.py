"""``python -m predictor.demo.bootstrap``: the local, embedded default that ``make serve`` runs on.

Creates the MLflow registry (SQLite) in the data folder, trains and registers the demo model unless
``predictive_maintenance@production`` already exists (with its drift baseline), a challenger version under
``@challenger`` (for ``--shadow_model_uri``) unless that exists, and builds the Feast repo (SQLite online store)
with the demo telemetry. Idempotent; prints a line per step with its duration.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from predictor.config import DEFAULT_MODEL_NAME

FEATURE_REPO_SOURCE = Path(__file__).parent / "feature_repo"


@contextmanager
def step(number: int, total: int, text: str) -> Iterator[None]:
    print(f"==> [{number}/{total}] {text} ...", flush=True)
    started = time.perf_counter()
    yield
    print(f"    done in {time.perf_counter() - started:.1f}s", flush=True)


def bootstrap(
    data_dir: Path, model_name: str = DEFAULT_MODEL_NAME, force: bool = False, with_features: bool = True
) -> None:
    from predictor.demo.training import CHALLENGER_ALIAS, register_challenger, register_demo_model

    data_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{data_dir}/mlflow.db"
    total = 2 if with_features else 1
    with step(1, total, f"demo model {model_name} in the MLflow registry {tracking_uri}"):
        registered = register_demo_model(
            tracking_uri, name=model_name, artifact_root=data_dir / "mlartifacts", force=force
        )
        state = "trained and registered" if registered.created else "already registered"
        print(f"    {state}: version {registered.version} (@production, stage Production)")
        challenger = register_challenger(
            tracking_uri, name=model_name, artifact_root=data_dir / "mlartifacts", force=force
        )
        state = "trained and registered" if challenger.created else "already registered"
        print(f"    challenger {state}: version {challenger.version} (@{CHALLENGER_ALIAS}, for --shadow_model_uri)")
    if with_features:
        from predictor.demo.feast_setup import prepare_feature_store

        with step(2, total, "Feast feature repo with a SQLite online store (apply + materialize)"):
            prepare_feature_store(
                FEATURE_REPO_SOURCE, data_dir / "feature_repo", progress=lambda line: print(f"    {line}", flush=True)
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m predictor.demo.bootstrap",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data_dir", type=Path, default=Path(".data"), help="where the local state lives")
    parser.add_argument("--model_name", default=DEFAULT_MODEL_NAME, help="registered model name")
    parser.add_argument("--force", action="store_true", help="train and register a new version even if one exists")
    parser.add_argument("--no_features", action="store_true", help="skip the Feast repo")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bootstrap(args.data_dir, args.model_name, args.force, with_features=not args.no_features)


if __name__ == "__main__":
    main()
