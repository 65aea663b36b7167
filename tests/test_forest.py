"""The compiled forest gives scikit-learn's probabilities exactly, or is not used at all."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from predictor.models.forest import _float32_cuts, compile_forest


def data(classes: int, rows: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6)) * [1, 10, 100, 0.01, 1, 1]
    x[:, 4] = rng.integers(0, 2, rows)  # a binary flag, like the demo's alarms
    y = (x[:, 0] + x[:, 1] / 10 + x[:, 4] + rng.normal(size=rows)).round().astype(int) % classes
    return x, y


@pytest.mark.parametrize("kind", [RandomForestClassifier, ExtraTreesClassifier])
@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("max_depth", [4, None])
def test_compiled_probabilities_equal_scikit_learns(kind, classes: int, max_depth) -> None:
    x, y = data(classes)
    forest = kind(n_estimators=25, max_depth=max_depth, random_state=1).fit(x, y)
    compiled = compile_forest(forest)
    assert compiled is not None
    unseen, _ = data(classes, rows=2000, seed=7)
    assert np.array_equal(compiled(unseen), forest.predict_proba(unseen))
    assert np.array_equal(compiled(unseen[:1]), forest.predict_proba(unseen[:1]))


@pytest.mark.parametrize("estimator", [LogisticRegression(), GradientBoostingClassifier(n_estimators=5)])
def test_other_models_are_left_to_scikit_learn(estimator) -> None:
    x, y = data(2)
    assert compile_forest(estimator.fit(x, y)) is None


def test_a_subclass_with_its_own_behaviour_is_left_alone() -> None:
    class Calibrated(RandomForestClassifier):
        def predict_proba(self, X):  # type: ignore[override]
            return super().predict_proba(X) ** 2

    x, y = data(2)
    assert compile_forest(Calibrated(n_estimators=5, random_state=0).fit(x, y)) is None


def test_a_one_feature_forest_compiles_and_agrees() -> None:
    """Leaves split on no feature; packing them as feature 0 must stay inside a one-column row."""
    x, y = data(2)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(x[:, :1], y)
    compiled = compile_forest(forest)
    assert compiled is not None
    assert np.array_equal(compiled(x[:50, :1]), forest.predict_proba(x[:50, :1]))


def test_a_forest_of_more_packed_nodes_than_the_limit_is_left_to_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    from predictor.models import forest as module

    x, y = data(2)
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(x, y)
    packed = 3 * max(tree.tree_.node_count for tree in model.estimators_)
    monkeypatch.setattr(module, "MAX_PACKED_NODES", packed)
    assert compile_forest(model) is not None  # exactly at the limit
    monkeypatch.setattr(module, "MAX_PACKED_NODES", packed - 1)
    assert compile_forest(model) is None


def test_compiling_logs_the_tree_count_and_a_disagreement_keeps_scikit_learn(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from predictor.models import forest as module

    x, y = data(2)
    model = RandomForestClassifier(n_estimators=4, random_state=0).fit(x, y)
    with caplog.at_level("INFO", logger="predictor.models.forest"):
        assert compile_forest(model) is not None
    assert caplog.messages == ["forest of 4 trees compiled to NumPy (checked against scikit-learn)"]
    caplog.clear()
    real_pack = module._pack

    def off_by_a_little(*args: object) -> object:
        packed = real_pack(*args)  # type: ignore[arg-type]
        return lambda rows: packed(rows) * (1 + 1e-12)

    monkeypatch.setattr(module, "_pack", off_by_a_little)
    with caplog.at_level("INFO", logger="predictor.models.forest"):
        assert compile_forest(model) is None
    assert caplog.messages == ["compiled forest disagrees with scikit-learn; using predict_proba"]
    caplog.clear()

    def broken(*args: object) -> object:
        def fail(rows: np.ndarray) -> np.ndarray:
            raise IndexError("a shape we did not anticipate")

        return fail

    monkeypatch.setattr(module, "_pack", broken)
    with caplog.at_level("INFO", logger="predictor.models.forest"):
        assert compile_forest(model) is None
    assert caplog.messages[0] == "compiled forest check failed"


class _Tree:
    """A hand-made one-split tree in scikit-learn's layout: node 0 splits feature 0 at 0.5."""

    def __init__(self, value: list[list[float]]) -> None:
        self.node_count = 3
        self.children_left = np.array([1, -1, -1])
        self.children_right = np.array([2, -1, -1])
        self.feature = np.array([0, -2, -2])
        self.threshold = np.array([0.5, -2.0, -2.0])
        self.value = np.array(value, dtype=np.float64)[:, None, :]
        self.max_depth = 1


def test_packed_leaves_hold_class_fractions_whether_a_tree_stored_counts_or_fractions() -> None:
    from predictor.models.forest import _pack

    fractions = _Tree([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]])
    counts = _Tree([[4, 4], [1, 3], [4, 0]])  # older scikit-learn releases stored counts
    rows = np.array([[0.0], [0.5], [0.75]])
    expected = [[0.25, 0.75], [0.25, 0.75], [1.0, 0.0]]
    assert _pack([fractions], 3, 2, 1, None)(rows).tolist() == expected
    assert _pack([counts], 3, 2, 1, None)(rows).tolist() == expected
    assert _pack([fractions, counts], 3, 2, 1, None)(rows).tolist() == expected  # the mean over trees


@pytest.mark.parametrize("missing_in_training", [False, True])
def test_missing_values_go_where_scikit_learn_sends_them(missing_in_training: bool) -> None:
    """scikit-learn 1.4+ sends a NaN down each node's own side (learnt while fitting, or the larger child's when
    fitting saw none); the first compiled layout sent every NaN right and disagreed on 177 of 200 such rows."""
    x, y = data(2)
    rng = np.random.default_rng(3)
    if missing_in_training:
        x[rng.random(x.shape) < 0.1] = np.nan
    forest = RandomForestClassifier(n_estimators=20, random_state=0).fit(x, y)
    compiled = compile_forest(forest)
    assert compiled is not None
    unseen, _ = data(2, rows=1000, seed=9)
    unseen[rng.random(unseen.shape) < 0.2] = np.nan
    assert np.array_equal(compiled(unseen), forest.predict_proba(unseen))
    assert np.array_equal(compiled(unseen[:1]), forest.predict_proba(unseen[:1]))


def test_a_forest_that_refuses_nan_refuses_it_compiled_with_scikit_learns_words() -> None:
    from predictor.models.forest import _pack

    refusing = _pack([_Tree([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]])], 3, 2, 1, "Input X contains NaN.")
    with pytest.raises(ValueError, match="Input X contains NaN"):
        refusing(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="expecting 1 features"):
        refusing(np.zeros((1, 2)))


def test_float32_cuts_send_every_float32_value_where_the_float64_threshold_does() -> None:
    rng = np.random.default_rng(3)
    thresholds = np.concatenate(
        [rng.normal(size=4000) * 10.0 ** rng.integers(-30, 30, 4000), [0.0, -0.0, 1e39, -1e39, np.inf, -np.inf]]
    )
    cuts = _float32_cuts(thresholds)
    assert cuts.dtype == np.float32
    # values on, next to and far from each threshold, as float32 (what the forest compares)
    with np.errstate(over="ignore"):
        near = thresholds.astype(np.float32)
    values = np.concatenate([near, np.nextafter(near, np.float32(np.inf)), np.nextafter(near, np.float32(-np.inf))])
    for shift in range(3):
        t = np.roll(thresholds, shift)
        c = np.roll(cuts, shift)
        for v in np.split(values, 3):
            assert np.array_equal(v <= t, v <= c)


def test_a_wide_forest_splits_on_features_beyond_255() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 300))
    y = (x[:, 280] + x[:, 5] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=10, random_state=0).fit(x, y)
    compiled = compile_forest(forest)
    assert compiled is not None and compiled.feature.max() >= 256
    assert np.array_equal(compiled(x[:50]), forest.predict_proba(x[:50]))
