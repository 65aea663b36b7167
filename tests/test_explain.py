"""Explanations add up: base_value + Σ contributions = the model's probability of the class, per row, for
real models trained here — the demo forest, scikit-learn boosting, XGBoost and LightGBM (skipped only when
those optional libraries are not installed), linear pipelines with a one-hot column — and they are the
exact path-dependent Shapley values (checked by brute force on a small forest)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from math import factorial
from typing import Any

import numpy as np
import pandas as pd
import pytest

from predictor.demo.training import EQUIPMENT_TYPES, generate_telemetry, train
from predictor.errors import ExplanationNotSupported, answer
from predictor.monitoring.explain import Explainer, explain

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def telemetry() -> tuple[pd.DataFrame, np.ndarray]:
    return generate_telemetry(1500, seed=3)


@pytest.fixture(scope="module")
def typed_telemetry(telemetry: tuple[pd.DataFrame, np.ndarray]) -> tuple[pd.DataFrame, np.ndarray]:
    """The telemetry with a string column, as a signature with a `string` input gives it."""
    frame, labels = telemetry
    frame = frame.copy()
    frame.insert(0, "equipment_type", [EQUIPMENT_TYPES[i % len(EQUIPMENT_TYPES)] for i in range(len(frame))])
    # make the type matter, so its contribution is not zero
    labels = np.where(frame["equipment_type"] == "turbine", 1, labels)
    return frame, labels


def assert_adds_up(explanations: list[dict[str, Any]], proba: np.ndarray, classes: list[Any]) -> None:
    for row, explanation in enumerate(explanations):
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert total == pytest.approx(proba[row, classes.index(explanation["class"])], abs=TOLERANCE)


def test_demo_forest_explanations_add_up_for_the_predicted_class_and_any_other(
    telemetry: tuple[pd.DataFrame, np.ndarray],
) -> None:
    model, features = train("forest")
    rows = telemetry[0].head(40)
    explainer = Explainer.for_model(model, list(features.columns))
    proba = model.predict_proba(rows.to_numpy())
    predicted = explainer.explain(rows)
    assert [e["class"] for e in predicted] == list(model.classes_[proba.argmax(axis=1)])
    assert list(predicted[0]["contributions"]) == list(features.columns)
    assert_adds_up(predicted, proba, list(model.classes_))
    assert_adds_up(explainer.explain(rows, class_=0), proba, list(model.classes_))
    # base_value is the forest's expected output over its training cover: one per class, whatever the row
    assert len({(e["class"], round(e["base_value"], 12)) for e in predicted}) == len(model.classes_)


def brute_force_shap(model: Any, x: np.ndarray, class_index: int) -> np.ndarray:
    """Shapley values of E[f(x) | x_S] by cover (algorithm 1 of Lundberg et al.), over every subset S."""

    def expectation(tree: Any, known: set[int]) -> float:
        t = tree.tree_

        def walk(node: int) -> float:
            if t.children_left[node] < 0:
                value = t.value[node, 0]
                return float(value[class_index] / value.sum())
            left, right, feature = t.children_left[node], t.children_right[node], t.feature[node]
            if feature in known:
                go_left = np.float32(x[feature]) <= t.threshold[node]
                return walk(left if go_left else right)
            cover = t.weighted_n_node_samples
            return float((cover[left] * walk(left) + cover[right] * walk(right)) / (cover[left] + cover[right]))

        return walk(0)

    n = len(x)
    phi = np.zeros(n)
    for tree in model.estimators_:
        for i in range(n):
            others = [j for j in range(n) if j != i]
            for size in range(n):
                weight = factorial(size) * factorial(n - size - 1) / factorial(n)
                for subset in combinations(others, size):
                    known = set(subset)
                    phi[i] += weight * (expectation(tree, known | {i}) - expectation(tree, known))
    return phi / len(model.estimators_)


def test_contributions_are_the_exact_path_dependent_shapley_values() -> None:
    from sklearn.ensemble import RandomForestClassifier

    features, labels = generate_telemetry(600, seed=5)
    x = features.iloc[:, :5].to_numpy()
    model = RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(x, labels)
    frame = pd.DataFrame(x[:3], columns=list(features.columns[:5]))
    for row, explanation in enumerate(explain(model, frame, class_=1)):
        expected = brute_force_shap(model, x[row], 1)
        assert list(explanation["contributions"].values()) == pytest.approx(list(expected), abs=1e-12)


def binary_and_multiclass(labels: np.ndarray, features: pd.DataFrame) -> dict[str, np.ndarray]:
    thirds = np.digitize(features["temperature_c"], np.quantile(features["temperature_c"], [1 / 3, 2 / 3]))
    return {"binary": labels, "three classes": thirds}


@pytest.mark.parametrize("kind", ["binary", "three classes"])
@pytest.mark.parametrize("name", ["GradientBoosting", "HistGradientBoosting"])
def test_scikit_learn_boosting_margins_are_carried_to_probabilities_exactly(
    name: str, kind: str, telemetry: tuple[pd.DataFrame, np.ndarray]
) -> None:
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

    features, labels = telemetry
    target = binary_and_multiclass(labels, features)[kind]
    model: Any
    if name == "GradientBoosting":
        model = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0)
    else:
        model = HistGradientBoostingClassifier(max_iter=30, random_state=0)
        features = features.copy()
        features.loc[features.index[::7], "pressure_delta_bar"] = np.nan  # missing values take their branch
    model.fit(features, target)
    rows = features.head(30)
    explanations = explain(model, rows)
    assert_adds_up(explanations, model.predict_proba(rows), list(model.classes_))
    assert_adds_up(explain(model, rows, class_=model.classes_[0]), model.predict_proba(rows), list(model.classes_))


@pytest.mark.parametrize("kind", ["binary", "three classes"])
def test_xgboost_pred_contribs_in_probability_space(kind: str, telemetry: tuple[pd.DataFrame, np.ndarray]) -> None:
    xgboost = pytest.importorskip("xgboost")  # an optional extra: skipped where it is not installed
    features, labels = telemetry
    target = binary_and_multiclass(labels, features)[kind]
    model = xgboost.XGBClassifier(n_estimators=30, max_depth=4).fit(features, target)
    rows = features.head(30)
    assert_adds_up(explain(model, rows), model.predict_proba(rows), list(model.classes_))
    booster = model.get_booster()  # the native Booster, as mlflow.xgboost.load_model may give it
    assert_adds_up(explain(booster, rows), model.predict_proba(rows), list(model.classes_))


@pytest.mark.parametrize("kind", ["binary", "three classes"])
def test_lightgbm_pred_contrib_in_probability_space(kind: str, telemetry: tuple[pd.DataFrame, np.ndarray]) -> None:
    lightgbm = pytest.importorskip("lightgbm")  # an optional extra: skipped where it is not installed
    features, labels = telemetry
    target = binary_and_multiclass(labels, features)[kind]
    model = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1).fit(features, target)
    rows = features.head(30)
    assert_adds_up(explain(model, rows), model.predict_proba(rows), list(model.classes_))
    assert_adds_up(explain(model.booster_, rows), model.predict_proba(rows), list(model.classes_))


def one_hot_pipeline(final: Any, columns: list[str]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in columns if c != "equipment_type"]
    prepare = ColumnTransformer(
        [("numbers", StandardScaler(), numeric), ("type", OneHotEncoder(handle_unknown="ignore"), ["equipment_type"])]
    )
    return Pipeline([("prepare", prepare), ("model", final)])


def test_linear_pipeline_with_a_one_hot_column_sums_back_to_the_input_columns(
    typed_telemetry: tuple[pd.DataFrame, np.ndarray],
) -> None:
    from sklearn.linear_model import LogisticRegression

    features, labels = typed_telemetry
    model = one_hot_pipeline(LogisticRegression(max_iter=2000), list(features.columns)).fit(features, labels)
    rows = features.head(30)
    proba = model.predict_proba(rows)
    explanations = Explainer.for_model(model, list(features.columns), background=features).explain(rows)
    assert list(explanations[0]["contributions"]) == list(features.columns)  # the four one-hot columns are one
    assert_adds_up(explanations, proba, list(model.classes_))
    turbines = [e for e, kind in zip(explanations, rows["equipment_type"], strict=True) if kind == "turbine"]
    assert all(e["contributions"]["equipment_type"] > 0 for e in turbines if e["class"] == 1)
    # against the background mean, the background's average margin contribution is 0, so the base value is
    # the probability at the mean margin
    without_background = explain(model, rows)
    assert_adds_up(without_background, proba, list(model.classes_))


def test_multiclass_linear_and_a_forest_inside_a_pipeline(typed_telemetry: tuple[pd.DataFrame, np.ndarray]) -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    features, labels = typed_telemetry
    target = binary_and_multiclass(labels, features)["three classes"]
    rows = features.head(20)
    for final in (LogisticRegression(max_iter=2000), RandomForestClassifier(n_estimators=20, random_state=0)):
        model = one_hot_pipeline(final, list(features.columns)).fit(features, target)
        assert_adds_up(explain(model, rows), model.predict_proba(rows), list(model.classes_))


@pytest.mark.parametrize(
    "build",
    [
        lambda: __import__("sklearn.neighbors", fromlist=["x"]).KNeighborsClassifier(),
        lambda: __import__("sklearn.pipeline", fromlist=["x"]).make_pipeline(
            __import__("sklearn.decomposition", fromlist=["x"]).PCA(3),
            __import__("sklearn.linear_model", fromlist=["x"]).LogisticRegression(),
        ),
    ],
    ids=["k-neighbours", "PCA mixes columns"],
)
def test_a_model_we_cannot_explain_exactly_is_a_501_naming_what_we_can(
    build: Callable[[], Any], telemetry: tuple[pd.DataFrame, np.ndarray]
) -> None:
    features, labels = telemetry
    model = build().fit(features.to_numpy(), labels)
    with pytest.raises(ExplanationNotSupported) as raised:
        explain(model, features.head(2))
    answered = answer(raised.value)
    assert (int(answered.status), answered.grpc_code.name) == (501, "UNIMPLEMENTED")
    assert "RandomForest" in answered.message or "mixes" in answered.message


def test_an_unknown_class_is_named(telemetry: tuple[pd.DataFrame, np.ndarray]) -> None:
    from sklearn.ensemble import RandomForestClassifier

    features, labels = telemetry
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(features.to_numpy(), labels)
    with pytest.raises(ExplanationNotSupported, match="'broken'"):
        explain(model, features.head(1), class_="broken")
