"""Adaptive micro-batching: concurrent requests share one model call.

A tree ensemble costs about the same for 1 row as for 64, so while one call runs, arriving requests
queue up and go together in the next call. The first request of a batch waits at most ``max_wait_s``
for company — only while traffic is concurrent (the previous batch merged several requests), so a lone client
never pays the wait, and only until the batch has as many requests as the previous one and ``QUIET_TURNS`` turns
of the event loop have queued no more. A request's rows are never split.
Calls run on one worker thread, off the event loop — except those measured to be cheap: when the previous
call's seconds per row times this batch's rows is at most ``INLINE_BELOW_S``, the call runs on the event loop
itself. Handing a 0.3 ms call to a thread and back cost more than the call (a thread wake-up, the GIL passed
twice, a wake-up of the loop; under load py-spy found ~13% of the loop thread's samples in the hand-off). A model
that turns slow is sent back to the thread from its next call on.

What a call costs is the CPU time of the thread that ran it. Wall time misleads: on the model thread it includes
waiting for the GIL the loop holds, on the loop the moments the kernel or another thread took the CPU or the GIL,
so a 0.5 ms forest measured ~2 ms and was kept off the loop (1,375 of 1,695 batches at 1 row @50, and more with
the drift worker running). A model that waits rather than computes (I/O, sleeps, native threads that release the
GIL) looks cheap by CPU; once two calls in a row on the loop mostly waited, it is kept on the thread for
``DISTRUST_CALLS`` calls, doubling each time it happens again.

If a merged call fails, each request is retried alone so a bad request cannot fail its batch-mates.
``observe(rows, outputs)``, when given, sees every answered batch (drift monitoring: one hand-off per batch
instead of one per request).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from predictor.models.flavors import Outputs

log = logging.getLogger(__name__)

# A call expected to compute for at most this long runs on the event loop (see above). Python's switch interval
# (5 ms): a call computing on the model thread holds the GIL, so keeps the loop from running, as long as that
# anyway. At 1 ms, 50-row batches measured 0.7-1.4 ms under load and went to the thread half of the time.
INLINE_BELOW_S = sys.getswitchinterval()
# An inline call that waited (was off the CPU) more than this, for most of its time, counts as waiting.
WAITED_S = 0.001
# Turns of the event loop without a new request after which a batch that has as many requests as the previous
# one stops waiting: nothing more has arrived, so waiting out ``max_wait_s`` would only leave the loop idle (at 8
# concurrent clients, whose requests all arrive together, every batch waited out the whole millisecond).
QUIET_TURNS = 2
# Thread calls to make, after calls on the loop turned out to wait, before the thread's CPU time is trusted again.
DISTRUST_CALLS = 16
MAX_DISTRUST_CALLS = 1024

PredictFn = Callable[[np.ndarray], Outputs]
Observer = Callable[[np.ndarray, Outputs], None]


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[Outputs]
    timing: list[int] | None = None  # a traced request: its model call's start, end (time.time_ns) and rows


class MicroBatcher:
    def __init__(
        self,
        predict: PredictFn,
        max_batch_rows: int = 64,
        max_wait_s: float = 0.001,
        on_batch: Callable[[int], None] | None = None,
        observe: Observer | None = None,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        """``on_dropped(n)``: n calls of a batch were skipped, their callers gone (a deadline, a cancel)."""
        self._predict = predict
        self._observe = observe
        self._on_dropped = on_dropped or (lambda calls: None)
        self._max_rows = max(1, max_batch_rows)
        self._max_wait_s = max(0.0, max_wait_s)
        self._on_batch = on_batch or (lambda rows: None)
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._carry: _Pending | None = None
        self._last_batch_requests = 2  # until shown otherwise, assume company may be on its way
        self._row_s = float("inf")  # the last call's seconds per row: unknown (so off the loop) until measured
        self._distrusted_calls = 0  # thread calls left before its CPU time may send a call to the loop again
        self._distrust = DISTRUST_CALLS
        self._waits = 0  # consecutive calls on the loop that mostly waited
        self._run_queue = RunQueue()  # read on the loop's thread only (inline calls)
        # One thread: model calls are CPU-bound and the GIL would serialise a second one anyway.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    async def predict(self, rows: np.ndarray, timing: list[int] | None = None) -> Outputs:
        """``timing``: when given, receives the start and end (``time.time_ns``) of the model call that answered
        these rows and the rows it had (a traced request's "model call"; the time before it was the batch wait)."""
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(), name="micro-batcher")
        future: asyncio.Future[Outputs] = loop.create_future()
        self._queue.put_nowait(_Pending(rows, future, timing))
        return await future

    async def predict_alone(self, predict: PredictFn, rows: np.ndarray) -> Outputs:
        """``predict(rows)`` as a call of its own, on the model thread (a request with inference parameters:
        requests with other parameters cannot share its call)."""
        return await _alone(self._executor, predict, rows, self._on_batch, self._observe)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._executor.shutdown(wait=True)
        self._run_queue.close()

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
        loop = asyncio.get_running_loop()
        expected = self._last_batch_requests  # the company worth waiting for: as many as came last time
        deadline = loop.time() + (self._max_wait_s if expected > 1 else 0.0)
        quiet = 0  # turns of the event loop in a row that queued no request
        while rows < self._max_rows:
            if queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0 or (len(batch) >= expected and quiet >= QUIET_TURNS):
                    break
                if len(batch) >= expected:
                    await asyncio.sleep(0)  # one turn: the loop reads what has arrived, and its handlers queue it
                    quiet += 1
                    continue
                try:
                    item = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                item = queue.get_nowait()
            quiet = 0
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
        if len(live) != len(batch):
            self._on_dropped(len(batch) - len(live))
        if not live:
            return
        merged = live[0].rows if len(live) == 1 else np.concatenate([p.rows for p in live])
        self._on_batch(merged.shape[0])
        traced = [p.timing for p in live if p.timing is not None]
        began = time.time_ns() if traced else 0
        try:
            outputs = await self._timed_call(merged)
        except Exception as exc:
            if len(live) == 1:
                _settle(live[0].future, exc=exc)
                return
            for pending in live:  # isolate the culprit
                try:
                    alone = await loop.run_in_executor(self._executor, self._predict, pending.rows)
                except Exception as single_exc:
                    _settle(pending.future, exc=single_exc)
                else:
                    _observed(self._observe, pending.rows, alone)
                    _settle(pending.future, alone)
            return
        if traced:
            ended = time.time_ns()
            for timing in traced:
                timing[:] = (began, ended, merged.shape[0])
        _observed(self._observe, merged, outputs)
        start = 0
        for pending in live:
            end = start + pending.rows.shape[0]
            _settle(pending.future, _rows(outputs, start, end))
            start = end

    async def _timed_call(self, merged: np.ndarray) -> Outputs:
        """One model call, on the loop or the thread (see the module's docstring), measuring what it cost."""
        rows = merged.shape[0]
        if self._row_s * rows <= INLINE_BELOW_S:
            started, started_cpu, preempted = time.perf_counter(), time.thread_time(), self._run_queue.seconds()
            outputs = self._predict(merged)
            seconds, cpu_s = time.perf_counter() - started, time.thread_time() - started_cpu
            self._row_s = cpu_s / rows
            # Mostly waiting, twice in a row (once may be another thread taking the GIL): a model that waits on
            # something, which the thread's CPU time cannot see. Time spent preempted (runnable, but the CPU was
            # another process's) is not waiting: with two workers and a load generator on 2 cores it was common,
            # and sent a computing model to the thread for up to 1,024 calls at a time.
            waiting = seconds - cpu_s
            if waiting > WAITED_S:
                waiting -= self._run_queue.seconds() - preempted
            waited = waiting > WAITED_S and waiting > 0.75 * seconds
            self._waits = self._waits + 1 if waited else 0
            if self._waits >= 2:
                self._distrusted_calls, self._distrust = self._distrust, min(2 * self._distrust, MAX_DISTRUST_CALLS)
                self._waits, self._row_s = 0, seconds / rows
            return outputs
        loop = asyncio.get_running_loop()
        outputs, cpu_s = await loop.run_in_executor(self._executor, _cpu_timed, self._predict, merged)
        if self._distrusted_calls > 0:
            self._distrusted_calls -= 1
        else:
            self._row_s = cpu_s / rows
        return outputs


class RunQueue:
    """Seconds the thread that first asks has spent runnable but not running (preempted), from Linux's
    ``/proc/thread-self/schedstat``, kept open (a read costs ~2 µs); always 0 where that file does not exist."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._unavailable = False

    def seconds(self) -> float:
        if self._unavailable:
            return 0.0
        try:
            if self._fd is None:
                self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            self._unavailable = True
            return 0.0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class DirectPredictor:
    """Batching off: every request is its own model call (still off the event loop)."""

    def __init__(
        self, predict: PredictFn, on_batch: Callable[[int], None] | None = None, observe: Observer | None = None
    ) -> None:
        self._predict = predict
        self._on_batch = on_batch or (lambda rows: None)
        self._observe = observe
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")

    async def predict(self, rows: np.ndarray, timing: list[int] | None = None) -> Outputs:
        self._on_batch(rows.shape[0])
        began = time.time_ns()
        outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._predict, rows)
        if timing is not None:
            timing[:] = (began, time.time_ns(), rows.shape[0])
        _observed(self._observe, rows, outputs)
        return outputs

    async def predict_alone(self, predict: PredictFn, rows: np.ndarray) -> Outputs:
        return await _alone(self._executor, predict, rows, self._on_batch, self._observe)

    async def close(self) -> None:
        self._executor.shutdown(wait=True)


async def _alone(
    executor: ThreadPoolExecutor,
    predict: PredictFn,
    rows: np.ndarray,
    on_batch: Callable[[int], None],
    observe: Observer | None,
) -> Outputs:
    on_batch(rows.shape[0])
    outputs = await asyncio.get_running_loop().run_in_executor(executor, predict, rows)
    _observed(observe, rows, outputs)
    return outputs


def _observed(observe: Observer | None, rows: np.ndarray, outputs: Outputs) -> None:
    if observe is not None:
        try:
            observe(rows, outputs)
        except Exception:  # a watcher must never fail the answers
            log.exception("observing a model call failed")


def _cpu_timed(predict: PredictFn, rows: np.ndarray) -> tuple[Outputs, float]:
    """The call's outputs and the CPU seconds this thread spent on it (not the time it waited for the GIL)."""
    started = time.thread_time()
    outputs = predict(rows)
    return outputs, time.thread_time() - started


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
