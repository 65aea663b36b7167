# `make bench` (issue 5): our server against the peers, same models and load, interleaved rounds, on 127.0.0.1.
# Knobs (environment): BENCH_DURATION=10 BENCH_ROUNDS=2 BENCH_WARMUP=2 BENCH_SERVERS=ours,ours-w2,baseline,mlflow,mlserver
#                      BENCH_SCENARIOS=1row@50,100row@8,1row@1,logreg-1row@50 BENCH_OUT=bench-results
.PHONY: bench

bench: install ## benchmark us against the obvious KServe predictor, mlflow serve and MLServer (needs `hey`; ~10 min)
	$(PY) -m tests.bench.run
