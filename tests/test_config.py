"""Settings from flags and the environment, as a user types them (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from predictor.config import DEFAULT_MODEL_NAME, load_settings


def test_an_explicit_model_name_is_honoured_even_when_it_equals_kserves_own_default() -> None:
    assert load_settings(["--model_name", "model"], {}).model_name == "model"


def test_without_flags_the_demo_model_is_served_from_its_production_alias() -> None:
    settings = load_settings([], {})
    assert settings.model_name == DEFAULT_MODEL_NAME
    assert settings.resolved_model_uri == f"models:/{DEFAULT_MODEL_NAME}@production"


def test_the_seed_flask_servers_flags_are_accepted_as_aliases() -> None:
    settings = load_settings(
        [
            "--model-uri",
            "models:/predictive_maintenance/Production",
            "--model-name",
            "pm",
            "--model-version",
            "1.0",
            "--host",
            "127.0.0.1",
            "--port",
            "9000",
        ],
        {},
    )
    assert (settings.model_uri, settings.model_name, settings.host, settings.http_port) == (
        "models:/predictive_maintenance/Production",
        "pm",
        "127.0.0.1",
        9000,
    )
    assert settings.resolved_model_uri == "models:/predictive_maintenance/Production"  # 1.0 is only a label


def test_a_whole_model_version_pins_that_registry_version_when_no_uri_is_given() -> None:
    assert load_settings(["--model-version", "3"], {}).resolved_model_uri == f"models:/{DEFAULT_MODEL_NAME}/3"


def test_a_flag_wins_over_the_environment_and_the_environment_over_the_default() -> None:
    environ = {"PREDICTOR_MAX_INSTANCES": "50", "PREDICTOR_LOG_FORMAT": "json"}
    assert load_settings(["--max_instances", "7"], environ).max_instances == 7
    assert load_settings([], environ).log_format == "json"


def test_kserve_owned_flags_fall_back_to_their_environment_variables() -> None:
    settings = load_settings([], {"KSERVE_TLS_CERT_FILE": "/tls/tls.crt", "KSERVE_TLS_KEY_FILE": "/tls/tls.key"})
    assert (settings.ssl_certfile, settings.ssl_keyfile) == ("/tls/tls.crt", "/tls/tls.key")


def test_per_request_log_lines_are_off_unless_asked_for() -> None:
    assert load_settings([], {}).access_log is False
    assert load_settings(["--access_log", "true"], {}).access_log is True


def test_a_bad_choice_is_refused_with_the_allowed_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_settings(["--log_format", "xml"], {})
    assert "choose from 'text', 'json'" in capsys.readouterr().err


def test_an_empty_model_cache_dir_turns_the_cache_off_by_flag_or_environment() -> None:
    """The README says "Empty: off": an empty value must not fall back to the default .data/model-cache."""
    from pathlib import Path

    assert load_settings([], {}).model_cache_dir == Path(".data/model-cache")
    assert load_settings(["--model_cache_dir", ""], {}).model_cache_dir is None
    assert load_settings([], {"PREDICTOR_MODEL_CACHE_DIR": ""}).model_cache_dir is None
    environ = {"PREDICTOR_MODEL_CACHE_DIR": "/var/cache/predictor"}
    assert load_settings(["--model_cache_dir", ""], environ).model_cache_dir is None  # the flag wins
    assert load_settings([], environ).model_cache_dir == Path("/var/cache/predictor")


@pytest.mark.parametrize(("flag", "whole_seconds"), [("0.5", 1), ("0.01", 1), ("1", 1), ("1.2", 2), ("10", 10)])
def test_the_registry_timeout_reaches_mlflow_rounded_up_to_whole_seconds(flag: str, whole_seconds: int) -> None:
    """MLflow's MLFLOW_HTTP_REQUEST_TIMEOUT is an integer: a sub-second timeout must not become 0 (no wait)."""
    settings = load_settings(["--registry_timeout_s", flag], {})
    assert settings.registry_timeout_s == float(flag)
    assert settings.mlflow_request_timeout_s == whole_seconds


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        ([], {}),
        (["--model_name", "pumps", "--model_cache_dir", "/srv/cache", "--tracking_uri", "http://mlflow:5000"], {}),
        (["--model", "a=models:/a@production,b=runs:/0a1b/model", "--http_port", "9000", "--workers", "1"], {}),
        (["--registry_alias", "production"], {"PREDICTOR_MODEL_CACHE_DIR": ""}),
        (["--model-uri", "models:/pm/Production", "--port", "9000", "--host", "127.0.0.1"], {}),
    ],
)
def test_the_settings_peeked_without_kserve_are_the_settings(argv: list[str], environ: dict[str, str]) -> None:
    """What a start reads before KServe is imported (to choose its first imports) agrees with the real reading on
    every setting but KServe's own flags (the peek reads --model_name of them)."""
    import dataclasses

    from predictor.config import _KSERVE_OWNED, peek_settings

    peeked, loaded = peek_settings(argv, environ), load_settings(argv, environ)
    assert peeked is not None
    kserves = _KSERVE_OWNED - {"model_name"}
    assert {f.name: getattr(peeked, f.name) for f in dataclasses.fields(loaded) if f.name not in kserves} == {
        f.name: getattr(loaded, f.name) for f in dataclasses.fields(loaded) if f.name not in kserves
    }


def test_a_peek_at_flags_that_do_not_parse_is_no_answer() -> None:
    from predictor.config import peek_settings

    assert peek_settings(["--poll_interval_s", "eighty"], {}) is None
    assert peek_settings(["--model_cache_dir"], {}) is None


def test_a_registry_start_imports_scipy_before_kserve_and_a_cached_one_neither(tmp_path: Path) -> None:
    """skops' import walks sys.modules once per SciPy ufunc: SciPy first makes the walk short (2.0 → 0.2 s). The
    choice is made before the settings are read, from a peek that imports no KServe; a start from the local model
    cache imports no SciPy at all."""
    import subprocess
    import sys

    from predictor.models.cache_paths import entry_path

    probe = (
        "import sys; from predictor.__main__ import _import_scipy_first_for_skops; _import_scipy_first_for_skops(); "
        "print('kserve' in sys.modules, 'scipy.special' in sys.modules)"
    )
    flags = ["--tracking_uri", "sqlite:///nowhere.db", "--model_cache_dir", str(tmp_path)]

    def imported(*extra: str) -> str:
        argv = [sys.executable, "-c", probe, *flags, *extra]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout.strip()

    assert imported() == "False True"  # nothing cached: the registry it is
    entry_path(tmp_path, "sqlite:///nowhere.db", "models:/predictive_maintenance@production").write_bytes(b"")
    assert imported() == "False False"
    assert imported("--registry_alias", "production") == "False True"  # discovery asks the registry
