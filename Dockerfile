# syntax=docker/dockerfile:1
# Build stage: compile wheels for the app and its dependencies.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY points_rules ./points_rules
COPY integrations ./integrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: slim, non-root, no compiler.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    CARBON_POINTS_HTTP_HOST=0.0.0.0 CARBON_POINTS_DATA_DIR=/var/lib/carbon-points
RUN useradd --system --uid 10001 --home-dir /app carbon \
    && mkdir -p /var/lib/carbon-points && chown carbon /var/lib/carbon-points
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY --chown=carbon alembic.ini ./
COPY --chown=carbon migrations ./migrations
USER carbon
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
# Migrations are a separate, explicit step: `carbon-points db upgrade` (it also files the
# shipped methodology library; `carbon-points methodology sync` does that alone).
CMD ["carbon-points", "serve"]
