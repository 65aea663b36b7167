"""The challenger in a process of its own, at the lowest CPU priority: shadow scoring takes what the live
process leaves.

In the serving process the challenger's model calls and comparisons shared the live requests' GIL and cores:
at saturation that cost a quarter of the throughput and 40-80% on p99 (``make bench``, ``ours-shadow``). Here
a spawned child loads the challenger itself (the serving process never holds it) at ``nice`` 19, then scores
under Linux's ``SCHED_IDLE`` policy (only on a CPU nothing else wants), answering one ``ShadowBatch`` at a time
with a ``Comparison`` (``shadow.compare``). When the cores
are busy with live traffic the child gets little CPU, the scorer's bounded queue fills, and requests are
dropped and counted (``model_shadow_dropped_total``): the sample thins out instead of the live path slowing.

Messages on the pipe (pickled by ``multiprocessing.connection``):
    child -> parent once: ("ready", ChallengerInfo) | ("failed", message)
    parent -> child: ("score", ShadowBatch) ... ("stop",)
    child -> parent: ("scored", Comparison) | ("error", message)
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from predictor.models.registry import LoadedModel, LoadOptions, ModelSource
from predictor.monitoring.shadow import Comparison, ShadowBatch
from predictor.protocol.schema import Column

log = logging.getLogger(__name__)

NICE = 19
# A batch the child has not answered in this long means it hangs (a starved child answers within seconds of the
# load easing): it is stopped, and the next pass starts a new one.
ANSWER_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0


class ShadowProcessError(RuntimeError):
    """The challenger's process could not load it, died, or did not answer."""


@dataclass(frozen=True)
class ChallengerInfo:
    """What the serving process needs to know of the challenger the child loaded."""

    version: str
    columns: tuple[Column, ...]
    classes: list[Any] | None
    matrix: bool


class ShadowProcess:
    """One challenger version loaded in a child process; ``score`` is thread-safe (one batch at a time)."""

    def __init__(self, source: ModelSource, options: LoadOptions, load_timeout_s: float = 600.0) -> None:
        self.source = source
        context = multiprocessing.get_context("spawn")  # never fork a process running gRPC and uvicorn threads
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_child_main,
            args=(child_end, source, options),
            name=f"shadow-{source.version}",
            daemon=True,
        )
        self._process.start()
        child_end.close()
        self._lock = threading.Lock()
        try:
            message = self._receive(load_timeout_s, "load the challenger")
        except ShadowProcessError:
            self.close()
            raise
        if message[0] != "ready":
            self.close()
            raise ShadowProcessError(str(message[1]))
        self.info: ChallengerInfo = message[1]

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def score(self, batch: ShadowBatch) -> Comparison:
        with self._lock:  # one batch at a time: an answer that never comes ends in a kill, never a late reply
            try:
                self._conn.send(("score", batch))
            except (OSError, ValueError) as exc:
                raise ShadowProcessError(f"the challenger's process is gone ({exc})") from exc
            message = self._receive(ANSWER_TIMEOUT_S, "answer")
        if message[0] == "error":
            raise ShadowProcessError(str(message[1]))
        comparison: Comparison = message[1]
        return comparison

    def _receive(self, timeout_s: float, what: str) -> tuple[Any, ...]:
        """The next message, polling so that a dead child is noticed at once rather than after the timeout."""
        waited = 0.0
        while waited < timeout_s:
            try:
                if self._conn.poll(0.5):
                    message: tuple[Any, ...] = self._conn.recv()
                    return message
            except (EOFError, OSError) as exc:
                raise ShadowProcessError(f"the challenger's process ended (exit code {self._exitcode()})") from exc
            if not self._process.is_alive():
                raise ShadowProcessError(f"the challenger's process ended (exit code {self._exitcode()})")
            waited += 0.5
        self._process.kill()
        raise ShadowProcessError(f"the challenger's process did not {what} within {timeout_s:.0f} s; stopped it")

    def _exitcode(self) -> int | None:
        self._process.join(timeout=1)
        return self._process.exitcode

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def close(self) -> None:
        """Ask the child to stop; kill it if it does not within ``STOP_TIMEOUT_S``."""
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(("stop",))
        self._process.join(STOP_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(STOP_TIMEOUT_S)
        self._conn.close()


def _child_main(conn: Connection, source: ModelSource, options: LoadOptions) -> None:
    """The child: lowest priority, load the challenger, then answer batches until told to stop."""
    os.nice(NICE)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s shadow[{os.getpid()}]: %(message)s")
    from predictor import logs

    logs.silence_known_warnings()
    from predictor.models import registry
    from predictor.monitoring.shadow import compare

    try:
        loaded = registry.load(source, options)
        if loaded.classes is None:
            raise ValueError(
                f"challenger version {loaded.version} has no class probabilities: shadow scoring compares "
                "classifiers (a model with predict_proba)"
            )
    except Exception as exc:  # reported to the serving process, which retries with backoff
        conn.send(("failed", str(exc)))
        return
    classes = list(loaded.classes)
    conn.send(("ready", ChallengerInfo(loaded.version, loaded.columns, classes, loaded.matrix)))
    _idle_priority()
    predict = _probabilities_of(loaded)
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the serving process is gone
            return
        if message[0] == "stop":
            return
        try:
            conn.send(("scored", compare(predict, classes, message[1])))
        except Exception as exc:  # the challenger's own failure: the serving process counts it
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def _idle_priority() -> None:
    """Score only on a CPU nothing else wants (Linux's SCHED_IDLE): nice 19 still took a share of a core from the
    live process and its load generator (side by side: -17% throughput at saturation, against -8% with
    SCHED_IDLE). Loading ran at nice 19 instead, so that a busy machine cannot starve it indefinitely."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is not None:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, policy, os.sched_param(0))


def _probabilities_of(loaded: LoadedModel) -> Callable[[Any], Any]:
    """Live rows (a float64 matrix or typed objects, the same columns) -> the challenger's probabilities."""
    predict = loaded.predict_fn
    if loaded.matrix:
        return lambda rows: predict(np.asarray(rows, dtype=np.float64))
    return lambda rows: predict(np.asarray(rows, dtype=object))
