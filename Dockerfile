# syntax=docker/dockerfile:1
#
# cxr-triage images. Targets:
#   serve            the HTTP service; ONNX Runtime only, never torch. The last stage, so the default.
#                    VARIANT=gpu (default): onnxruntime-gpu on NVIDIA's CUDA 13 + cuDNN 9 runtime image.
#                    VARIANT=cpu: plain onnxruntime on python:3.11-slim.
#   train            `python -m training` with torch (its CUDA libraries come inside the torch wheels).
#
#   docker build --target serve --build-arg VARIANT=gpu -t cxr-triage:0.1.0-gpu .
#   docker build --target serve --build-arg VARIANT=cpu -t cxr-triage:0.1.0-cpu .
#   docker build --target train -t cxr-triage-train:0.1.0 .
#
# Every third-party package comes from requirements/<image>.lock with pip --require-hashes, so a
# rebuild installs the same bytes; `python scripts/lock_images.py` regenerates those files. The base
# images are tags: pin them by digest (name:tag@sha256:...) in the registry that builds releases.
# No secret is baked in: the API key file is mounted at run time. The serving image carries the released
# model (models/cxr-pneumonia/RELEASED); mount a model store at /models to serve another.

ARG VARIANT=gpu
# These two must match PYTHON_IMAGE and CUDA_IMAGE in scripts/lock_images.py (the locks are resolved
# for their Python and glibc); tests/docker/test_dockerfile.py checks that they do.
ARG PYTHON_IMAGE=python:3.11-slim-trixie
ARG CUDA_IMAGE=nvidia/cuda:13.2.1-cudnn-runtime-ubuntu24.04
# A fixed, non-root UID: Kubernetes' runAsNonRoot can only verify a numeric USER, and mounted
# secrets and volumes can be granted to it by number.
ARG APP_UID=10001

# ---------------------------------------------------------------------------------------------------
# wheel: the project's own wheel, built once and installed with --no-deps into every image, so the
# images never resolve dependencies themselves (those come from the locks only).
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/build.lock /tmp/build.lock
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: --no-deps \
        -r /tmp/build.lock
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY training ./training
# --no-build-isolation: build with the hash-pinned setuptools above, not whatever pip would fetch.
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /dist .

# ---------------------------------------------------------------------------------------------------
# train: fine-tune and export. torch's PyPI wheels bring their own CUDA 13 libraries, so the slim
# Python image serves for GPU training too (docker run --gpus all).
FROM ${PYTHON_IMAGE} AS train
ARG APP_UID
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements/train.lock /opt/cxr/requirements.lock
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: --no-deps \
        -r /opt/cxr/requirements.lock \
    && groupadd --gid "${APP_UID}" cxr \
    && useradd --no-log-init --uid "${APP_UID}" --gid cxr --create-home --home-dir /workspace \
        --shell /usr/sbin/nologin cxr
COPY --from=wheel /dist/ /tmp/dist/
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-index /tmp/dist/*.whl && rm -rf /tmp/dist
# Relative defaults (runs/, models/) land in /workspace, the user's home, where caches
# (matplotlib's among them) also go; mount runs/ and models/ there to keep the results.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /workspace
USER ${APP_UID}:${APP_UID}
ENTRYPOINT ["python", "-m", "training"]
CMD ["--help"]

# ---------------------------------------------------------------------------------------------------
# serve-base-gpu: Ubuntu 24.04's own Python 3.12 next to NVIDIA's CUDA and cuDNN libraries, which
# onnxruntime-gpu's CUDA provider loads (onnxruntime-gpu >= 1.27 is built for CUDA 13; the host
# driver must be >= 580).
FROM ${CUDA_IMAGE} AS serve-base-gpu
ARG APP_UID
# Ubuntu replaces security updates in place and drops the old version from the index, so an exact
# apt pin (DL3008) would break the build at the next python3.12 update; the base image digest and
# the pip lock are what make this image reproducible.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.12 -m venv /opt/venv \
    && groupadd --gid "${APP_UID}" cxr \
    && useradd --no-log-init --uid "${APP_UID}" --gid cxr --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin cxr

# serve-base-cpu: the slim Debian Python image; no CUDA at all.
FROM ${PYTHON_IMAGE} AS serve-base-cpu
ARG APP_UID
RUN python -m venv /opt/venv \
    && groupadd --gid "${APP_UID}" cxr \
    && useradd --no-log-init --uid "${APP_UID}" --gid cxr --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin cxr
# Without a GPU, "auto" would report every start as a fallback from CUDA; say CPU is intended.
ENV CXR_EXECUTION_PROVIDER=cpu

# ---------------------------------------------------------------------------------------------------
# serve: the service, and the last stage, so a plain `docker build .` builds it. BuildKit builds
# only the stages it needs: the wheel and the base stage VARIANT names, never train.
# DL3006 (untagged image): this names one of the two stages above, which hadolint cannot see
# through the ${VARIANT} substitution; the registry images are tagged where they are declared.
# hadolint ignore=DL3006
FROM serve-base-${VARIANT} AS serve
ARG VARIANT
ARG APP_UID
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# Kept in the image (it is small): what exactly is installed, for audits of a running image.
COPY requirements/serve-${VARIANT}.lock /opt/cxr/requirements.lock
RUN /opt/venv/bin/pip install --no-cache-dir --require-hashes --only-binary=:all: --no-deps \
        -r /opt/cxr/requirements.lock
# The released model (docs/release.md), so `docker run` serves at once: .dockerignore lets in exactly
# the version models/cxr-pneumonia/RELEASED names. It becomes the store's ACTIVE version (the chart's
# default CXR_MODEL_VERSION) and, as the only one, its latest. A store mounted at /models replaces it.
COPY models/cxr-pneumonia/ /models/cxr-pneumonia/
RUN mv /models/cxr-pneumonia/RELEASED /models/cxr-pneumonia/ACTIVE \
    && test -f "/models/cxr-pneumonia/$(cat /models/cxr-pneumonia/ACTIVE)/model.onnx"
COPY --from=wheel /dist/ /tmp/dist/
# The last command fails the build if anything pulled torch in: the serving image must not carry it.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-index /tmp/dist/*.whl \
    && rm -rf /tmp/dist \
    && /opt/venv/bin/python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"
# CXR_HOST: the service binds loopback by default, unreachable through a published port.
# CXR_MODEL_STORE: the released model above, or a store mounted (read-only) over /models.
# No CXR_API_KEYS_FILE default: without one (and without CXR_AUTH=disabled) the service refuses to
# start, so a missing key mount is loud.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CXR_HOST=0.0.0.0 \
    CXR_PORT=8000 \
    CXR_MODEL_STORE=/models
WORKDIR /opt/cxr
USER ${APP_UID}:${APP_UID}
EXPOSE 8000
# Docker and Compose only; Kubernetes ignores this and probes /healthz (liveness) and /readyz
# (readiness) itself. /readyz is 200 once a validated model is loaded, 503 while draining.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('CXR_PORT', '8000'), timeout=4)"]
# SIGTERM starts the drain (service/lifecycle/drain.py): /readyz turns 503 for CXR_DRAIN_SECONDS while requests
# are still served, then the server stops. Exec form, so the signal reaches cxr-serve as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["cxr-serve"]
