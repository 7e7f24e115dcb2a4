# syntax=docker/dockerfile:1
# The ocscan agent image. Build, push and load it: docs/container-image.md.
#
#   docker build -t ocscan:0.1.0 .
#
# Every Python package is pinned by version and hash (requirements/*.txt, generated from
# pyproject.toml); the image holds the agent's runtime dependencies only, neither the sandbox
# extra nor any development tool. It runs as UID/GID 10001 and writes nothing outside /tmp,
# so it works with a read-only root filesystem (deploy/base/agent.yaml).

# Pin the digest too for reproducible builds: PYTHON_IMAGE=python:3.11.17-slim-bookworm@sha256:...
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /build
# The wheel of ocscan itself, built with pinned setuptools and wheel.
COPY requirements/build.txt requirements/agent.txt requirements/
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps --only-binary=:all: \
        -r requirements/build.txt
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /build/wheels .
# The runtime environment: no pip, no setuptools, only what requirements/agent.txt lists.
RUN python -m venv --without-pip /opt/ocscan \
 && /opt/build/bin/pip --python /opt/ocscan/bin/python install \
        --require-hashes --no-deps --only-binary=:all: -r requirements/agent.txt \
 && /opt/build/bin/pip --python /opt/ocscan/bin/python install \
        --no-deps --no-index /build/wheels/ocscan-*.whl

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ocscan" \
      org.opencontainers.image.description="Operational container scanning for Kubernetes, private registries included" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 ocscan \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin ocscan
COPY --from=build /opt/ocscan /opt/ocscan
# Bytecode is compiled at install time; nothing is written at run time but to /tmp.
ENV PATH=/opt/ocscan/bin:$PATH \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
USER 10001:10001
EXPOSE 8080
# For `docker run` of the agent (Kubernetes uses the Deployment's probes instead). A
# one-shot `ocscan scan` serves no /healthz: run it with --no-healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["ocscan"]
CMD ["agent", "--config", "/etc/ocscan/config.yaml"]
