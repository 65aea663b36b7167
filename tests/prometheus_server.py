"""A real Prometheus (Debian's ``prometheus`` package, brought by ``tests/tools.sh``) on a free loopback port,
scraping given targets every second: for the alert tests and the drift chart."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.servers import Process, free_port


class PrometheusMissing(RuntimeError):
    pass


@dataclass
class Prometheus:
    url: str
    process: Process

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        if response.status_code != 200 or body["status"] != "success" or body["data"]["resultType"] != "vector":
            raise AssertionError((expr, body))
        return list(body["data"]["result"])

    def values(self, expr: str) -> list[float]:
        return [float(sample["value"][1]) for sample in self.query(expr)]

    def range(self, expr: str, start: float, end: float, step_s: float = 1.0) -> list[dict[str, Any]]:
        """``query_range``: per series, ``metric`` (labels) and ``values`` ([[t, "v"], …])."""
        params = {"query": expr, "start": start, "end": end, "step": step_s}
        body = httpx.get(f"{self.url}/api/v1/query_range", params=params, timeout=30).json()
        if body["status"] != "success":
            raise AssertionError((expr, body))
        return list(body["data"]["result"])

    def stop(self) -> None:
        self.process.stop()


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise PrometheusMissing(
            f"{name} not found: install Debian's `prometheus` package (apt-get install prometheus), which "
            "provides /usr/bin/prometheus and /usr/bin/promtool (`make tools` does, as root)"
        )
    return found


def scrape(job: str, target: str, metrics_path: str = "/metrics", **labels: str) -> dict[str, Any]:
    """One scrape config: ``target`` as job ``job``, with extra target ``labels`` (as a pod's would carry)."""
    static: dict[str, Any] = {"targets": [target], **({"labels": labels} if labels else {})}
    return {"job_name": job, "metrics_path": metrics_path, "static_configs": [static]}


def start_prometheus(
    directory: Path, scrape_configs: Sequence[dict[str, Any]], rule_files: Sequence[Path] = ()
) -> Prometheus:
    """Scraping every second; started and ready (bounded wait), or stopped again and the error raised."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rule) for rule in rule_files],
                "scrape_configs": list(scrape_configs),
            }
        )
    )
    port = free_port()
    process = Process(
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        directory / "prometheus.log",
        cwd=directory,
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_http_ok(f"{url}/-/ready", 30, 0.1, "prometheus ready", request_timeout_s=1)
    except BaseException:
        process.stop()
        raise
    return Prometheus(url, process)
