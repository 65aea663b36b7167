"""``make drift-chart``: a drift run against a real Prometheus, drawn from Prometheus's own answers.

The demo model (with its training baseline) is registered in a scratch registry and served; Prometheus scrapes
the server every second. Traffic comes in three phases — as in training, then with one sensor reading 6 °C
too hot (a recalibration upstream), then as in training again — and the chart shows
``model_feature_drift_psi`` per feature and ``model_prediction_drift_psi`` as Prometheus recorded them
(``query_range``), with the alert's 0.2 threshold. Writes ``tests/bench/figures/drift.png`` (``--out``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from predictor.demo.training import generate_telemetry, register_demo_model
from tests.prometheus_server import Prometheus, scrape, start_prometheus
from tests.servers import start_predictor

NAME = "predictive_maintenance"
SHIFTED = "temperature_c"
WINDOW = 600
SHIFT_C = 6.0
PHASES = (("as in training", 0.0), (f"{SHIFTED} +{SHIFT_C:.0f} °C", SHIFT_C), ("as in training again", 0.0))
OUT = Path(__file__).parent / "figures" / "drift.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.drift_chart", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write the PNG (default {OUT})")
    parser.add_argument("--phase_s", type=float, default=30.0, help="seconds of traffic per phase (default 30)")
    parser.add_argument("--rps", type=float, default=40.0, help="requests per second, 10 rows each (default 40)")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="drift-run-") as scratch:
        root = Path(scratch)
        tracking_uri = f"sqlite:///{root}/mlflow.db"
        print("==> registering the demo model with its drift baseline", flush=True)
        register_demo_model(tracking_uri, name=NAME, artifact_root=root / "artifacts")
        server = start_predictor(tracking_uri, root, "--drift_window_rows", str(WINDOW), model_name=NAME)
        prometheus: Prometheus | None = None
        try:
            server.wait_ready()
            target = f"127.0.0.1:{server.http_port}"
            prometheus = start_prometheus(root / "prometheus", [scrape("predictor", target)])
            print(f"==> serving on :{server.http_port}, Prometheus on {prometheus.url}", flush=True)
            started = time.time()
            boundaries = _traffic(server.http_url, options.phase_s, options.rps)
            time.sleep(3)  # the last scrapes
            series = _series(prometheus, started, time.time())
        finally:
            if prometheus is not None:
                prometheus.stop()
            server.stop()
    _draw(series, boundaries, started, options.out)
    print(f"==> wrote {options.out}", flush=True)
    return 0


def _traffic(url: str, phase_s: float, rps: float) -> list[float]:
    """Paced requests of 10 rows through the three phases; returns each phase's start time."""
    predict = f"{url}/v1/models/{NAME}:predict"
    boundaries = []
    with httpx.Client(timeout=10) as client:
        for number, (label, shift) in enumerate(PHASES):
            boundaries.append(time.time())
            print(f"==> phase {number + 1}/{len(PHASES)}: {label} ({phase_s:.0f} s)", flush=True)
            features, _ = generate_telemetry(int(phase_s * rps * 10) + 10, seed=100 + number)
            features[SHIFTED] += shift
            rows = features.to_numpy()
            end, sent = time.monotonic() + phase_s, 0
            while time.monotonic() < end:
                batch = rows[(sent * 10) % (len(rows) - 10) :][:10]
                response = client.post(predict, json={"instances": batch.tolist()})
                response.raise_for_status()
                sent += 1
                pause = sent / rps - (phase_s - (end - time.monotonic()))
                if pause > 0:
                    time.sleep(pause)
    boundaries.append(time.time())
    return boundaries


def _series(prometheus: Prometheus, start: float, end: float) -> dict[str, list[tuple[float, float]]]:
    found: dict[str, list[tuple[float, float]]] = {}
    for expr, label in (("max by (feature) (model_feature_drift_psi)", "feature"), ("model_prediction_drift_psi", "")):
        for result in prometheus.range(expr, start, end):
            name = result["metric"].get(label, "predictions") if label else "predictions"
            found[name] = [(float(t), float(v)) for t, v in result["values"]]
    if not found:
        raise SystemExit("Prometheus recorded no drift series: did the server load the baseline? (see its log)")
    return found


def _draw(series: dict[str, list[tuple[float, float]]], boundaries: list[float], t0: float, out: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4.6), dpi=110)
    axes: Any = figure.add_subplot(1, 1, 1)
    for name, points in sorted(series.items(), key=lambda item: -max(v for _, v in item[1])):
        times = np.array([t - t0 for t, _ in points])
        values = np.array([v for _, v in points])
        highlighted = name in (SHIFTED, "predictions")
        style: dict[str, Any] = {"linewidth": 2.4} if highlighted else {"linewidth": 1, "alpha": 0.6}
        axes.plot(times, values, label=name, **style)
    axes.axhline(0.2, color="crimson", linestyle="--", linewidth=1)
    axes.text(0.5, 0.21, "alert: PSI > 0.2 for 15 min", color="crimson", fontsize=8)
    for number, (label, _) in enumerate(PHASES):
        left, right = boundaries[number] - t0, boundaries[number + 1] - t0
        if number % 2:
            axes.axvspan(left, right, color="0.92", zorder=0)
        axes.text((left + right) / 2, axes.get_ylim()[1] * 0.95, label, ha="center", va="top", fontsize=8)
    axes.set_xlabel("seconds (Prometheus scrapes every 1 s)")
    axes.set_ylabel("population stability index")
    axes.set_title(f"Drift against the training baseline, as Prometheus saw it (window {WINDOW} rows)", fontsize=10)
    axes.legend(fontsize=7, ncol=2, loc="center right")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)


if __name__ == "__main__":
    sys.exit(main())
