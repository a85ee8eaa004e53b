# syntax=docker/dockerfile:1
# The live town: `townlet serve` on 0.0.0.0:8000 (see docs/ops/deployment.md for variables, secrets and volumes).
# Both stages run deploy/install.sh, the same script CI runs in a fresh virtual environment (deploy/check.sh).

# --- build: the townlet wheel, from the source tree
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY --chmod=0755 deploy/install.sh /usr/local/bin/townlet-install
RUN townlet-install build /src /wheels

# --- runtime: a venv with the wheel and its runtime dependencies only (no compilers, no source, no torch)
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TOWNLET_VENV=/opt/townlet/venv \
    TOWNLET_DATA=/var/lib/townlet \
    TOWNLET_HOST=0.0.0.0 \
    TOWNLET_PORT=8000 \
    NUMBA_CACHE_DIR=/var/lib/townlet/numba-cache
COPY --from=build /wheels /wheels
COPY --chmod=0755 deploy/install.sh /usr/local/bin/townlet-install
RUN townlet-install install /wheels /opt/townlet/venv \
    && rm -rf /wheels /root/.cache \
    && useradd --system --uid 10001 --home-dir /var/lib/townlet --create-home townlet \
    && mkdir -p /var/lib/townlet/state /var/lib/townlet/snapshots /var/lib/townlet/telemetry /etc/townlet \
    && chown -R townlet:townlet /var/lib/townlet
USER townlet
WORKDIR /var/lib/townlet
VOLUME ["/var/lib/townlet"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=6s --start-period=30s --retries=3 CMD ["townlet-install", "healthcheck"]
ENTRYPOINT ["townlet-install", "serve"]
