# syntax=docker/dockerfile:1
# Townlet's images, one file, three stages (docs/ops/deployment.md):
#   runtime  (the default target)  the live town: `townlet serve` on 0.0.0.0:8000; also the telemetry sink
#   training (--target training)   torch (CPU by default) for `townlet train`, `evaluate` and `capture`
#   build                          the townlet wheel both install
# GPU variant of the training image: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# (any index that carries the pinned torch build, e.g. cu126 or cu130). Every RUN calls deploy/install.sh,
# the script CI runs in fresh virtual environments (deploy/check.sh).
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the townlet wheel, from the source tree
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY --chmod=0755 deploy/install.sh /usr/local/bin/townlet-install
RUN townlet-install build /src /wheels

# --- base: the user, the data volume's layout and the entrypoint script, shared by both images
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TOWNLET_VENV=/opt/townlet/venv \
    TOWNLET_DATA=/var/lib/townlet \
    NUMBA_CACHE_DIR=/var/lib/townlet/numba-cache
COPY --chmod=0755 deploy/install.sh /usr/local/bin/townlet-install
RUN groupadd --system --gid 10001 townlet \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /var/lib/townlet --create-home townlet \
    && mkdir -p /var/lib/townlet/state /var/lib/townlet/snapshots /var/lib/townlet/telemetry \
       /var/lib/townlet/runs /var/lib/townlet/capture /etc/townlet \
    && chown -R 10001:10001 /var/lib/townlet
WORKDIR /var/lib/townlet

# --- training: torch pinned by the wheel's `train` extra, from TORCH_INDEX_URL (the CPU build by default)
FROM base AS training
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    TORCH_INDEX_URL="${TORCH_INDEX_URL}" townlet-install install-train /wheels /opt/townlet/venv \
    && rm -rf /root/.cache
USER 10001:10001
VOLUME ["/var/lib/townlet"]
ENTRYPOINT ["townlet-install"]
CMD ["train"]

# --- runtime: the wheel and its runtime dependencies only (no compilers, no source, no torch)
FROM base AS runtime
ENV TOWNLET_HOST=0.0.0.0 \
    TOWNLET_PORT=8000
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    townlet-install install /wheels /opt/townlet/venv \
    && rm -rf /root/.cache
USER 10001:10001
VOLUME ["/var/lib/townlet"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=6s --start-period=30s --retries=3 CMD ["townlet-install", "healthcheck"]
ENTRYPOINT ["townlet-install", "serve"]
