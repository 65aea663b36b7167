"""Per-row explanations in probability space, keyed by the model's INPUT columns.

``Explainer.for_model(model, input_columns)`` is built once per loaded model version (it flattens the trees);
``explainer.explain(rows, class_)`` then answers, per row::

    {"class": label, "base_value": b, "contributions": {input_column: c, ...}}

with ``b + sum(contributions) == predict_proba(rows)[:, class]`` to float rounding (the tests check 1e-6).

What is computed, by model kind:

- **Random forests, extra trees, decision trees** (scikit-learn): exact path-dependent TreeSHAP
  (``treeshap.py``) on the leaves' class probabilities, averaged over the trees — already probability space.
- **GradientBoosting / HistGradientBoosting** (scikit-learn), **XGBoost** (``pred_contribs``), **LightGBM**
  (``pred_contrib``): exact TreeSHAP in *margin* (log-odds) space, then carried to probability space.
- **Linear models with predict_proba** (LogisticRegression, SGDClassifier(loss="log_loss"), …): in margin
  space ``φ_j = w_j (z_j − μ_j)`` with ``μ`` the mean of the transformed ``background`` rows (or 0, the
  transformed-space origin, when no background is given; ``base_value`` then is the link of the intercept).

Margin → probability, exactly: with ``m0`` the base margins and ``m = m0 + Σ_j φ_j`` the row's margins, the
contribution of feature ``j`` to ``p_c`` is ``φ_j · ∫₀¹ ∇p_c(m0 + t(m − m0)) dt`` (integrated gradients of
the link along the straight line in margin space; the integral is linear in ``φ_j``, so the parts add up to
``p_c(m) − p_c(m0)``). For a binary model (sigmoid) that integral is the secant
``(p − p0) / (m − m0)``, in closed form; for softmax it is a 64-point Gauss–Legendre quadrature, after which
the parts are rescaled by ``(p − p0) / Σ`` (a factor within ~1e-12 of 1) so that they add up to the model's
own ``predict_proba`` exactly. ``base_value`` is ``p_c(m0)``.

Derived columns (one-hot, scaled, imputed, …) of a ``Pipeline`` / ``ColumnTransformer`` are summed back to
the input column they come from (``derivation.py``); a transformer that mixes several input columns into one
output (PCA, PolynomialFeatures) cannot be split and raises ``ExplanationNotSupported``, as does any other model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from predictor.errors import ExplanationNotSupported, PredictorError
from predictor.monitoring.attribution import Attribution, Floats
from predictor.monitoring.derivation import derivation_matrix
from predictor.monitoring.treeshap import Tree, TreeEnsemble

SUPPORTED = (
    "scikit-learn RandomForest/ExtraTrees/DecisionTree/GradientBoosting/HistGradientBoosting classifiers, "
    "XGBoost and LightGBM classifiers (binary:logistic, multi:softprob/softmax; binary, multiclass), and "
    "linear classifiers with predict_proba (LogisticRegression, SGDClassifier(loss='log_loss')), alone or "
    "as the last step of a scikit-learn Pipeline whose transformers map each output column to one input "
    "column (OneHotEncoder, scalers, imputers, ColumnTransformer)"
)

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(64)
_NODES, _WEIGHTS = (_NODES + 1) / 2, _WEIGHTS / 2  # on [0, 1]


class Explainer:
    """Explains one fitted model; build it once per model version and call ``explain`` per request."""

    def __init__(
        self,
        input_columns: Sequence[str],
        classes: Sequence[Any],
        to_model_input: Callable[[pd.DataFrame], Any],
        attribute: Callable[[Any], Attribution],
        probabilities: Callable[[Any], Floats],
        derivation: Floats,
    ) -> None:
        self.input_columns = list(input_columns)
        self.classes = list(classes)
        self._to_model_input = to_model_input
        self._attribute = attribute
        self._probabilities = probabilities
        self._derivation = derivation  # [derived columns, input columns], one 1 per row

    @classmethod
    def for_model(cls, model: Any, input_columns: Sequence[str], background: pd.DataFrame | None = None) -> Explainer:
        """Raises ``ExplanationNotSupported`` (501) for a model or transformer it cannot explain exactly."""
        from sklearn.pipeline import Pipeline

        columns = list(input_columns)
        final, prepare, derivation = model, _as_model_input(model, columns), np.eye(len(columns))
        if isinstance(model, Pipeline) and len(model.steps) > 1:
            final, head = model.steps[-1][1], model[:-1]
            derivation = derivation_matrix(head, columns)

            def prepare(rows: pd.DataFrame) -> Any:
                return head.transform(rows[columns])

        attribute, probabilities, classes = _method(final, prepare, background)
        return cls(columns, classes, prepare, attribute, probabilities, derivation)

    def explain(self, rows: pd.DataFrame, class_: Any | None = None) -> list[dict[str, Any]]:
        """Per row ``{"class", "base_value", "contributions"}``; ``class_=None`` explains each row's predicted class."""
        model_input = self._to_model_input(rows)
        attribution = self._attribute(model_input)
        proba = attribution.proba if attribution.proba is not None else self._probabilities(model_input)
        if attribution.phi.shape[2] != self._derivation.shape[0]:
            raise ExplanationNotSupported(
                f"the model sees {attribution.phi.shape[2]} columns but its preprocessing was read as giving "
                f"{self._derivation.shape[0]}: cannot sum its columns back to the inputs. Supported: {SUPPORTED}"
            )
        if class_ is None:
            wanted = proba.argmax(axis=1)
        else:
            if class_ not in self.classes:
                raise ExplanationNotSupported(f"class {class_!r} is not one of the model's classes {self.classes}")
            wanted = np.full(len(rows), self.classes.index(class_))
        base, phi = _to_probability(attribution, proba, wanted)
        per_input = phi @ self._derivation  # [N, inputs]
        return [
            {
                "class": _plain(self.classes[int(c)]),
                "base_value": float(b),
                "contributions": dict(zip(self.input_columns, map(float, row), strict=True)),
            }
            for c, b, row in zip(wanted, base, per_input, strict=True)
        ]


class OnDemand:
    """A served version's explainer, built on the first ``:explain`` (flattening a forest's trees costs time
    and memory that a server nobody asks for explanations should not pay), once, and thread-safe. A model it
    cannot explain keeps answering the same ``ExplanationNotSupported`` (501)."""

    def __init__(
        self,
        estimator: Callable[[], Any],
        input_columns: Sequence[str],
        what: str,
        preparation: Callable[[Any], Callable[[pd.DataFrame], pd.DataFrame]] | None = None,
    ) -> None:
        self._estimator = estimator  # None from it: a model without a scikit-learn-API object (a pyfunc)
        self._preparation = preparation  # estimator -> what its DataFrames need first (LightGBM's categories)
        self._prepare: Callable[[pd.DataFrame], pd.DataFrame] = lambda frame: frame
        self._columns = list(input_columns)
        self._what = what  # e.g. "model m version 3 (pyfunc)", for the 501's message
        self._lock = threading.Lock()
        self._built: Explainer | None = None
        self._refused: ExplanationNotSupported | None = None

    def explain(self, rows: pd.DataFrame) -> list[dict[str, Any]]:
        """Each row's predicted class explained; CPU work: call it off the event loop."""
        explainer = self.explainer()
        try:
            return explainer.explain(self._prepare(rows))
        except PredictorError:
            raise
        except Exception as exc:  # the model's own failure on rows it predicts fine: ours, not the caller's
            raise PredictorError(f"explaining {self._what} failed: {type(exc).__name__}: {exc}") from exc

    def explainer(self) -> Explainer:
        with self._lock:
            if self._built is None and self._refused is None:
                estimator = self._estimator()
                try:
                    if estimator is None:
                        raise ExplanationNotSupported(
                            f"{self._what} is not a scikit-learn, XGBoost or LightGBM estimator. Supported: {SUPPORTED}"
                        )
                    self._built = Explainer.for_model(estimator, self._columns)
                    if self._preparation is not None:
                        self._prepare = self._preparation(estimator)
                except ExplanationNotSupported as exc:
                    self._refused = exc
            if self._refused is not None:
                raise self._refused
            assert self._built is not None
            return self._built


def explain(
    model: Any, rows: pd.DataFrame, class_: Any | None = None, background: pd.DataFrame | None = None
) -> list[dict[str, Any]]:
    """One-off ``Explainer.for_model(model, rows.columns, background).explain(rows, class_)``."""
    return Explainer.for_model(model, list(rows.columns), background).explain(rows, class_)


def _plain(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def _as_model_input(model: Any, columns: list[str]) -> Callable[[pd.DataFrame], Any]:
    """A model fitted on a DataFrame gets one (its own column order); one fitted on arrays gets floats."""
    names = getattr(model, "feature_names_in_", None)
    module = type(model).__module__
    if names is not None:
        ordered = list(names)
        return lambda rows: rows[ordered]
    if module.startswith(("xgboost", "lightgbm")):
        return lambda rows: rows[columns]
    return lambda rows: rows[columns].to_numpy(dtype=np.float64)


def _dense(matrix: Any) -> Floats:
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    return np.asarray(matrix, dtype=np.float64)


def _method(
    final: Any, prepare: Callable[[pd.DataFrame], Any], background: pd.DataFrame | None
) -> tuple[Callable[[Any], Attribution], Callable[[Any], Floats], list[Any]]:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
    )
    from sklearn.tree import DecisionTreeClassifier

    module = type(final).__module__
    if isinstance(final, (RandomForestClassifier, ExtraTreesClassifier, DecisionTreeClassifier)):
        return _forest(final)
    if isinstance(final, (GradientBoostingClassifier, HistGradientBoostingClassifier)):
        return _boosting(final)
    if module.startswith("xgboost"):
        from predictor.monitoring.native_boosters import xgboost_method

        return xgboost_method(final)
    if module.startswith("lightgbm"):
        from predictor.monitoring.native_boosters import lightgbm_method

        return lightgbm_method(final)
    if all(hasattr(final, name) for name in ("coef_", "intercept_", "decision_function", "predict_proba")):
        mean = None if background is None else _dense(prepare(background)).mean(axis=0)
        return _linear(final, mean)
    raise ExplanationNotSupported(f"cannot explain a {type(final).__name__} exactly. Supported: {SUPPORTED}")


def _sklearn_tree(estimator: Any, values: Floats) -> Tree:
    tree = estimator.tree_
    return Tree(
        left=tree.children_left.astype(np.int64),
        right=tree.children_right.astype(np.int64),
        feature=tree.feature.astype(np.int64),
        threshold=tree.threshold.astype(np.float64),
        missing_left=np.asarray(tree.missing_go_to_left, dtype=np.bool_),
        cover=tree.weighted_n_node_samples.astype(np.float64),
        values=values,
        float32_inputs=True,  # scikit-learn's trees compare float32(x) with the threshold
    )


def _forest(model: Any) -> tuple[Callable[[Any], Attribution], Callable[[Any], Floats], list[Any]]:
    if getattr(model, "n_outputs_", 1) != 1:
        raise ExplanationNotSupported(f"multi-output {type(model).__name__} is not supported. Supported: {SUPPORTED}")
    members = list(getattr(model, "estimators_", [model]))
    trees = []
    for member in members:
        raw = member.tree_.value[:, 0, :].astype(np.float64)
        totals = raw.sum(axis=1, keepdims=True)
        shares = np.divide(raw, totals, out=np.zeros_like(raw), where=totals > 0)
        trees.append(_sklearn_tree(member, shares / len(members)))  # predict_proba = mean of the trees'
    ensemble = TreeEnsemble.from_trees(trees, model.n_features_in_, len(model.classes_))

    def attribute(x: Any) -> Attribution:
        phi, output = ensemble.shap_values(_dense(x))  # output: the mean of the trees' leaves = predict_proba
        return Attribution(phi, np.tile(ensemble.expected_value, (phi.shape[0], 1)), "identity", output)

    return attribute, lambda x: np.asarray(model.predict_proba(x), dtype=np.float64), list(model.classes_)


def _boosting(model: Any) -> tuple[Callable[[Any], Attribution], Callable[[Any], Floats], list[Any]]:
    from sklearn.ensemble import GradientBoostingClassifier

    outputs = 1 if len(model.classes_) == 2 else len(model.classes_)
    trees: list[Tree] = []
    if isinstance(model, GradientBoostingClassifier):
        for stage in model.estimators_:
            for k, member in enumerate(stage):
                values = np.zeros((member.tree_.node_count, outputs))
                values[:, k] = member.tree_.value[:, 0, 0] * model.learning_rate
                trees.append(_sklearn_tree(member, values))
    else:
        # HistGradientBoosting keeps its trees in a private attribute (the tests pin it for each release).
        for iteration in model._predictors:
            for k, predictor in enumerate(iteration):
                nodes = predictor.nodes
                if nodes["is_categorical"].any():
                    raise ExplanationNotSupported(
                        f"HistGradientBoosting with categorical splits is not supported. Supported: {SUPPORTED}"
                    )
                leaf = nodes["is_leaf"].astype(bool)
                values = np.zeros((len(nodes), outputs))
                values[:, k] = np.where(leaf, nodes["value"], 0.0)
                trees.append(
                    Tree(
                        left=np.where(leaf, -1, nodes["left"].astype(np.int64)),
                        right=np.where(leaf, -1, nodes["right"].astype(np.int64)),
                        feature=nodes["feature_idx"].astype(np.int64),
                        threshold=nodes["num_threshold"].astype(np.float64),
                        missing_left=nodes["missing_go_to_left"].astype(bool),
                        cover=nodes["count"].astype(np.float64),
                        values=values,
                    )
                )
    ensemble = TreeEnsemble.from_trees(trees, model.n_features_in_, outputs)

    def attribute(x: Any) -> Attribution:
        phi, tree_sum = ensemble.shap_values(_dense(x))
        # decision_function = init/baseline + Σ trees: the base margin is the init plus the trees' expectation
        margin = np.asarray(model.decision_function(x), dtype=np.float64).reshape(len(phi), outputs)
        return Attribution(phi, margin - tree_sum + ensemble.expected_value, _link(outputs))

    return attribute, lambda x: np.asarray(model.predict_proba(x), dtype=np.float64), list(model.classes_)


def _linear(model: Any, mean: Floats | None) -> tuple[Callable[[Any], Attribution], Callable[[Any], Floats], list[Any]]:
    coef = np.asarray(model.coef_, dtype=np.float64)  # [K, F]
    reference = np.zeros(coef.shape[1]) if mean is None else mean

    def attribute(x: Any) -> Attribution:
        z = _dense(x)
        phi = coef[None, :, :] * (z - reference)[:, None, :]
        margin = np.asarray(model.decision_function(x), dtype=np.float64).reshape(len(z), coef.shape[0])
        return Attribution(phi, margin - phi.sum(axis=2), _link(coef.shape[0]))

    return attribute, lambda x: np.asarray(model.predict_proba(x), dtype=np.float64), list(model.classes_)


def _link(outputs: int) -> str:
    return "sigmoid" if outputs == 1 else "softmax"


def _softmax(m: Floats) -> Floats:
    e: Floats = np.exp(m - m.max(axis=-1, keepdims=True))
    share: Floats = e / e.sum(axis=-1, keepdims=True)
    return share


def _to_probability(a: Attribution, proba: Floats, wanted: npt.NDArray[np.int64]) -> tuple[Floats, Floats]:
    """(base [N], phi [N, F]) in probability space for class ``wanted[n]`` of each row (module docstring)."""
    rows = np.arange(len(wanted))
    target = proba[rows, wanted]
    if a.link == "identity":
        return a.base[rows, wanted], a.phi[rows, wanted, :]
    if a.link == "sigmoid":
        m0 = a.base[:, 0]
        m = m0 + a.phi[:, 0, :].sum(axis=1)
        p0 = 1 / (1 + np.exp(-m0))
        p1 = proba[:, 1]
        gap = m - m0
        tiny = np.abs(gap) < 1e-12
        secant = np.where(tiny, p0 * (1 - p0), (p1 - p0) / np.where(tiny, 1.0, gap))
        phi = a.phi[:, 0, :] * secant[:, None]
        sign = np.where(wanted == 1, 1.0, -1.0)  # p(class 0) = 1 − p(class 1)
        base = np.where(wanted == 1, p0, 1 - p0)
        return base, phi * sign[:, None]
    m0 = a.base
    delta = a.phi.sum(axis=2)  # [N, K]
    gradient = np.zeros_like(m0)  # ∫ ∂p_c/∂m_k dt, [N, K]
    onehot = np.eye(m0.shape[1])[wanted]
    for node, weight in zip(_NODES, _WEIGHTS, strict=True):
        p = _softmax(m0 + node * delta)
        pc = p[rows, wanted][:, None]
        gradient += weight * pc * (onehot - p)
    phi = np.einsum("nkf,nk->nf", a.phi, gradient)
    base = _softmax(m0)[rows, wanted]
    total = phi.sum(axis=1)
    scale = np.where(np.abs(total) > 1e-15, (target - base) / np.where(total == 0, 1.0, total), 1.0)
    return base, phi * scale[:, None]
