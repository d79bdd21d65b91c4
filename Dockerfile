# The one image of every service: `oasis-autoscaler api`, `... scaler`, `... worker`,
# `... exporter` (next to an existing OasisPlatform).
FROM python:3.12-slim

# procps: the Oasis kernel's bash scripts call ps and pgrep. tini: pid 1 that reaps the kernel
# processes a worker's guard kills (Celery does not reap processes it did not start).
RUN apt-get update \
    && apt-get install -y --no-install-recommends procps tini \
    && rm -rf /var/lib/apt/lists/*

# A numeric non-root user, so that Kubernetes can check runAsNonRoot (the manifests run as it).
RUN groupadd --gid 10001 oasis \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin oasis

WORKDIR /src
COPY pyproject.toml README.md ./
COPY api api
COPY worker worker
COPY scaler scaler
COPY protos protos
COPY cli cli
RUN pip install --no-cache-dir . && rm -rf /src

WORKDIR /tmp
# numba's compiled kernel for the build machine's CPU type (worker/numba_cache.py, a small
# analysis through every tool): a worker on that CPU type copies it into its own cache folder
# instead of compiling for minutes; a worker on another CPU type compiles once and says so.
ENV OASIS_AUTOSCALER_NUMBA_CACHE_SEED_DIR=/opt/oasis-autoscaler/numba
RUN python -m worker.numba_cache /opt/oasis-autoscaler/numba && rm -rf /tmp/* /root/.cache
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
USER 10001:10001
EXPOSE 8000 9090 9091 9102
ENTRYPOINT ["tini", "--", "oasis-autoscaler"]
CMD ["api"]
