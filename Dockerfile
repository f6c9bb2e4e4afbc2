# The hub image: one image for `hub worker` (default), `hub api` and `hub migrate`.
#
#   docker build -t temporal-hub .
#   docker run --rm -e HUB_DATABASE_URL=... -e HUB_TEMPORAL_ADDRESS=... \
#       -e HUB_SECRET_KEY=... temporal-hub                     # a worker
#   docker run --rm -p 8000:8000 -e HUB_API_TOKEN=... ... temporal-hub \
#       hub api --host 0.0.0.0 --port 8000                     # the HTTP API
#
# No secret is baked in: HUB_API_TOKEN and HUB_SECRET_KEY come from the environment at run
# time (docker-compose.yml requires both). .dockerignore keeps .hub/ (where `hub dev` writes
# its secret.key) and any .env file out of the build context.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the project itself (runtime dependencies from pyproject.toml; no dev extra).
# README.md is the package's readme in pyproject.toml, so the build needs it.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hub/ hub/
COPY workflows/ workflows/
COPY activities/ activities/
COPY worker.py ./
RUN pip install . \
    && cd / && rm -rf /src

# Run as an unprivileged user. HUB_DATA_DIR (only used when HUB_DATABASE_URL or
# HUB_SECRET_KEY is unset) points at a directory that user can write.
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin hub
USER hub
WORKDIR /home/hub
ENV HUB_DATA_DIR=/home/hub/.hub

# `hub api` listens here when started with --port 8000 (the worker listens on nothing).
EXPOSE 8000

CMD ["hub", "worker"]
