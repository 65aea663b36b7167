"""``/metrics`` with ``--workers N`` (prometheus_client's multiprocess mode), against the installed prometheus_client:
a worker creating a metric file leaves it empty for a moment, and a scrape that reads it then must not fail (the
soak found it answering 500). The exposition reads again; here the "worker" finishes its file while it waits."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from predictor.serving import server


def test_a_metric_file_still_empty_when_scraped_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = tmp_path / "counter_1.db"  # a worker's counter file, as prometheus_client writes it
    values_file = MmapedDict(str(written))
    values_file.write_value(mmap_key("soak_calls_total", "soak_calls_total", [], [], "calls"), 3.0, 0.0)
    values_file.close()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    being_written = tmp_path / "counter_99999.db"
    being_written.touch()  # another worker's file, created and not yet initialised
    monkeypatch.setattr(server.time, "sleep", lambda _: shutil.copyfile(written, being_written))

    exposition = server._metrics_exposition(multiprocess=True)()

    assert b"soak_calls_total 6.0" in exposition  # both files, once the second was whole


def test_a_file_that_stays_unreadable_is_still_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "counter_99999.db").touch()
    monkeypatch.setattr(server.time, "sleep", lambda _: None)

    with pytest.raises((struct.error, ValueError)):  # prometheus_client's own error: answered as the generic 500
        server._metrics_exposition(multiprocess=True)()
