"""The one-minute soak (``make soak`` runs ten): mixed load over every door against a real ``mlflow server``, a real
``redis-server`` and a payload sink, with ``--workers 2``, while the faults of ``tests/soak/run.py`` come one after
another. Judged on what a user loses (failures no fault explains, prediction-log lines, payload events) and on the
restart fault of issue 27; memory growth and p99 are reported, and judged only by the ten-minute run (in one minute,
warm-up is most of the run, and on a busy machine latency says more about the machine).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak.run import Soak


# A minute of load between fixed stages (each server start, the registry down and up, two restarts): 195-240 s on a
# quiet 2-core machine, 316 s on a slow day beside the rest of the suite. The suite's 300 s per test is too tight.
@pytest.mark.timeout(600)
def test_a_one_minute_soak_loses_nothing_no_fault_explains(tmp_path: Path) -> None:
    report = Soak(minutes=1, out=tmp_path, say=lambda line: None).run()
    report.write(tmp_path)

    assert report.passed, report.summary()
    windows = report.by_window
    assert windows["redis-server restart"].get("by-id 503", 0) > 0  # the outage was real, and answered 503
    restart = next(name for name in windows if name.startswith("restart from the model cache"))
    assert sum(n for key, n in windows[restart].items() if key.endswith("refused")) > 0  # the server was away
    assert report.answered > 0.7 * report.calls
    assert {"report.md", "report.json", "timeline.png"} <= {p.name for p in tmp_path.iterdir()}
