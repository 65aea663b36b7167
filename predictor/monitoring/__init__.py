"""What watches predictions, off the hot path.

- ``prediction_log.py``: every (sampled) prediction to JSON Lines.
- ``explain.py`` (+ ``treeshap.py``, ``derivation.py``, ``native_boosters.py``): per-row contributions that add
  up to the predicted probability. Build ``Explainer.for_model(estimator, input_columns)`` once per loaded
  version (CPU work: off the event loop), call ``explain(rows_frame)`` from ``:explain`` in a worker thread.
- ``baseline.py`` + ``drift.py``: ``DriftMonitor.for_model(local_model_dir, name, version, DriftMetrics)`` at
  load (None without a baseline); ``observe(rows, predicted_labels)`` from the same tap as the prediction log;
  ``snapshot()`` for ``GET /admin/drift``; ``close()`` when the version is swapped out.
- ``shadow.py``: ``ShadowScorer(shadow_predict_proba, shadow_classes, name, live_version, shadow_version,
  ShadowMetrics)``; ``submit(rows, live_labels, live_probabilities, request_id)`` after the live response.

``observe`` and ``submit`` only enqueue (they never block or raise); each has its own worker thread.
"""
