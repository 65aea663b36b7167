"""Micro-batching is correct under concurrency: results map back, bad requests stay alone, limits hold.

No timing assertions: order and grouping are observed through the rows each model call received.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from predictor.models.batching import DirectPredictor, MicroBatcher


class RecordingModel:
    """Returns each row's first value doubled; rows whose first value is negative make the call fail."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[int] = []
        self.gate = gate

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(5)
        self.calls.append(rows.shape[0])
        if (rows[:, 0] < 0).any():
            raise ValueError("negative input")
        return rows[:, :1] * 2


def request(value: float, rows: int = 1) -> np.ndarray:
    return np.full((rows, 3), value)


def test_concurrent_results_map_back_to_their_requests() -> None:
    model = RecordingModel()

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(model, max_batch_rows=64, max_wait_s=0.01)
        results = await asyncio.gather(*(batcher.predict(request(i, rows=1 + i % 3)) for i in range(200)))
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    for i, result in enumerate(results):
        assert result.shape == (1 + i % 3, 1)
        assert (result == 2 * i).all()
    assert sum(model.calls) == sum(1 + i % 3 for i in range(200))
    assert len(model.calls) < 200, "concurrent requests should have shared model calls"


def test_a_bad_request_does_not_fail_its_batch_mates() -> None:
    gate = threading.Event()
    model = RecordingModel(gate)

    async def scenario():
        batcher = MicroBatcher(model, max_batch_rows=64, max_wait_s=0.05)
        tasks = [asyncio.ensure_future(batcher.predict(request(v))) for v in (1, 2, -1, 3, 4)]
        await asyncio.sleep(0.1)  # all five are queued behind the gate
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    assert isinstance(results[2], ValueError)
    assert [float(r[0, 0]) for i, r in enumerate(results) if i != 2] == [2, 4, 6, 8]


def test_max_batch_size_is_never_exceeded_and_requests_are_not_split() -> None:
    gate = threading.Event()
    model = RecordingModel(gate)

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_rows=8, max_wait_s=0.05)
        tasks = [asyncio.ensure_future(batcher.predict(request(1, rows=3))) for _ in range(10)]
        tasks.append(asyncio.ensure_future(batcher.predict(request(1, rows=20))))  # larger than a batch: alone
        await asyncio.sleep(0.1)
        gate.set()
        await asyncio.gather(*tasks)
        await batcher.close()

    asyncio.run(scenario())
    assert sum(model.calls) == 50
    assert 20 in model.calls
    assert all(rows <= 8 for rows in model.calls if rows != 20)
    assert all(rows % 3 == 0 for rows in model.calls if rows != 20), "a request's rows were split"


def test_max_wait_gathers_requests_that_arrive_within_it() -> None:
    model = RecordingModel()

    async def scenario(wait_s: float) -> None:
        batcher = MicroBatcher(model, max_batch_rows=64, max_wait_s=wait_s)
        first = asyncio.ensure_future(batcher.predict(request(1)))
        await asyncio.sleep(0)  # the worker takes the first request and starts waiting
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(batcher.predict(request(2)))
        await asyncio.gather(first, second)
        await batcher.close()

    asyncio.run(scenario(wait_s=5.0))  # generous: the second arrives long before the wait ends
    assert model.calls == [2]
    model.calls.clear()
    asyncio.run(scenario(wait_s=0.0))  # no wait: the first goes alone
    assert model.calls == [1, 1]


def test_direct_predictor_when_batching_is_off() -> None:
    model = RecordingModel()

    async def scenario() -> list[np.ndarray]:
        direct = DirectPredictor(model)
        results = await asyncio.gather(*(direct.predict(request(i)) for i in range(5)))
        await direct.close()
        return results

    assert [float(r[0, 0]) for r in asyncio.run(scenario())] == [0, 2, 4, 6, 8]
    assert model.calls == [1] * 5


@pytest.mark.parametrize("concurrency", [1, 50])
def test_real_server_batches_give_identical_answers(demo_server, concurrency: int) -> None:
    """Batched and unbatched predictions agree row for row (forest probabilities are exact per row)."""
    import httpx

    rng = np.random.default_rng(concurrency)
    rows = np.round(rng.uniform(0, 100, (concurrency, 10)), 3).tolist()
    url = f"{demo_server.http_url}/v1/models/predictive_maintenance:predict"
    together = httpx.post(url, json={"instances": rows}).json()["probabilities"]

    async def one_by_one() -> list:
        async with httpx.AsyncClient(timeout=30) as client:
            responses = await asyncio.gather(*(client.post(url, json={"instances": [row]}) for row in rows))
        return [r.json()["probabilities"][0] for r in responses]

    np.testing.assert_allclose(asyncio.run(one_by_one()), together)


def test_a_lone_client_never_waits_for_company() -> None:
    """After a batch of one, the next request goes at once even with a long max wait (no 2 s stall)."""
    model = RecordingModel()

    async def scenario() -> None:
        batcher = MicroBatcher(model, max_batch_rows=64, max_wait_s=2.0)
        first = asyncio.ensure_future(batcher.predict(request(1)))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(batcher.predict(request(2)))  # joins the first's wait: a batch of 2
        await asyncio.gather(first, second)
        await batcher.predict(request(3))  # may wait once: the last batch had company
        for value in (4, 5, 6):  # now alone: must not wait 2 s each
            await asyncio.wait_for(batcher.predict(request(value)), timeout=1.5)
        await batcher.close()

    asyncio.run(scenario())
    assert model.calls[0] == 2 and model.calls[-3:] == [1, 1, 1]
