"""The registry is a real `mlflow server`: down at start → live but not ready; back → ready by itself."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.servers import MODEL_NAME, SEED_ROWS, free_port, mlflow_server, sample, scrape, start_predictor, wait_until


def test_registry_down_at_start_then_back_and_a_restart_from_the_cache_while_it_is_down(
    tracking_uri: str, registry_dir: Path, tmp_path: Path
) -> None:
    """Down at start: live, not ready, model_loaded{version="none"}; back: ready by itself, following the
    Production stage over HTTP; down again and the predictor restarted: it serves from its cache."""
    port = free_port()
    cache = str(tmp_path / "model-cache")
    flags = ("--model_uri", "models:/predictive_maintenance/Production", "--model_cache_dir", cache)
    predictor = start_predictor(f"http://127.0.0.1:{port}", tmp_path, "--poll_interval_s", "1", *flags)
    registry = restarted = None
    try:
        predictor.wait_live()
        not_ready = httpx.get(predictor.http_url + "/ready")
        assert not_ready.status_code == 503
        assert sample(scrape(predictor.http_url), "model_loaded", model_name=MODEL_NAME, model_version="none") == 0
        assert ("model_loaded", frozenset({"model_name": MODEL_NAME, "model_version": "none"}.items())) in scrape(
            predictor.http_url
        )
        wait_until(
            lambda: "cannot resolve" in httpx.get(predictor.http_url + "/ready").json()["error"],
            30,
            0.2,
            "the registry error in /ready",
        )
        predict = httpx.post(f"{predictor.http_url}/v1/models/{MODEL_NAME}:predict", json={"instances": SEED_ROWS})
        assert predict.status_code == 503 and "registry is unreachable" in predict.json()["error"]

        registry = mlflow_server(registry_dir, port, tmp_path).start()
        wait_until(
            lambda: httpx.get(predictor.http_url + "/ready").status_code == 200,
            120,
            0.5,
            "readiness after the registry came back",
        )
        assert httpx.get(f"{predictor.http_url}/v1/models/{MODEL_NAME}").json()["version"] == "1"

        registry.stop()  # once loaded, a registry outage only pauses hot-swap polling
        assert (
            httpx.post(
                f"{predictor.http_url}/v1/models/{MODEL_NAME}:predict", json={"instances": SEED_ROWS}
            ).status_code
            == 200
        )
        assert httpx.get(predictor.http_url + "/ready").status_code == 200
        assert predictor.alive()

        predictor.stop()  # the registry is still down: a restart serves the cached version
        restarted = start_predictor(f"http://127.0.0.1:{port}", tmp_path, "--poll_interval_s", "1", *flags)
        restarted.wait_ready()
        assert "serving version 1 from the local model cache" in restarted.log(100_000)
        answer = httpx.post(f"{restarted.http_url}/v1/models/{MODEL_NAME}:predict", json={"instances": SEED_ROWS})
        assert answer.status_code == 200 and answer.json()["model_version"] == "1"
        wait_until(
            lambda: httpx.get(restarted.http_url + "/admin/versions").json()["last_registry_error"] is not None,
            60,
            0.3,
            "the failed revalidation reported",
        )
        assert httpx.get(restarted.http_url + "/ready").status_code == 200
    finally:
        predictor.stop()
        if restarted is not None:
            restarted.stop()
        if registry is not None:
            registry.stop()


def test_an_mlflow_webhook_swaps_without_polling(tmp_path: Path, monkeypatch) -> None:
    """A real `mlflow server` delivers its signed alias event to the predictor, which swaps at once."""
    from mlflow import MlflowClient

    from predictor.demo.training import register_demo_model

    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    register_demo_model(f"sqlite:///{registry_dir}/mlflow.db", artifact_root=registry_dir / "artifacts")
    port = free_port()
    registry = mlflow_server(registry_dir, port, tmp_path)
    # Our predictor listens on loopback, over plain HTTP: MLflow refuses both unless told otherwise.
    from cryptography.fernet import Fernet

    allow = {
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        # one key for every process that reads the stored (encrypted) webhook secret
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    registry.env.update(allow)
    for name, value in allow.items():  # the client checks the URL too
        monkeypatch.setenv(name, value)
    tracking = f"http://127.0.0.1:{port}"
    predictor = None
    try:
        registry.start()
        predictor = start_predictor(
            tracking,
            tmp_path,
            "--poll_interval_s",
            "0",
            "--access_log",
            "true",
            env={"PREDICTOR_WEBHOOK_SECRET": "s3cret"},
        )
        predictor.wait_ready(timeout_s=120)
        MlflowClient(tracking_uri=tracking, registry_uri=tracking).create_webhook(
            name="predictor",
            url=f"{predictor.http_url}/admin/webhook/mlflow",
            events=["model_version_alias.created"],
            secret="s3cret",
        )
        register_demo_model(tracking, kind="logreg", artifact_root=registry_dir / "artifacts", force=True)
        wait_until(
            lambda: httpx.get(f"{predictor.http_url}/v1/models/{MODEL_NAME}").json()["version"] == "2",
            60,
            0.3,
            "the webhook-triggered swap",
        )
        # the access log (on for this test) shows the delivery: MLflow called us, we did not poll
        assert '"POST /admin/webhook/mlflow HTTP/1.1" 200' in predictor.log(200_000)
        unsigned = httpx.post(f"{predictor.http_url}/admin/webhook/mlflow", json={"entity": "model_version_alias"})
        assert unsigned.status_code == 401
    finally:
        if predictor is not None:
            predictor.stop()
        registry.stop()
