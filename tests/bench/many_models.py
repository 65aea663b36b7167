"""``make bench-many``: issue 24's rows for many models in one process, measured on the real server.

- memory: resident memory of 1 and of 50 demo-size models (50 forests of the demo's size, each trained with its own
  seed, each under its own name) → memory per extra model, against a model's packed size (its share of the local
  model cache: entry, packed arrays, pickled estimator);
- every one of the 50 answers its own prediction, over v1, v2 JSON, gRPC and ``/invocations``;
- a cold model: with ``--max_loaded_models 5``, a request for a model that is not loaded (LRU miss, from the local
  model cache) — the time to its first answer, for 10 models in turn;
- warm throughput while others load: ``hey`` on a loaded model alone, then while cold models load one after another;
- ``--workers 2`` with 10 models: each worker's resident and proportional set size (PSS: shared pages counted
  once per sharer), i.e. whether the models' arrays are shared between workers.

Writes ``BENCH_OUT/many-models.md`` and ``.json`` (``BENCH_OUT`` defaults to ``bench-results``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from kserve.protocol.infer_type import InferResponse

from predictor.demo.columns import FEATURE_NAMES
from tests.bench.load import run_hey
from tests.bench.procs import descendants, settle
from tests.grpc_calls import infer_request, stub
from tests.pyfunc_models import rest_bodies
from tests.servers import SEED_ROWS, PredictorProcess, start_predictor, wait_until

COUNT = 50
LOADED = 5
ROW = dict(zip(FEATURE_NAMES, SEED_ROWS[0], strict=True))


def say(line: str) -> None:
    print(line, flush=True)


def the_models(work: Path, count: int) -> tuple[str, list[Path], list[Any]]:
    """``count`` demo-size forests, each trained with its own seed (distinct trees: the model cache keeps a forest
    once per content, so copies of one model would share their memory and flatter the figures), saved as MLflow
    models in local directories the way the demo logs its own (skops, a signature, an input example). Returns
    each model's own prediction for the bench's row, which every door must answer."""
    import mlflow
    from mlflow.models import infer_signature

    from predictor.demo.training import SKOPS_TRUSTED_TYPES, train

    tracking = f"sqlite:///{work / 'mlflow.db'}"
    paths, expected = [], []
    for index in range(count):
        estimator, features = train("forest", seed=index)
        example = features.head(5)
        path = work / "models" / f"m{index:02d}"
        mlflow.sklearn.save_model(
            estimator,
            str(path),
            signature=infer_signature(example, estimator.predict(example.to_numpy())),
            input_example=example,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
            skops_trusted_types=SKOPS_TRUSTED_TYPES["forest"],
            pip_requirements=["scikit-learn"],
        )
        paths.append(path)
        expected.append(estimator.predict(np.asarray(SEED_ROWS[:1]))[0].item())
        if (index + 1) % 10 == 0:
            say(f"  {index + 1}/{count} trained and saved")
    return tracking, paths, expected


def serve(tracking: str, work: Path, names: list[str], paths: list[Path], *flags: str) -> PredictorProcess:
    models = [arg for name, path in zip(names, paths, strict=False) for arg in ("--model", f"{name}={path}")]
    server = start_predictor(tracking, work / "logs", *models, "--model_cache_dir", str(work / "cache"), *flags)
    server.wait_ready(600)
    return server


def all_ready(server: PredictorProcess, names: list[str]) -> None:
    def ready() -> bool:
        index = httpx.post(f"{server.http_url}/v2/repository/index", timeout=30).json()
        return sum(entry["state"] == "READY" for entry in index) >= len(names)

    wait_until(ready, 600, 1.0, f"{len(names)} models ready")


def answers(server: PredictorProcess, name: str) -> dict[str, Any]:
    """The model's first prediction over each door."""
    seen: dict[str, Any] = {}
    for door, (path, body) in rest_bodies(name, ROW).items():
        headers = {"x-model-name": name} if door == "invocations" else {}
        reply = httpx.post(server.http_url + path, json=body, headers=headers, timeout=30).json()
        seen[door] = (
            reply["predictions"][0]
            if door != "v2"
            else next(o["data"][0] for o in reply["outputs"] if o["name"] == "predictions")
        )
    with stub(server.grpc_target) as client:
        reply = InferResponse.from_grpc(client.ModelInfer(infer_request(name, SEED_ROWS[:1]), timeout=30))
        seen["grpc"] = next(o for o in reply.outputs if o.name == "predictions").as_numpy().tolist()[0]
    return seen


def packed_mb(cache: Path, count: int) -> float:
    """A model's share of the local model cache: its entry, its packed arrays and its pickled estimator."""
    files = [p for p in cache.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20 / count


def pss_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of one process in MB, from smaps_rollup."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return fields["Rss"] / 1024, fields["Pss"] / 1024


def mapped_arrays_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MB of the model arrays ``pid`` maps from the local model cache (``forests/<digest>/*.npy``)."""
    rss = pss = 0
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(maxsplit=1)[0]
        if not head.endswith(":"):  # a mapping's first line: address range, permissions, ..., path
            inside = "/forests/" in line and line.endswith(".npy")
        elif inside and head in ("Rss:", "Pss:"):
            kb = int(line.split()[1])
            rss, pss = (rss + kb, pss) if head == "Rss:" else (rss, pss + kb)
    return rss / 1024, pss / 1024


def discovery_under_load(work: Path, hey: str) -> dict[str, Any]:
    """``--registry_alias production`` at the default poll interval, a model serving 1 row @50: a new model gains
    the alias in the registry (trained and registered meanwhile, on the same cores); how long until it answers,
    and what the other model's callers saw meanwhile."""
    from predictor.config import Settings
    from predictor.demo.training import register_demo_model

    say("discovery under load: a model gaining @production while another serves 1 row @50 ...")
    tracking = f"sqlite:///{work / 'discovery.db'}"
    artifacts = work / "discovery-artifacts"
    register_demo_model(tracking, name="pm_line_a", seed=1, artifact_root=artifacts, stage=None)
    server = start_predictor(tracking, work / "logs", "--registry_alias", "production")
    try:
        wait_until(lambda: _answers_200(server, "pm_line_a"), 300, 0.5, "pm_line_a served")
        body = work / "one-row.json"
        body.write_text(json.dumps({"instances": SEED_ROWS[:1]}))
        poll_s = float(next(f.default for f in dataclasses.fields(Settings) if f.name == "poll_interval_s"))
        outcome: dict[str, Any] = {}

        def load() -> None:
            url = f"{server.http_url}/v1/models/pm_line_a:predict"
            outcome["load"] = run_hey(hey, url, body, 50, int(poll_s * 2 + 15))

        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(3)
        register_demo_model(tracking, name="pm_line_b", seed=2, artifact_root=artifacts, stage=None)
        alias_set = time.monotonic()
        wait_until(lambda: _answers_200(server, "pm_line_b"), poll_s * 3, 0.2, "pm_line_b served")
        served_after_s = time.monotonic() - alias_set
        loader.join()
        result = outcome["load"]
        return {
            "poll_interval_s": poll_s,
            "served_after_s": served_after_s,
            "req_s": result.ok_per_s,
            "p99_ms": result.percentile_ms(99),
            "errors": result.errors,
            "statuses": {str(code): count for code, count in result.status_counts.items()},
        }
    finally:
        server.stop()


def _answers_200(server: PredictorProcess, name: str) -> bool:
    url = f"{server.http_url}/v1/models/{name}:predict"
    try:
        return httpx.post(url, json={"instances": SEED_ROWS[:1]}, timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> int:
    out = Path(os.environ.get("BENCH_OUT", "bench-results"))
    work = (out / "many-models").resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    hey = shutil.which("hey")
    names = [f"m{i:02d}" for i in range(COUNT)]
    results: dict[str, Any] = {}
    say(f"training {COUNT} demo-size forests ...")
    tracking, paths, expected = the_models(work, COUNT)

    say("1 model ...")
    server = serve(tracking, work, names[:1], paths)
    one = settle(server.pid, timeout_s=20)
    server.stop()
    say(f"  {one.total_mb:.0f} MB")

    say(f"{COUNT} models ...")
    started = time.monotonic()
    server = serve(tracking, work, names, paths)
    all_ready(server, names)
    ready_s = time.monotonic() - started
    fifty = settle(server.pid, timeout_s=30)
    doors = sorted(answers(server, names[0]))
    wrong = [
        name
        for name, own in zip(names, expected, strict=True)
        if set(answers(server, name).values()) != {own}  # every door, the model's own answer
    ]
    server.stop()
    per_model = (fifty.total_mb - one.total_mb) / (COUNT - 1)
    packed = packed_mb(work / "cache", COUNT)
    results["memory"] = {
        "one_model_mb": one.total_mb,
        "fifty_models_mb": fifty.total_mb,
        "per_extra_model_mb": per_model,
        "packed_mb": packed,
        "goal_mb": 1.5 * packed + 2,
        "all_ready_s": ready_s,
        "doors": doors,
        "models_answering_differently": wrong,
    }
    say(f"  {fifty.total_mb:.0f} MB: {per_model:.2f} MB per extra model (packed {packed:.2f} MB); wrong: {wrong}")

    say(f"{COUNT} models, --max_loaded_models {LOADED}: cold models from the local cache ...")
    server = serve(tracking, work, names, paths, "--max_loaded_models", str(LOADED))
    first_answer_ms = []
    for name in names[LOADED : LOADED + 10]:
        began = time.monotonic()
        reply = httpx.post(f"{server.http_url}/v1/models/{name}:predict", json={"instances": SEED_ROWS[:1]}, timeout=60)
        first_answer_ms.append((time.monotonic() - began) * 1000)
        assert reply.status_code == 200, reply.text
    results["cold"] = {"first_answer_ms": first_answer_ms, "median_ms": statistics.median(first_answer_ms)}
    say(f"  first answers: median {statistics.median(first_answer_ms):.0f} ms, max {max(first_answer_ms):.0f} ms")

    if hey is not None:
        body = work / "one-row.json"
        body.write_text(json.dumps({"instances": SEED_ROWS[:1]}))
        warm = f"{server.http_url}/v1/models/{names[0]}:predict"
        alone = run_hey(hey, warm, body, 50, 10)
        stop = threading.Event()
        loads: list[float] = []

        def load_cold_ones() -> None:
            for name in names[LOADED + 10 :]:
                if stop.is_set():
                    return
                began = time.monotonic()
                httpx.post(f"{server.http_url}/v1/models/{name}:predict", json={"instances": SEED_ROWS[:1]}, timeout=60)
                loads.append((time.monotonic() - began) * 1000)

        loader = threading.Thread(target=load_cold_ones)
        loader.start()
        during = run_hey(hey, warm, body, 50, 10)
        stop.set()
        loader.join()
        results["warm_while_loading"] = {
            "alone_req_s": alone.ok_per_s,
            "alone_p99_ms": alone.percentile_ms(99),
            "during_req_s": during.ok_per_s,
            "during_p99_ms": during.percentile_ms(99),
            "during_errors": during.errors,
            "loads_meanwhile": len(loads),
        }
        say(
            f"  warm model alone {alone.ok_per_s:.0f} req/s p99 {alone.percentile_ms(99)} ms; while {len(loads)} "
            f"cold models loaded: {during.ok_per_s:.0f} req/s p99 {during.percentile_ms(99) or 0:.1f} ms, "
            f"{during.errors} errors"
        )
    server.stop()

    if hey is not None:
        results["discovery"] = discovery_under_load(work, hey)
        d = results["discovery"]
        say(
            f"  served {d['served_after_s']:.1f} s after the alias was set (poll interval "
            f"{d['poll_interval_s']:.0f} s); the other model meanwhile: {d['req_s']:.0f} req/s, {d['errors']} errors, "
            f"statuses {d['statuses']}"
        )

    say("--workers 2 with 10 models ...")
    server = serve(tracking, work, names[:10], paths, "--workers", "2")
    all_ready(server, names[:10])
    settle(server.pid, timeout_s=20)
    workers = [pid for pid in descendants(server.pid) if pid != server.pid and "predictor" in _cmdline(pid)]
    sizes = {pid: (*pss_mb(pid), *mapped_arrays_mb(pid)) for pid in workers}
    server.stop()
    results["workers"] = {
        str(pid): {"rss_mb": rss, "pss_mb": pss, "arrays_rss_mb": arrays_rss, "arrays_pss_mb": arrays_pss}
        for pid, (rss, pss, arrays_rss, arrays_pss) in sizes.items()
    }
    for pid, (rss, pss, arrays_rss, arrays_pss) in sizes.items():
        say(
            f"  worker {pid}: RSS {rss:.0f} MB, PSS {pss:.0f} MB; the models' mapped arrays: RSS {arrays_rss:.1f} MB, "
            f"PSS {arrays_pss:.1f} MB"
        )

    (out / "many-models.json").write_text(json.dumps(results, indent=1))
    (out / "many-models.md").write_text(markdown(results))
    say(f"written to {out / 'many-models.md'}")
    return 0


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def markdown(results: dict[str, Any]) -> str:
    memory, cold = results["memory"], results["cold"]
    lines = [
        "# Many models in one process (issue 24)",
        "",
        "| row | measured | goal |",
        "|---|---|---|",
        f"| memory, 1 model | {memory['one_model_mb']:.0f} MB | |",
        f"| memory, {COUNT} models | {memory['fifty_models_mb']:.0f} MB "
        f"(all ready in {memory['all_ready_s']:.0f} s) | |",
        f"| per extra model | {memory['per_extra_model_mb']:.2f} MB | ≤ {memory['goal_mb']:.2f} MB "
        f"(1.5 × packed {memory['packed_mb']:.2f} MB + 2) |",
        f"| models answering their own prediction over {', '.join(memory['doors'])} | "
        f"{COUNT - len(memory['models_answering_differently'])} of {COUNT} | all |",
        f"| cold model's first answer (LRU miss, local cache), median of 10 | {cold['median_ms']:.0f} ms "
        f"(max {max(cold['first_answer_ms']):.0f}) | ≤ 300 ms |",
    ]
    if "warm_while_loading" in results:
        w = results["warm_while_loading"]
        lines.append(
            f"| warm model 1 row @50 alone / while {w['loads_meanwhile']} others load | {w['alone_req_s']:.0f} / "
            f"{w['during_req_s']:.0f} req/s, p99 {w['alone_p99_ms'] or 0:.1f} / {w['during_p99_ms'] or 0:.1f} ms, "
            f"{w['during_errors']} errors | kept |"
        )
    if "discovery" in results:
        d = results["discovery"]
        lines.append(
            f"| a model gaining @production under load (--registry_alias, default poll {d['poll_interval_s']:.0f} s) | "
            f"served {d['served_after_s']:.1f} s after the alias was set; the other model {d['req_s']:.0f} req/s, "
            f"{d['errors']} errors | within one poll, zero failed requests |"
        )
    for pid, sizes in results.get("workers", {}).items():
        lines.append(
            f"| --workers 2, 10 models: worker {pid} | RSS {sizes['rss_mb']:.0f} MB, PSS {sizes['pss_mb']:.0f} MB; "
            f"mapped model arrays RSS {sizes.get('arrays_rss_mb', 0):.1f} MB, PSS {sizes.get('arrays_pss_mb', 0):.1f} "
            "MB | arrays' PSS half their RSS (one copy for both workers) |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
