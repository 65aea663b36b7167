"""The local model cache keeps a compiled forest's arrays once per content, mapped read-only by every process that
serves it: two workers serving one model hold one copy of its arrays (the pages show as shared in each worker's
/proc/PID/smaps), and the estimator stays on disk until an explanation needs it. Real forests, a real cache
directory under tmp_path, real processes for the sharing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from predictor.errors import ModelLoadError
from predictor.models import flavors, registry
from predictor.models.cache import FOREST_ARRAYS, UNNAMED_CONTENT_KEPT_S, ModelCache
from predictor.models.forest import PackedForest
from predictor.protocol.schema import Column

COLUMNS = tuple(Column(f"x{i}", "double") for i in range(4))
TRACKING = "sqlite:///registry.db"
URI = "models:/pm@production"


def forest_model(seed: int = 0, version: str = "1") -> registry.LoadedModel:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 4))
    estimator = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=seed).fit(x, x[:, 0] > 0)
    source = registry.ModelSource(URI, version, f"models:/pm/{version}")
    loaded = registry.build(source, COLUMNS, False, {}, flavors.from_estimator(estimator, "sklearn", "pickle"))
    assert isinstance(loaded.predict_fn, PackedForest)
    return loaded


ROWS = np.random.default_rng(9).normal(size=(50, 4))


def mapped_files() -> set[str]:
    return {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith(".npy")}


def test_a_forest_put_in_the_cache_is_served_from_its_mapped_arrays_and_answers_the_same(tmp_path: Path) -> None:
    loaded = forest_model()
    shared = ModelCache(tmp_path, TRACKING, URI).put(loaded)

    (content,) = (tmp_path / "forests").iterdir()
    assert {f"{name}.npy" for name in FOREST_ARRAYS} | {"estimator.pickle"} == {p.name for p in content.iterdir()}
    assert {str(content / f"{name}.npy") for name in FOREST_ARRAYS} <= mapped_files()
    assert isinstance(shared.predict_fn, PackedForest) and not shared.predict_fn.threshold.flags.writeable
    np.testing.assert_array_equal(shared.predict_fn(ROWS), loaded.predict_fn(ROWS))
    # The estimator is not held in memory any more; an explanation reads it back.
    assert shared.estimator is None
    np.testing.assert_array_equal(shared.the_estimator().predict_proba(ROWS), loaded.estimator.predict_proba(ROWS))


def test_a_restart_maps_the_same_content_and_a_second_writer_adds_nothing(tmp_path: Path) -> None:
    loaded = forest_model()
    ModelCache(tmp_path, TRACKING, URI).put(loaded)
    ModelCache(tmp_path, TRACKING, URI).put(forest_model())  # another worker, the same version: the same bytes

    restarted = ModelCache(tmp_path, TRACKING, URI).get(compile_forests=True)

    assert restarted is not None and restarted.version == "1"
    assert len(list((tmp_path / "forests").iterdir())) == 1
    np.testing.assert_array_equal(restarted.predict_fn(ROWS), loaded.predict_fn(ROWS))
    assert restarted.estimator is None and restarted.the_estimator() is not None
    # --compile_forest false: the estimator itself, read from the shared content
    plain = ModelCache(tmp_path, TRACKING, URI).get(compile_forests=False)
    assert plain is not None and not isinstance(plain.predict_fn, PackedForest)
    np.testing.assert_array_equal(plain.predict_fn(ROWS), loaded.predict_fn(ROWS))


WORKER = """
import sys, time
from pathlib import Path
import numpy as np
from predictor.models.cache import ModelCache
served = ModelCache(Path(sys.argv[1]), {tracking!r}, {uri!r}).get(compile_forests=True)
served.predict_fn(np.zeros((200, 4)))
for name in ("feature", "threshold", "children", "value"):
    np.asarray(getattr(served.predict_fn, name)).sum()  # every page of every array touched
print("ready", flush=True)
time.sleep(60)
"""


def smaps_of(pid: int, path: Path) -> dict[str, int]:
    """The kB fields of ``pid``'s mapping of ``path``."""
    fields: dict[str, int] = {}
    inside = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if not line[:1].isupper() or ":" not in line.split()[0]:  # a mapping's header line
            inside = line.endswith(str(path))
        elif inside:
            key, value = line.split()[0].rstrip(":"), line.split()[1]
            if value.isdigit():
                fields[key] = fields.get(key, 0) + int(value)
    return fields


def test_two_workers_serving_one_model_share_its_arrays(tmp_path: Path) -> None:
    ModelCache(tmp_path, TRACKING, URI).put(forest_model())
    (content,) = (tmp_path / "forests").iterdir()
    code = WORKER.format(tracking=TRACKING, uri=URI)
    workers = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:
            threshold = smaps_of(worker.pid, content / "threshold.npy")
            assert threshold["Rss"] > 0, threshold
            # every resident page is shared (dirty while the page cache has not written it back yet)
            assert threshold["Shared_Clean"] + threshold["Shared_Dirty"] == threshold["Rss"], threshold
            assert threshold["Pss"] < threshold["Rss"], threshold  # and counted half to each
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(10)
            assert worker.stdout is not None
            worker.stdout.close()


def test_content_no_entry_names_is_removed_a_day_later_and_an_explanation_then_says_why(tmp_path: Path) -> None:
    old = ModelCache(tmp_path, TRACKING, URI).put(forest_model(seed=0, version="1"))
    (first,) = (tmp_path / "forests").iterdir()
    ModelCache(tmp_path, TRACKING, URI).put(forest_model(seed=1, version="2"))  # the alias moved
    assert len(list((tmp_path / "forests").iterdir())) == 2  # version 1's content is kept for a day

    day_ago = time.time() - UNNAMED_CONTENT_KEPT_S - 60
    os.utime(first, (day_ago, day_ago))
    ModelCache(tmp_path, TRACKING, URI).put(forest_model(seed=1, version="2"))  # no new content: nothing swept
    assert first in set((tmp_path / "forests").iterdir())
    ModelCache(tmp_path, TRACKING, URI).put(forest_model(seed=2, version="3"))  # new content: a sweep

    kept = set((tmp_path / "forests").iterdir())
    assert first not in kept and len(kept) == 2  # version 2's (a minute old) and version 3's
    np.testing.assert_array_equal(old.predict_fn(ROWS), forest_model(seed=0).predict_fn(ROWS))  # still mapped
    with pytest.raises(ModelLoadError, match="removed from the model cache"):
        old.the_estimator()


def test_a_damaged_content_directory_is_ignored_and_the_model_loads_from_the_registry(tmp_path: Path) -> None:
    ModelCache(tmp_path, TRACKING, URI).put(forest_model())
    (content,) = (tmp_path / "forests").iterdir()
    (content / "children.npy").unlink()

    assert ModelCache(tmp_path, TRACKING, URI).get(compile_forests=True) is None
