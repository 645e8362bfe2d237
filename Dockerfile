# Plateau's three images, one stage each, from the project's two wheels (plateau-operator, plateau-client):
#   operator  plateau-operator, the default (the last stage): the Kopf operator and its Kubernetes client
#   sidecar   plateau-sidecar only: the wheel without its dependencies, plus the sidecar's own
#             (pydantic, prometheus-client, regex, numpy for the forecast): no Kubernetes client, kopf or aiohttp
#   trainer   examples/trainer/ (numpy and scikit-learn, CPU only) with the standard-library client
#
#   scripts/build-image                    # all three with buildah, on a Debian base made with mmdebstrap
#   docker build --target sidecar -t localhost/plateau-sidecar:0.1.0 .
#
# BASE must provide python3 (3.11+) with venv; every stage uses the same one. The default is
# python:3.11-slim pinned by the digest of its image index, as docker-library/repo-info recorded it
# (repos/python/remote/3.11-slim.md, the build of 2026-08-05: Debian trixie, Python 3.11.15).
ARG BASE=python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff

FROM ${BASE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY sidecar/ sidecar/
COPY client/ client/
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist . ./client

FROM ${BASE} AS sidecar
# The file name of the wheel that holds plateau_sidecar (scripts/build-image passes it).
ARG SIDECAR_WHEEL=plateau_operator-*.whl
COPY --from=wheel /dist/ /tmp/dist/
# The sidecar's import closure outside the standard library, with pyproject.toml's version
# ranges (tests/integration/test_images.py keeps both true). Binary wheels only: no compilers.
RUN python3 -m venv /opt/plateau \
 && /opt/plateau/bin/pip install --no-cache-dir --only-binary=:all: \
      "prometheus-client>=0.20" "pydantic>=2.7,<3" "regex>=2024.4" "numpy>=1.26" \
 && /opt/plateau/bin/pip install --no-cache-dir --no-deps /tmp/dist/${SIDECAR_WHEEL} \
 && /opt/plateau/bin/pip uninstall --yes --quiet pip setuptools \
 && rm -rf /tmp/dist
ENV PATH=/opt/plateau/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The sidecar's /metrics.
EXPOSE 9464
USER 65532:65532
CMD ["plateau-sidecar"]

FROM ${BASE} AS trainer
# The trainer-side client's wheel (plateau_client, standard library only).
ARG CLIENT_WHEEL=plateau_client-*.whl
COPY --from=wheel /dist/ /tmp/dist/
# numpy and scikit-learn are binary wheels without a GPU build: no torch, no CUDA.
RUN python3 -m venv /opt/trainer \
 && /opt/trainer/bin/pip install --no-cache-dir --only-binary=:all: "numpy>=1.26" "scikit-learn>=1.4" \
 && /opt/trainer/bin/pip install --no-cache-dir --no-deps /tmp/dist/${CLIENT_WHEEL} \
 && /opt/trainer/bin/pip uninstall --yes --quiet pip setuptools \
 && rm -rf /tmp/dist
WORKDIR /app
COPY examples/trainer/ ./
# train.py writes its checkpoints under ./checkpoints as the image's user.
RUN mkdir checkpoints && chown 65532:65532 checkpoints
ENV PATH=/opt/trainer/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
CMD ["python", "train.py"]

FROM ${BASE} AS operator
ARG OPERATOR_WHEEL=plateau_operator-*.whl
COPY --from=wheel /dist/ /tmp/dist/
RUN python3 -m venv /opt/plateau \
 && /opt/plateau/bin/pip install --no-cache-dir --only-binary=:all: /tmp/dist/${OPERATOR_WHEEL} \
 && /opt/plateau/bin/pip uninstall --yes --quiet pip setuptools \
 && rm -rf /tmp/dist
ENV PATH=/opt/plateau/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The operator's /metrics and /healthz.
EXPOSE 8080 8081
USER 65532:65532
CMD ["plateau-operator"]
