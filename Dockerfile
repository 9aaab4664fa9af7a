# syntax=docker/dockerfile:1
# An exact base image (Python 3.11.7 on Debian 12): a rebuild gets the same interpreter and
# OS release; move the pin on purpose, with the lock below.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# Build stage: every dependency from requirements.lock, checked against its hashes, then
# the app itself (no dependency resolution at build time).
FROM ${PYTHON_IMAGE} AS build
# The compiler is for the few dependencies built from source, in this stage only. DL3008
# (pin apt versions) is ignored on purpose: the packages' versions follow the pinned Debian
# release of the base image, and pinning a point version (gcc=4:12.2.0-3) breaks the build
# at each Debian security update, which is what the release pin already controls; none of
# them reaches the runtime image.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements.lock ./
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements.lock
COPY pyproject.toml README.md ./
COPY service ./service
COPY points_rules ./points_rules
COPY integrations ./integrations
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Runtime stage: slim, non-root, no compiler; installs only the wheels built above.
FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    CARBON_POINTS_HTTP_HOST=0.0.0.0 CARBON_POINTS_DATA_DIR=/var/lib/carbon-points
# A fixed numeric user and group (10001), named by number below (hadolint DL3066): the host
# and Kubernetes (runAsNonRoot) can check it without the image's /etc/passwd.
RUN groupadd --system --gid 10001 carbon \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app carbon \
    && mkdir -p /var/lib/carbon-points && chown 10001:10001 /var/lib/carbon-points
COPY --from=build /wheels /wheels
# The app's own wheel by its path, its dependencies only from the hash-checked wheels built
# above (--no-index: nothing is resolved from an index).
RUN pip install --no-cache-dir --no-index --find-links /wheels /wheels/carbon_points-*.whl \
    && rm -rf /wheels
WORKDIR /app
COPY --chown=10001:10001 alembic.ini ./
COPY --chown=10001:10001 migrations ./migrations
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
# Migrations are a separate, explicit step: `carbon-points db upgrade` (it also files the
# shipped methodology library; `carbon-points methodology sync` does that alone). The
# periodic jobs run in their own container: `carbon-points worker`.
CMD ["carbon-points", "serve"]
