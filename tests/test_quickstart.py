"""The README's first command, `make serve`, takes a fresh data folder to a ready server that answers the
seed's curl session as written (only the port differs: the test picks free ones)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.servers import MODEL_NAME, PROJECT_ROOT, PredictorProcess, free_port

SEED_BODY = (
    '{"instances": [[75.3, 24, 0.15, 0.65, 0.8, 2.5, 1, 0, 0, 0], [60.2, 36, 0.25, 0.45, 1.2, 5.0, 0, 1, 1, 1]]}'
)


def curl(*args: str) -> tuple[int, str]:
    done = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


@pytest.fixture(scope="module")
def make_serve(tmp_path_factory: pytest.TempPathFactory):
    data_dir = tmp_path_factory.mktemp("quickstart-data")
    http_port, grpc_port = free_port(), free_port()
    process = PredictorProcess(
        [
            "make",
            "--no-print-directory",
            "serve",
            f"DATA_DIR={data_dir}",
            f"HTTP_PORT={http_port}",
            f"GRPC_PORT={grpc_port}",
        ],
        tmp_path_factory.mktemp("logs") / "make-serve.log",
        cwd=PROJECT_ROOT,
        http_port=http_port,
        grpc_port=grpc_port,
    )
    process.start()
    try:
        yield process.wait_ready(timeout_s=240), data_dir
    finally:
        process.stop()


def test_make_serve_prints_progress_and_serves_the_seed_session(make_serve) -> None:
    server, data_dir = make_serve
    log = server.log(20_000)
    for step in ("[1/2] demo model", "[2/2] Feast feature repo", "serving predictive_maintenance"):
        assert step in log
    base = server.http_url.replace("127.0.0.1", "localhost")
    assert curl(f"{base}/health") == (200, '{"status":"alive"}')
    assert curl(f"{base}/ready")[0] == 200
    status, body = curl(f"{base}/v1/models/{MODEL_NAME}")
    assert status == 200 and json.loads(body)["ready"] is True
    status, body = curl(
        "-X", "POST", f"{base}/v1/models/{MODEL_NAME}:predict", "-H", "Content-Type: application/json", "-d", SEED_BODY
    )
    assert status == 200 and len(json.loads(body)["predictions"]) == 2
    status, body = curl(f"{base}/metrics")
    assert status == 200 and "model_predictions_total" in body
    assert (Path(data_dir) / "mlflow.db").exists()


def test_make_serve_answers_the_feast_issue_curl_by_equipment_id(make_serve) -> None:
    server, _ = make_serve
    status, body = curl(
        "-X",
        "POST",
        f"{server.http_url}/v1/models/{MODEL_NAME}:predict",
        "-H",
        "Content-Type: application/json",
        "-d",
        '{"instances": [{"equipment_id": "pump-0017"}, {"equipment_id": "compressor-0042"}]}',
    )
    assert status == 200, body
    assert len(json.loads(body)["probabilities"]) == 2


# ------------------------------------------------------------------------------------------------- README
README = PROJECT_ROOT / "README.md"


def readme_blocks(info: str) -> list[str]:
    """The commands of every fenced block whose info string is exactly ``info`` (continuations joined)."""
    blocks, current, inside = [], [], False
    for line in README.read_text().splitlines():
        if not inside and line.strip() == f"```{info}":
            inside, current = True, []
        elif inside and line.strip() == "```":
            inside = False
            blocks.append("\n".join(current))
        elif inside:
            current.append(line)
    return blocks


def commands(block: str) -> list[str]:
    joined, pending = [], ""
    for line in block.replace("\\\n", " ").splitlines():
        pending = f"{pending}\n{line}" if pending else line
        if pending.count("'") % 2 == 0:  # a quoted multi-line python -c script stays one command
            joined.append(pending)
            pending = ""
    return [c for c in joined if c.strip()]


def run_shell(command: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout_s, cwd=PROJECT_ROOT)


def test_every_readme_command_runs_against_the_server(make_serve) -> None:
    server, _ = make_serve
    ran = 0
    for info, errors_expected in (("sh", False), ("sh expect-error", True)):
        for block in readme_blocks(info):
            for command in commands(block):
                local = command.replace("localhost:8080", f"127.0.0.1:{server.http_port}").replace(
                    "localhost:8081", f"127.0.0.1:{server.grpc_port}"
                )
                done = run_shell(local)
                assert done.returncode == 0, f"{command}\n{done.stderr}"
                if done.stdout.lstrip().startswith("{"):
                    assert ("error" in json.loads(done.stdout)) == errors_expected, f"{command}\n{done.stdout}"
                ran += 1
    assert ran >= 12


def test_readme_kubernetes_commands_render_with_dry_run() -> None:
    (block,) = readme_blocks("sh k8s")
    for command in commands(block):
        if command.startswith("kubectl apply -k "):
            command = "kubectl kustomize " + command.removeprefix("kubectl apply -k ")
        elif command.startswith("make "):
            command += " DRY_RUN=1"
        done = run_shell(command)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"


def test_readme_settings_and_status_tables_are_generated_from_the_code() -> None:
    from predictor.config import build_parser
    from predictor.docs import regenerated

    text = README.read_text()
    assert regenerated(text) == text, "README's settings or status table is stale: run `make docs`"
    (ours,) = [group for group in build_parser()._action_groups if group.title == "predictor options"]
    for action in ours._group_actions:
        assert f"`{action.option_strings[0]}`" in text, action.option_strings[0]
