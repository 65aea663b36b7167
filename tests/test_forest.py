"""The compiled forest gives scikit-learn's probabilities exactly, or is not used at all."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from predictor.models.forest import compile_forest


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
