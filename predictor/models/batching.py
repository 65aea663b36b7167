"""Adaptive micro-batching: concurrent requests share one model call.

A tree ensemble costs about the same for 1 row as for 64, so while one call runs, arriving requests
queue up and go together in the next call. The first request of a batch waits at most ``max_wait_s``
for company — only when nothing else is queued, and only while traffic is concurrent (the previous batch
merged several requests): a lone client never pays the wait. A request's rows are never split.
Calls run on one worker thread, off the event loop — except those measured to be cheap: when the previous
call's seconds per row times this batch's rows is at most ``INLINE_BELOW_S``, the call runs on the event loop
itself. Handing a 0.3 ms call to a thread and back cost more than the call (a thread wake-up, the GIL passed
twice, a wake-up of the loop; under load py-spy found ~13% of the loop thread's samples in the hand-off). A model
that turns slow is sent back to the thread from its next call on. If a merged call fails, each request is
retried alone so a bad request cannot fail its batch-mates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from predictor.models.flavors import Outputs

log = logging.getLogger(__name__)

# A call expected to take at most this long runs on the event loop (see above): the loop is blocked no longer
# than a thread hand-off would have cost it.
INLINE_BELOW_S = 0.001

PredictFn = Callable[[np.ndarray], Outputs]


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[Outputs]


class MicroBatcher:
    def __init__(
        self,
        predict: PredictFn,
        max_batch_rows: int = 64,
        max_wait_s: float = 0.001,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self._max_rows = max(1, max_batch_rows)
        self._max_wait_s = max(0.0, max_wait_s)
        self._on_batch = on_batch or (lambda rows: None)
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._carry: _Pending | None = None
        self._last_batch_requests = 2  # until shown otherwise, assume company may be on its way
        self._row_s = float("inf")  # the last call's seconds per row: unknown (so off the loop) until measured
        # One thread: model calls are CPU-bound and the GIL would serialise a second one anyway.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    async def predict(self, rows: np.ndarray) -> Outputs:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(), name="micro-batcher")
        future: asyncio.Future[Outputs] = loop.create_future()
        self._queue.put_nowait(_Pending(rows, future))
        return await future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = await self._collect(self._queue)
            try:
                await self._call(batch)
            except Exception:  # never let the worker die: the next batch must still be served
                log.exception("micro-batch failed unexpectedly")

    async def _collect(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        first = self._carry or await queue.get()
        self._carry = None
        batch, rows = [first], first.rows.shape[0]
        wait_s = self._max_wait_s if self._last_batch_requests > 1 else 0.0
        deadline = asyncio.get_running_loop().time() + wait_s
        while rows < self._max_rows:
            if queue.empty():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                item = queue.get_nowait()
            if rows + item.rows.shape[0] > self._max_rows:
                self._carry = item  # keeps arrival order: it opens the next batch
                break
            batch.append(item)
            rows += item.rows.shape[0]
        self._last_batch_requests = len(batch)
        return batch

    async def _call(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        live = [p for p in batch if not p.future.done()]  # a cancelled client no longer waits
        if not live:
            return
        merged = live[0].rows if len(live) == 1 else np.concatenate([p.rows for p in live])
        self._on_batch(merged.shape[0])
        try:
            started = time.perf_counter()
            if self._row_s * merged.shape[0] <= INLINE_BELOW_S:
                outputs = self._predict(merged)
            else:
                outputs = await loop.run_in_executor(self._executor, self._predict, merged)
            self._row_s = (time.perf_counter() - started) / merged.shape[0]
        except Exception as exc:
            if len(live) == 1:
                _settle(live[0].future, exc=exc)
                return
            for pending in live:  # isolate the culprit
                try:
                    _settle(pending.future, await loop.run_in_executor(self._executor, self._predict, pending.rows))
                except Exception as single_exc:
                    _settle(pending.future, exc=single_exc)
            return
        start = 0
        for pending in live:
            end = start + pending.rows.shape[0]
            _settle(pending.future, _rows(outputs, start, end))
            start = end


class DirectPredictor:
    """Batching off: every request is its own model call (still off the event loop)."""

    def __init__(self, predict: PredictFn, on_batch: Callable[[int], None] | None = None) -> None:
        self._predict = predict
        self._on_batch = on_batch or (lambda rows: None)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    async def predict(self, rows: np.ndarray) -> Outputs:
        self._on_batch(rows.shape[0])
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, rows)

    async def close(self) -> None:
        self._executor.shutdown(wait=True)


def _rows(outputs: Outputs, start: int, end: int) -> Outputs:
    if isinstance(outputs, dict):  # one array per output (a pyfunc answering a DataFrame)
        return {name: array[start:end] for name, array in outputs.items()}
    return outputs[start:end]


def _settle(future: asyncio.Future[Outputs], result: Outputs | None = None, exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]
