"""Starting the server the way users of the seed's Flask server did, and what a clean session logs."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
import psutil

from tests.servers import SEED_ROWS, PredictorProcess, free_port

NOISE = ("Warning", "warning", "Traceback", "uvicorn.access", '"POST ', '"GET ')


def test_the_seed_invocation_serves_and_a_clean_session_logs_no_warning_traceback_or_request_line(
    tracking_uri: str, tmp_path: Path
) -> None:
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "predictor",
        "--model-uri",
        "models:/predictive_maintenance/Production",
        "--model-name",
        "predictive_maintenance",
        "--model-version",
        "1.0",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--grpc_port",
        str(free_port()),
        "--tracking_uri",
        tracking_uri,
        "--model_cache_dir",
        str(tmp_path / "cache"),
    ]
    server = PredictorProcess(args, tmp_path / "predictor.log", cwd=tmp_path, http_port=port)
    try:
        server.start().wait_ready()
        for _ in range(5):
            answer = httpx.post(
                f"{server.http_url}/v1/models/predictive_maintenance:predict", json={"instances": SEED_ROWS}, timeout=10
            )
            assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == "1"  # the registry version, not the --model-version label
        # --host: the HTTP port listens on that address alone (not on every interface)
        assert server.popen is not None
        process = psutil.Process(server.popen.pid)
        sockets = getattr(process, "net_connections", None) or process.connections  # psutil 6 renamed it
        listening = {(c.laddr.ip, c.laddr.port) for c in sockets(kind="inet") if c.status == psutil.CONN_LISTEN}
        assert ("127.0.0.1", port) in listening and ("0.0.0.0", port) not in listening, listening
        server.signal(signal.SIGINT)
        assert server.popen is not None and server.popen.wait(30) == 0
    finally:
        server.stop()
    log = server.log(last=100_000)
    assert "deployment label (--model-version): 1.0" in log
    assert [line for line in log.splitlines() if any(word in line for word in NOISE)] == []
