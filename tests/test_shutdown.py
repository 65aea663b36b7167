"""SIGTERM under load: readiness turns off first, every accepted request completes, the prediction log
holds exactly the accepted predictions, and the process exits within its grace period."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx

from tests.load import run_load
from tests.servers import start_predictor


def test_sigterm_during_load_drops_nothing_and_flushes_the_prediction_log(tracking_uri: str, tmp_path: Path) -> None:
    log_path = tmp_path / "predictions.jsonl"
    server = start_predictor(
        tracking_uri,
        tmp_path / "logs",
        "--drain_delay_s",
        "1.5",
        "--grace_period_s",
        "10",
        "--prediction_log",
        str(log_path),
    ).wait_ready()
    try:

        async def scenario():
            stop = asyncio.Event()

            async def load_balancer() -> float:
                """Like a Kubernetes endpoint controller: stop routing once readiness fails."""
                async with httpx.AsyncClient(timeout=5) as http:
                    while True:
                        try:
                            if (await http.get(server.http_url + "/ready")).status_code == 503:
                                stop.set()
                                return time.monotonic()
                        except httpx.HTTPError:
                            stop.set()
                            return time.monotonic()
                        await asyncio.sleep(0.05)

            load = asyncio.ensure_future(run_load(server.http_url, stop, concurrency=16, max_seconds=30))
            watcher = asyncio.ensure_future(load_balancer())
            await asyncio.sleep(2)
            sent_at = time.monotonic()
            server.signal(signal.SIGTERM)
            not_ready_at = await watcher
            return await load, not_ready_at - sent_at

        result, readiness_lag = asyncio.run(scenario())
        exit_started = time.monotonic()
        code = server.popen.wait(timeout=30)  # type: ignore[union-attr]
        print(
            f"drain: {result.ok} requests ok, {result.failed} failed, readiness off after {readiness_lag:.2f}s, "
            f"exit {time.monotonic() - exit_started:.2f}s after load stopped"
        )
        assert code == 0, server.log()
        assert readiness_lag < 1.0
        assert result.failed == 0 and result.refused == 0, (result.statuses, result.errors[:5])
        assert result.ok > 50
        lines = [json.loads(line) for line in log_path.read_text().splitlines()]
        assert len(lines) == 2 * result.ok  # two rows per request, nothing lost and nothing extra
        assert len({line["request_id"] for line in lines}) == result.ok
        assert {line["model_version"] for line in lines} == {"1"}
        assert set(lines[0]["features"]) >= {"temperature_c", "recent_repair"}
    finally:
        server.stop()


def test_ctrl_c_stops_promptly(tracking_uri: str, tmp_path: Path) -> None:
    server = start_predictor(tracking_uri, tmp_path / "logs").wait_ready()
    try:
        started = time.monotonic()
        server.signal(signal.SIGINT)
        assert server.popen.wait(timeout=15) == 0  # type: ignore[union-attr]
        assert time.monotonic() - started < 10
    finally:
        server.stop()
