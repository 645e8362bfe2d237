# Plateau: one image for both entrypoints, plateau-operator (the default) and plateau-sidecar.
#   docker build -t plateau .            # on python:3.11-slim
#   scripts/build-image                  # buildah, on a Debian base made with mmdebstrap
# BASE must provide python3 (3.11+) with venv; both stages use the same one.
ARG BASE=python:3.11-slim

FROM ${BASE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY sidecar/ sidecar/
# Only the wheel: no extras, so torch never reaches the image.
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM ${BASE}
COPY --from=builder /dist/ /tmp/dist/
# Binary wheels only: the image has no compilers and needs none.
RUN python3 -m venv /opt/plateau \
 && /opt/plateau/bin/pip install --no-cache-dir --only-binary=:all: /tmp/dist/plateau_operator-*.whl \
 && /opt/plateau/bin/pip uninstall --yes --quiet pip setuptools \
 && rm -rf /tmp/dist
ENV PATH=/opt/plateau/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The operator's /metrics and /healthz, and the sidecar's /metrics.
EXPOSE 8080 8081 9464
USER 65532:65532
CMD ["plateau-operator"]
