# The kuberesolver operator image: slim, non-root, read-only root filesystem friendly.
#
#   docker build -t kuberesolver-operator:0.1.0 .
#
# The same image carries the projector (kuberesolver-projector), for the
# fast-sync sidecar in manifests/examples/projector-sidecar.yaml.

# ---- build: a wheel of this project ----------------------------------------------------------
FROM python:3.12-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kuberesolver ./kuberesolver
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- runtime -----------------------------------------------------------------------------------
FROM python:3.12-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir "$(ls /wheels/kuberesolver-*.whl)[operator]" \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 kuberesolver \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin kuberesolver
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["kopf"]
CMD ["run", "--all-namespaces", "--standalone", "--liveness=http://0.0.0.0:8080/healthz", "-m", "kuberesolver.operator"]
