"""Our own example, apart from the runtime: the demo telemetry, its model and its Feast repo.

The runtime never imports this package; ``make serve`` runs ``python -m predictor.demo.bootstrap`` first.
"""
