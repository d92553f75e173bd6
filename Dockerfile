# Two images from one file, both slim and non-root:
#
#   docker build -t kuberesolver-operator:0.1.0 .                       the operator (default)
#   docker build --target projector -t kuberesolver-projector:0.1.0 .   the projector sidecar
#
# The projector image has httpx and PyYAML only: no kubernetes client, no kopf, no Jinja2.
# Every dependency is pinned by constraints.txt.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---- build: a wheel of this project ----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY kuberesolver ./kuberesolver
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- base: the runtime user, the wheel and the pins --------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ARG VERSION=0.1.0
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="kuberesolver"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 kuberesolver \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin kuberesolver
COPY constraints.txt /constraints.txt
COPY --from=build /wheels /wheels

# ---- projector: the fast-sync sidecar (kuberesolver-projector) ---------------------------------
FROM base AS projector
LABEL org.opencontainers.image.title="kuberesolver-projector" \
      org.opencontainers.image.description="Projects one ConfigMap into a directory in kubelet's atomic layout, within a second"
RUN pip install --no-cache-dir --constraint /constraints.txt "$(ls /wheels/kuberesolver-*.whl)[projector]" \
    && rm -rf /wheels
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["kuberesolver-projector"]

# ---- operator (the default target: last) ------------------------------------------------------
FROM base AS operator
LABEL org.opencontainers.image.title="kuberesolver-operator" \
      org.opencontainers.image.description="Publishes the live endpoints of gRPC Services (GrpcTargets) into ConfigMaps"
RUN pip install --no-cache-dir --constraint /constraints.txt "$(ls /wheels/kuberesolver-*.whl)[operator]" \
    && rm -rf /wheels
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["kopf"]
CMD ["run", "--all-namespaces", "--standalone", "--liveness=http://0.0.0.0:8080/healthz", "-m", "kuberesolver.operator"]
