# Two images from one file, both slim and non-root:
#
#   python -m testenv.images wheelhouse                                 ./wheelhouse, for CPython 3.11
#   docker build -t kuberesolver-operator:0.1.0 .                       the operator (default)
#   docker build --target projector -t kuberesolver-projector:0.1.0 .   the projector sidecar
#
# Everything is installed from ./wheelhouse with --no-index: the project's wheel
# and its pinned dependencies (constraints.txt), built on the host, so the build
# reaches no package index. Build the wheelhouse for the image's Python
# (`python -m testenv.images wheelhouse --python 3.12` for the default
# PYTHON_IMAGE; `make images` builds both on a local Debian base with buildah).
#
# Each image's venv is made in a build stage and copied into the runtime stage:
# pip runs from its wheel, so no image carries pip, and none carries a compiler.
# The projector image has the [projector] extra only (httpx, PyYAML): no grpc, no
# protobuf, no kubernetes client, no kopf, no Jinja2. The operator's extra brings
# grpcio and the xDS protos for its xDS server.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---- wheels: the wheelhouse and the pins ----------------------------------------------------
FROM ${PYTHON_IMAGE} AS wheels
COPY constraints.txt /constraints.txt
COPY wheelhouse/ /wheelhouse/

# A venv without pip, filled by pip run from its wheel in the wheelhouse (a zip application).
FROM wheels AS projector-venv
RUN python3 -m venv --without-pip /opt/venv \
    && /opt/venv/bin/python "$(ls /wheelhouse/pip-*.whl)/pip" install --no-cache-dir --no-index \
       --find-links /wheelhouse --constraint /constraints.txt "kuberesolver[projector]"

FROM wheels AS operator-venv
RUN python3 -m venv --without-pip /opt/venv \
    && /opt/venv/bin/python "$(ls /wheelhouse/pip-*.whl)/pip" install --no-cache-dir --no-index \
       --find-links /wheelhouse --constraint /constraints.txt "kuberesolver[operator]"

# ---- runtime: the interpreter, the runtime user, no pip ---------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="kuberesolver"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin
# The official Python image brings pip into its system Python: it goes.
# The user is written directly: a minimal Debian base has no useradd.
RUN if python3 -c 'import pip' 2>/dev/null; then python3 -m pip uninstall --yes --quiet pip setuptools wheel; fi \
    && echo 'kuberesolver:x:10001:10001:kuberesolver:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'kuberesolver:x:10001:' >> /etc/group

# ---- projector: the fast-sync sidecar (kuberesolver-projector) ---------------------------------
FROM runtime AS projector
LABEL org.opencontainers.image.title="kuberesolver-projector" \
      org.opencontainers.image.description="Projects one ConfigMap into a directory in kubelet's atomic layout, within a second"
COPY --from=projector-venv /opt/venv /opt/venv
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["kuberesolver-projector"]

# ---- operator (the default target: last) ------------------------------------------------------
FROM runtime AS operator
LABEL org.opencontainers.image.title="kuberesolver-operator" \
      org.opencontainers.image.description="Publishes the live endpoints of gRPC Services (GrpcTargets) into ConfigMaps"
COPY --from=operator-venv /opt/venv /opt/venv
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["kopf"]
CMD ["run", "--all-namespaces", "--standalone", "--liveness=http://0.0.0.0:8080/healthz", "-m", "kuberesolver.operator"]
