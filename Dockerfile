# The predictor image: `python -m predictor` on python:3.11-slim, as a non-root user.
#   make image                      # docker build -t <the image manifests/overlays/prod deploys> .
# Two stages: the first installs exactly uv.lock (frozen: never re-resolved; the runtime dependencies plus the
# `redis` extra: Feast's Redis online store and PostgreSQL registry driver, used in the cluster; the `flavors`
# extra: XGBoost, LightGBM, CatBoost and statsmodels, so every built-in tabular flavor loads; no dev tools)
# into a virtualenv, from pyproject.toml and uv.lock only, so that layer is rebuilt only when the dependencies change, not on every code
# change; the second copies that virtualenv and the source. No build tools, caches or credentials reach the
# final image.

FROM python:3.11-slim AS deps
# The uv version uv.lock pins (tests/test_dockerfile.py checks they agree).
ARG UV_VERSION=0.13.9
# uv: no cache to carry into the layer, the image's own Python only, /opt/venv as the project environment.
# UV_COMPILE_BYTECODE: the image's Python never writes bytecode (PYTHONDONTWRITEBYTECODE), so without it every
# pod start would compile MLflow, scikit-learn and KServe from source: seconds of CPU on every start.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /build
COPY pyproject.toml uv.lock ./
# --no-install-project: the source is copied into /app below and run from there, not installed.
RUN uv sync --frozen --no-install-project --extra redis --extra flavors

FROM python:3.11-slim
# The model cache must be writable by the predictor user (/app is not); it only helps restarts in place.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PREDICTOR_MODEL_CACHE_DIR=/tmp/predictor-model-cache
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can check it; a home for the caches MLflow writes.
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin predictor
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# Owned by root and read-only to the predictor user. The Feast repo ships at /app/predictor/demo/feature_repo.
COPY predictor ./predictor
RUN python -m compileall -q predictor
USER 10001
# 8080: HTTP (v1, v2 REST, probes, /metrics); 8081: gRPC (v2).
EXPOSE 8080 8081
# For `docker run` and Compose (Kubernetes ignores HEALTHCHECK and uses the manifests' probes): liveness on
# /health, with the image's Python (the slim image has no curl). A non-2xx answer or no answer raises, so
# the command exits non-zero. Plain HTTP on the default port: with --ssl_certfile or another --http_port,
# override it (`docker run --health-cmd ...`). The start period covers imports and the model load.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
ENTRYPOINT ["python", "-m", "predictor"]
CMD ["--model_name", "predictive_maintenance"]
