# The predictor image: `python -m predictor` on python:3.11-slim, as a non-root user.
#   make image                      # docker build -t <the image manifests/overlays/prod deploys> .
# Two stages: the first builds a virtualenv with the dependencies only (from pyproject.toml, so that layer
# is rebuilt only when the dependencies change, not on every code change); the second copies that
# virtualenv and the source. No build tools, caches or credentials reach the final image.

FROM python:3.11-slim AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /build
COPY pyproject.toml ./
# The project's dependencies plus its `redis` extra (Feast's Redis online store, used in the cluster).
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['redis']))" > requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir -r requirements.txt

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
USER 10001
# 8080: HTTP (v1, v2 REST, probes, /metrics); 8081: gRPC (v2).
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "predictor"]
CMD ["--model_name", "predictive_maintenance"]
